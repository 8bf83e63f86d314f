"""The analysis copy of C or Java code: literals blanked and comments removed.

The function extractor searches this copy so that text in strings and comments is never taken
for code. ``WS`` is Perl's ``\\s``, which the original's patterns used (Python's ``\\s`` also
matches the control characters 0x1C-0x1F).
"""

from __future__ import annotations

import re

from pbotvm.tokenizer import PERL_SPACE

WS = f"[{re.escape(PERL_SPACE)}]"
NOT_WS = f"[^{re.escape(PERL_SPACE)}]"

# A literal ends at the first unescaped quote on its line; its contents become dashes.
_DOUBLE_QUOTED = re.compile(r'"((?:\\"|(?!").)*)"')
_SINGLE_QUOTED = re.compile(r"'((?:\\'|(?!').)*)'")
# Group 1 (the last "text, stars" run) matters only to functions.py's re-read fallback.
BLOCK_COMMENT = re.compile(r"/\*[^*]*\*+([^/*][^*]*\*+)*/")
# What the original's line-comment pass keeps: a whole literal, or one character and the
# run of characters that cannot start a comment or a literal.
_KEPT_PIECE = re.compile(r"""\"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|.[^/"'\\]*""", re.DOTALL)


def blank_literals(text: str) -> str:
    """Replace the contents of ``"…"`` and then ``'…'`` literals by dashes (same length)."""
    text = _DOUBLE_QUOTED.sub(lambda m: '"' + "-" * len(m[1]) + '"', text)
    return _SINGLE_QUOTED.sub(lambda m: "'" + "-" * len(m[1]) + "'", text)


def _line_comment_end(text: str, start: int) -> int | None:
    """Where the ``//`` comment at ``start`` ends, its newline included; None if it cannot.

    The original's pattern ends the comment at the first newline that does not follow a
    backslash; when every later newline follows one, at the last of them.
    """
    last = None
    newline = text.find("\n", start + 2)
    while newline != -1:
        if text[newline - 1] != "\\":
            return newline + 1
        last = newline
        newline = text.find("\n", newline + 1)
    return None if last is None else last + 1


def strip_line_comments(text: str) -> str:
    """Remove ``//`` comments with their newline; a comment that ends the text stays."""
    kept: list[str] = []
    pos = 0
    while pos < len(text):
        if text.startswith("//", pos) and (end := _line_comment_end(text, pos)) is not None:
            pos = end
            continue
        piece = _KEPT_PIECE.match(text, pos)
        assert piece is not None  # its last alternative matches any character
        kept.append(piece[0])
        pos = piece.end()
    return "".join(kept)


def strip_block_comments(text: str) -> str:
    return BLOCK_COMMENT.sub(" ", text)


def analysis_copy(text: str, *, block_comments_first: bool = False) -> str:
    """Literals blanked, then comments removed: ``//`` first, except for c89."""
    text = blank_literals(text)
    if block_comments_first:
        return strip_line_comments(strip_block_comments(text))
    return strip_block_comments(strip_line_comments(text))
