"""Text::Balanced's ``extract_delimited``: the quoted parts of an edit command."""

from __future__ import annotations

import re

_PATTERNS = {
    delim: re.compile(rf"\s*({re.escape(delim)}[^\\{re.escape(delim)}]*"
                      rf"(?:\\.[^\\{re.escape(delim)}]*)*{re.escape(delim)})", re.DOTALL)
    for delim in ("'", "/")
}


def extract_delimited(text: str, delim: str) -> tuple[str, str] | None:
    """``(inside, rest)`` when ``text`` starts (after whitespace) with a ``delim``-quoted part.

    A backslash escapes the next character and stays in ``inside``, as in the original:
    ``'it\\'s'`` gives ``it\\'s``. None when the quote does not open or never closes.
    """
    match = _PATTERNS[delim].match(text)
    if match is None:
        return None
    return match[1][1:-1], text[match.end():]
