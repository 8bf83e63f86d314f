"""What the C family and Java share in making a program of the user's statements: the
leading lines (headers, imports), ``main``'s body, the program when the user wrote ``main``,
and the patterns of the last clean-up."""

from __future__ import annotations

import re

from pbotvm.host.request.statements.analysis import WS

_BRACED = re.compile(r"\{(.*)\}", re.DOTALL)
_LEADING_CLOSE = re.compile(r"\};?")

DOUBLED_SEMICOLON = re.compile(rf";{WS}*;\n")
SEMICOLON_AFTER_BRACE = re.compile(rf"([{{}}])\n{WS}*;\n")
BLANK_LINES = re.compile(r"(?:\n\n)+")


def split_leading_lines(precode: str, line_pattern: re.Pattern[str]) -> tuple[str, str]:
    """The leading lines that ``line_pattern`` matches (its group 1 of each), and the rest."""
    header: list[str] = []
    while line := line_pattern.match(precode):
        header.append(line[1])
        precode = precode[line.end() :]
    return "".join(header), precode


def main_body(rest: str) -> tuple[str, str]:
    """Step 10-11: ``rest`` without outer braces, less a leading ``}``/``};`` (returned first,
    it goes to the functions)."""
    braced = _BRACED.fullmatch(rest)
    body = braced[1] if braced else rest
    closing = _LEADING_CLOSE.match(body)
    if closing is None:
        return "", body
    return closing[0], body[closing.end() :]


def given_program(header: str, functions: str, rest: str) -> str:
    """The program when the user wrote ``main`` (or said ``-nomain``); the original dropped
    ``rest``, the code after the last function (a defect, fixed here)."""
    return f"{header}\n{functions}\n{rest}\n"
