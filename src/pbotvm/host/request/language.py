"""A language's host behaviour: the base one, and the table of the others
(``BEHAVIOURS``), keyed by the langspec row's ``behaviour``.

Each behaviour registers itself where it is written (``registers``): bc's, perl's and the
Lisps' in ``languages``, the C family's in ``cfamily.language``, Java's in ``java``;
``languages.find_language`` picks a request's.

Per request: ``take_custom_options`` (the C family's and Java's own options), ``preprocess``
(the code as the guest gets it, as a ``Source``) and ``postprocess_output`` (its filter).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from pbotvm.host.request.newlines import newlines_outside_quotes
from pbotvm.host.request.statements.custom_options import CustomOptions
from pbotvm.langspec import Behaviour, LangSpec


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
        """The code as the guest gets it: ``\\n`` outside quotes becomes a newline, as in
        the original's base preprocess_code.
        May raise ``UnmatchedBrackets``, whose text is the answer."""
        return Source(newlines_outside_quotes(code))

    def postprocess_output(self, text: str, source: Source, shown: Shown) -> str:
        """The language's own output filter, run after the base post-processing."""
        return text


BEHAVIOURS: dict[Behaviour, type[Language]] = {Behaviour.BASE: Language}

_L = TypeVar("_L", bound=type[Language])


def registers(behaviour: Behaviour) -> Callable[[_L], _L]:
    """A class decorator: the class is the behaviour of the languages whose row names
    ``behaviour``."""

    def register(cls: _L) -> _L:
        if BEHAVIOURS.setdefault(behaviour, cls) is not cls:
            raise ValueError(f"two behaviours for {behaviour}")
        return cls

    return register
