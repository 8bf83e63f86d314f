"""What the host does with a language: the table's facts (``pbotvm.langspec``) plus the few
behaviours that differ from the base one (the original's host modules): bc's preprocessing,
perl's and the Lisps' output filters, the C family and Java.

Each behaviour registers itself for a ``langspec.Behaviour`` (``language.registers``): bc's,
perl's and the Lisps' here, the C family's in ``cfamily.language``, Java's in ``java``.
"""

from __future__ import annotations

import re

from pbotvm.host.request import java
from pbotvm.host.request.cfamily import language as cfamily
from pbotvm.host.request.language import BEHAVIOURS, Language, Shown, Source, registers
from pbotvm.host.request.statements.custom_options import CustomOptions
from pbotvm.langspec import Behaviour, find, supported_names
from pbotvm.tokenizer import PERL_SPACE

__all__ = ["Language", "Shown", "Source", "find_language", "unsupported_message"]

_WS = re.escape(PERL_SPACE)
# The modules that register their behaviours when imported, besides this one.
REGISTERING = (cfamily, java)


@registers(Behaviour.BC)
class Bc(Language):
    def preprocess(self, code: str, custom: CustomOptions) -> Source:
        # bc replaces the base step: no \n conversion, and it must be told to stop.
        return Source(code + "\nquit\n")


@registers(Behaviour.PERL)
class Perl(Language):
    def postprocess_output(self, text: str, source: Source, shown: Shown) -> str:
        # Drop the position and abort notes that follow perl's syntax errors (first of each).
        name = re.escape(self.spec.sourcefile)
        text = re.sub(rf"[{_WS}]+at {name} line \d+, near \".*?\"", "", text, count=1)
        return re.sub(
            rf"[{_WS}]*Execution of {name} aborted due to compilation errors.", "", text,
            count=1)


@registers(Behaviour.LISP)
class Lisp(Language):
    def postprocess_output(self, text: str, source: Source, shown: Shown) -> str:
        return text.removeprefix("\n")


def find_language(lang: str) -> Language | None:
    """The language for a ``-lang=`` value (an allow-list: see ``langspec.find``)."""
    spec = find(lang)
    if spec is None:
        return None
    return BEHAVIOURS[spec.behaviour](spec)


def unsupported_message(lang: str) -> str:
    return (f"Language '{lang}' is not supported.\n"
            f"Supported languages are: {', '.join(supported_names())}")
