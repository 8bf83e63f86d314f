"""What the host does with a language: the table's facts (``pbotvm.langspec``) plus the few
behaviours that differ from the base one (spec languages.md §4): bc's preprocessing, perl's
and the Lisps' output filters, the C family and Java.
"""

from __future__ import annotations

import re

from pbotvm.host.options import newlines_outside_quotes
from pbotvm.langspec import LangSpec, find, supported_names
from pbotvm.tokenizer import PERL_SPACE

_WS = re.escape(PERL_SPACE)
_OPTIONS_GAP = re.compile(rf"\$options[{_WS}]+")


class Language:
    """The base behaviour (the original's host ``_default``)."""

    def __init__(self, spec: LangSpec) -> None:
        self.spec = spec

    def preprocess_code(self, code: str) -> str:
        """The code as the guest gets it: ``\\n`` outside quotes becomes a newline (§3.7)."""
        return newlines_outside_quotes(code)

    def postprocess_output(self, text: str) -> str:
        """The language's own output filter, run after the base post-processing."""
        return text

    def cmdline(self, cmdline_options: str, paste: bool) -> str:
        """§3.8: the command line sent to the guest (with paste: also the paste header's)."""
        spec = self.spec
        options = cmdline_options or spec.default_options
        extra = spec.options_paste if paste else spec.options_nopaste
        if extra:
            options = f"{options} {extra}" if options else extra
        return _fill_options(self._fill_files(spec.cmdline), options)

    def info_line(self) -> str:
        """The ``-info`` answer: the default command line, without the paste/nopaste extras."""
        cmdline = self._fill_files(_fill_options(self.spec.cmdline, self.spec.default_options))
        return f"{self.spec.display} cmdline: {cmdline}"

    def _fill_files(self, cmdline: str) -> str:
        return cmdline.replace("$sourcefile", self.spec.sourcefile).replace(
            "$execfile", self.spec.execfile)


def _fill_options(cmdline: str, options: str) -> str:
    if options:
        return cmdline.replace("$options", options, 1)
    return _OPTIONS_GAP.sub("", cmdline, count=1)


class Bc(Language):
    def preprocess_code(self, code: str) -> str:
        # bc replaces the base step: no \n conversion, and it must be told to stop.
        return code + "\nquit\n"


class Perl(Language):
    def postprocess_output(self, text: str) -> str:
        # Drop the position and abort notes that follow perl's syntax errors (first of each).
        source = re.escape(self.spec.sourcefile)
        text = re.sub(rf"[{_WS}]+at {source} line \d+, near \".*?\"", "", text, count=1)
        return re.sub(
            rf"[{_WS}]*Execution of {source} aborted due to compilation errors.", "", text,
            count=1)


class Lisp(Language):
    def postprocess_output(self, text: str) -> str:
        return text.removeprefix("\n")


_BEHAVIOUR: dict[str, type[Language]] = {"bc": Bc, "perl": Perl, "clisp": Lisp, "scheme": Lisp}


def find_language(lang: str) -> Language | None:
    """The language for a ``-lang=`` value (an allow-list: see ``langspec.find``)."""
    spec = find(lang)
    if spec is None:
        return None
    return _BEHAVIOUR.get(spec.name, Language)(spec)


def unsupported_message(lang: str) -> str:
    return (f"Language '{lang}' is not supported.\n"
            f"Supported languages are: {', '.join(supported_names())}")
