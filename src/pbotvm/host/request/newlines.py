"""The base preprocessing step every language but bc takes, the C family's and Java's
first: ``\\n`` outside quotes becomes a newline."""

from __future__ import annotations

import re

_NEWLINE_SCAN = re.compile(r"[\\\"']")


def newlines_outside_quotes(code: str) -> str:
    """``\\n`` outside quotes becomes a newline (the original's preprocess_code); other escapes
    stay as written.

    A quote opens at any unescaped ``'`` or ``"`` (so ``don't`` stops later conversions, as
    in the original). Unlike the original, a lone backslash at the end is kept.
    """
    out: list[str] = []
    quote: str | None = None
    pos = 0
    while match := _NEWLINE_SCAN.search(code, pos):
        at = match.start()
        out.append(code[pos:at])
        ch = code[at]
        if ch == "\\":
            escaped = code[at + 1 : at + 2]
            out.append("\n" if escaped == "n" and quote is None else "\\" + escaped)
            pos = at + 2
            continue
        if quote is None:
            quote = ch
        elif quote == ch:
            quote = None
        out.append(ch)
        pos = at + 1
    out.append(code[pos:])
    return "".join(out)
