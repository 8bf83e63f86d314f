"""What the host does with a language: the table's facts (``pbotvm.langspec``) plus the few
behaviours that differ from the base one (spec languages.md §4): bc's preprocessing, perl's
and the Lisps' output filters, the C family and Java.

Per request: ``take_custom_options`` (the C family's and Java's own options), ``preprocess``
(the code as the guest gets it, as a ``Source``) and ``postprocess_output`` (its filter).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pbotvm.host.request import java
from pbotvm.host.request.cfamily import astyle, filters, preprocess
from pbotvm.host.request.cfamily.custom_options import (
    CustomOptions,
    take_custom_options,
    take_java_options,
)
from pbotvm.host.request.options import newlines_outside_quotes
from pbotvm.langspec import LangSpec, RunMode, find, supported_names
from pbotvm.tokenizer import PERL_SPACE

_WS = re.escape(PERL_SPACE)


@dataclass(frozen=True)
class Source:
    """The code as the guest gets it, and what the output filter must know of it."""

    code: str
    unterminated_directive: bool = False  # C: the code ends in a directive without newline


@dataclass(frozen=True)
class Shown:
    """How the answer is shown: the filters of the C family differ when it is pasted, and
    TenDRA's in a channel."""

    paste: bool = False
    channel: str = ""


class Language:
    """The base behaviour (the original's host ``_default``)."""

    def __init__(self, spec: LangSpec) -> None:
        self.spec = spec

    def take_custom_options(self, code: str) -> tuple[str, CustomOptions]:
        """The language's own options (after the standard ones, before the compiler's)."""
        return code, CustomOptions()

    def preprocess(self, code: str, custom: CustomOptions) -> Source:
        """The code as the guest gets it: ``\\n`` outside quotes becomes a newline (§3.7).
        May raise ``UnmatchedBrackets``, whose text is the answer."""
        return Source(newlines_outside_quotes(code))

    def postprocess_output(self, text: str, source: Source, shown: Shown) -> str:
        """The language's own output filter, run after the base post-processing."""
        return text



class Bc(Language):
    def preprocess(self, code: str, custom: CustomOptions) -> Source:
        # bc replaces the base step: no \n conversion, and it must be told to stop.
        return Source(code + "\nquit\n")


class Perl(Language):
    def postprocess_output(self, text: str, source: Source, shown: Shown) -> str:
        # Drop the position and abort notes that follow perl's syntax errors (first of each).
        name = re.escape(self.spec.sourcefile)
        text = re.sub(rf"[{_WS}]+at {name} line \d+, near \".*?\"", "", text, count=1)
        return re.sub(
            rf"[{_WS}]*Execution of {name} aborted due to compilation errors.", "", text,
            count=1)


class Lisp(Language):
    def postprocess_output(self, text: str, source: Source, shown: Shown) -> str:
        return text.removeprefix("\n")


class CFamily(Language):
    """Bare statements become a program with the dialect's prelude, the last statement's
    value is printed, astyle formats it; the compiler's and gdb's text is tidied (§5)."""

    def take_custom_options(self, code: str) -> tuple[str, CustomOptions]:
        return take_custom_options(code)

    def preprocess(self, code: str, custom: CustomOptions) -> Source:
        dialect = preprocess.Dialect(self.spec.prelude, self.spec.gdb, c89=self.spec.name == "c89")
        done = preprocess.preprocess(code, dialect, custom)
        return Source(astyle.pretty(done.code, self.spec.sourcefile), done.unterminated_directive)

    def postprocess_output(self, text: str, source: Source, shown: Shown) -> str:
        if self.spec.name == "tendra":
            return filters.filter_tendra_output(
                text, sourcefile=self.spec.sourcefile, execfile=self.spec.execfile,
                paste=shown.paste, unterminated_directive=source.unterminated_directive,
                channel=shown.channel)
        return filters.filter_c_output(
            text, sourcefile=self.spec.sourcefile, execfile=self.spec.execfile,
            paste=shown.paste, unterminated_directive=source.unterminated_directive)


class Java(Language):
    """Bare statements go into ``class prog``'s main (§4.3); sent as written (the original's
    astyle call for Java always failed)."""

    def take_custom_options(self, code: str) -> tuple[str, CustomOptions]:
        return take_java_options(code)

    def preprocess(self, code: str, custom: CustomOptions) -> Source:
        return Source(java.preprocess(code, self.spec.prelude, custom))


_BEHAVIOUR: dict[str, type[Language]] = {"bc": Bc, "perl": Perl, "clisp": Lisp, "scheme": Lisp,
                                         "java": Java}


def find_language(lang: str) -> Language | None:
    """The language for a ``-lang=`` value (an allow-list: see ``langspec.find``)."""
    spec = find(lang)
    if spec is None:
        return None
    if spec.run is RunMode.CFAMILY:
        return CFamily(spec)
    return _BEHAVIOUR.get(spec.name, Language)(spec)


def unsupported_message(lang: str) -> str:
    return (f"Language '{lang}' is not supported.\n"
            f"Supported languages are: {', '.join(supported_names())}")
