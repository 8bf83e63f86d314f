"""SplitLine: the original's way of cutting a line of user text into quoted tokens.

Two scanners share the quoting rules of the Perl original (a backslash escapes the next
character everywhere, inside quotes too; an unbalanced quote is an ordinary character):

* ``split_line``: the 2023 tokenizer, the original's host/lib/SplitLine.pm. A quote opens
  only after whitespace or one of ``: { ( [ . + =`` and closes only before the end,
  whitespace or one of ``, : ; } ) [ ] . + =``; the closing quote ends the token. Only the
  space character separates tokens.
* ``token_spans``: the token boundaries of upstream HEAD's sh-like rewrite (a quote opens
  anywhere and closes at the next matching quote; space, tab and newline separate tokens), as
  offsets into the line, so a caller can cut options out of code without re-joining (and so
  re-spacing) what it keeps.

The Perl rescanned the line from an unbalanced quote, which is quadratic on hostile input.
Here the position of each quote's closer is looked up instead; the tokens are the same, and
every scan is linear in the length of the line.
"""

from __future__ import annotations

import re
from collections.abc import Callable

# Perl's \s under unicode_strings (Python's \s also matches \x1c-\x1f, Perl's does not).
PERL_SPACE = (
    " \t\n\x0b\x0c\r\x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007"
    "\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
_OPEN_AFTER = frozenset(PERL_SPACE + ":{([.+=")
_CLOSE_BEFORE = frozenset(PERL_SPACE + ",:;})[].+=")
_QUOTES = "'\""
_SH_SEPARATORS = " \t\n"

_SPECIAL_2023 = re.compile(r"[\\'\" ]")
_SPECIAL_SH = re.compile(r"[\\'\" \t\n]")
_ESCAPE_PAIR = re.compile(r"\\(.)", re.DOTALL)
_SPACE_RUN = re.compile(r" +")


def _escaped(line: str, pos: int) -> bool:
    """Whether the character at ``pos`` is escaped: an odd run of backslashes precedes it."""
    run = 0
    while pos - run > 0 and line[pos - run - 1] == "\\":
        run += 1
    return run % 2 == 1


class _Closers:
    """Finds the closing quote for a quote at a position, in linear total time.

    Whether a character is escaped depends only on the backslashes right before it, so the
    set of valid closers is fixed; searches move forward, and a failed search is remembered
    because no later search for that quote can succeed either.
    """

    def __init__(self, line: str, valid: Callable[[int], bool]) -> None:
        self._line = line
        self._valid = valid
        self._none_from: dict[str, int] = {}

    def find(self, quote: str, start: int) -> int | None:
        if start >= self._none_from.get(quote, len(self._line) + 1):
            return None
        pos = self._line.find(quote, start)
        while pos >= 0:
            if not _escaped(self._line, pos) and self._valid(pos):
                return pos
            pos = self._line.find(quote, pos + 1)
        self._none_from[quote] = start
        return None


def _unescape(text: str, preserve_escapes: bool) -> str:
    return text if preserve_escapes else _ESCAPE_PAIR.sub(r"\1", text)


def split_line(
    line: str, *, strip_quotes: bool = False, keep_spaces: bool = False,
    preserve_escapes: bool = True,
) -> list[str]:
    """The 2023 SplitLine.pm; empty tokens are dropped, except an empty quote."""
    n = len(line)

    def closes(pos: int) -> bool:
        return pos + 1 == n or line[pos + 1] in _CLOSE_BEFORE

    closers = _Closers(line, closes)
    # An unpaired backslash at the end: the Perl carried it into its rescan from an
    # unbalanced quote, onto the quote, and kept its "ignore the next quote" flag.
    carry = _escaped(line, n)
    tokens: list[str] = []
    token: list[str] = []
    ignore_quote = False
    i = 0

    def flush() -> None:
        text = "".join(token)
        if text:
            tokens.append(text)
        token.clear()

    while i < n:
        match = _SPECIAL_2023.search(line, i)
        if match is None:
            token.append(line[i:])
            break
        if match.start() > i:
            token.append(line[i : match.start()])
            i = match.start()
        ch = line[i]
        if ch == "\\":
            if i + 1 < n:  # a lone backslash at the very end is dropped, as in the original
                token.append(line[i : i + 2] if preserve_escapes else line[i + 1])
            i += 2
        elif ch == " ":
            end = _SPACE_RUN.match(line, i).end()  # type: ignore[union-attr]
            flush()
            if keep_spaces:
                token.append(" " * (end - i - 1))
            i = end
        elif (line[i - 1] if i else " ") not in _OPEN_AFTER:
            token.append(ch)
            i += 1
        elif ignore_quote:
            token.append(ch)
            ignore_quote = False
            i += 1
        else:
            close = closers.find(ch, i + 1)
            if close is None:
                i += 1
                if carry:
                    token.append("\\" + ch if preserve_escapes else ch)
                    ignore_quote = True
                else:
                    token.append(ch)
                continue
            body = _unescape(line[i + 1 : close], preserve_escapes)
            token.append(body if strip_quotes else ch + body + ch)
            tokens.append("".join(token))  # a closing quote always ends a token, even ""
            token.clear()
            i = close + 1
    flush()
    return tokens


def token_spans(line: str) -> list[tuple[int, int]]:
    """``(start, end)`` of each token of ``line`` under HEAD's rules, without its quirks.

    Tokens are separated by unquoted, unescaped space, tab or newline; a quote opens anywhere
    and runs to the next unescaped matching quote, or is an ordinary character if there is
    none. ``line[start:end]`` is the token as written (quotes and backslashes kept).
    """
    n = len(line)
    closers = _Closers(line, lambda _pos: True)
    spans: list[tuple[int, int]] = []
    start: int | None = None
    i = 0
    while i < n:
        match = _SPECIAL_SH.search(line, i)
        j = n if match is None else match.start()
        if j > i and start is None:
            start = i
        if j == n:
            break
        ch = line[j]
        if ch in _SH_SEPARATORS:
            if start is not None:
                spans.append((start, j))
                start = None
            i = j + 1
            continue
        if start is None:
            start = j
        if ch == "\\":
            i = j + 2
        else:
            close = closers.find(ch, j + 1)
            i = j + 1 if close is None else close + 1
    if start is not None:
        spans.append((start, n))
    return spans
