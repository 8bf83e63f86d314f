"""The C family's own options in the code: ``-nomain``, ``-noheaders``, ``-include X``.

They are taken after the standard options and before the compiler options. Unlike those,
they count anywhere they start the code or follow whitespace (the original's rule, kept).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pbotvm.host.request.statements.analysis import NOT_WS, WS

_NOMAIN = re.compile(rf"(?:^|(?<={WS}))-nomain{WS}*", re.IGNORECASE)
_NOHEADERS = re.compile(rf"(?:^|(?<={WS}))-noheaders{WS}*", re.IGNORECASE)
# The header name runs to whitespace, and whitespace must follow it.
_INCLUDE = re.compile(rf"(?:^|(?<={WS}))-include{WS}+({NOT_WS}+){WS}+")


@dataclass(frozen=True)
class CustomOptions:
    nomain: bool = False  # the user writes the whole program: no main wrapping
    noheaders: bool = False  # no prelude, no prelude.h, no gdb extensions
    includes: tuple[str, ...] = ()  # each becomes ``#include <X>`` in front of the code


def take_flag(code: str, pattern: re.Pattern[str]) -> tuple[str, bool]:
    """Remove the first occurrence of the flag ``pattern`` (with the whitespace after it)."""
    found = pattern.search(code)
    if found is None:
        return code, False
    return code[: found.start()] + code[found.end() :], True


def take_custom_options(code: str) -> tuple[str, CustomOptions]:
    """The code without the C family's options, and the options."""
    code, nomain = take_flag(code, _NOMAIN)
    code, noheaders = take_flag(code, _NOHEADERS)
    includes: list[str] = []
    while found := _INCLUDE.search(code):
        includes.append(found[1])
        code = code[: found.start()] + code[found.end() :]
    return code, CustomOptions(nomain, noheaders, tuple(includes))


def take_java_options(code: str) -> tuple[str, CustomOptions]:
    """Java knows ``-nomain`` and ``-noheaders`` only (as the original's java.pm)."""
    code, nomain = take_flag(code, _NOMAIN)
    code, noheaders = take_flag(code, _NOHEADERS)
    return code, CustomOptions(nomain, noheaders)
