"""``diff``'s answer: a word diff of the two newest entries, worded as the original's.

The original ran Text::WordDiff (words cut where a run of word, punctuation or control
characters begins) over Algorithm::Diff's LCS, marked the hunks ``<del>``/``<ins>`` (its
Diff.pm), then rewrote the marks into `` `replaced X with Y` ``, `` `removed X` `` and
`` `inserted X` ``. Of several longest common subsequences, Algorithm::Diff picks one by its
own rule, which decides the wording; so its algorithm is ported as it is, not swapped for
difflib's.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

NO_DIFFERENCE = "No difference."
TOO_LARGE = "Too much code to diff."
# Word pairs the LCS may look at (the same word in both texts): its time grows with their
# number, which is quadratic in the worst case ("a a a ..." against itself). 500 000 take
# about 0.25 s; two IRC lines of code never come near it.
MAX_PAIRS = 500_000

# The rewrites of the marked-up diff, in the original's order.
_DELETION_SPACE = re.compile(r"<del>(.*?)(\s+)</del>")
_INSERTION_SPACE = re.compile(r"<ins>(.*?)(\s+)</ins>")
_REPLACEMENT = re.compile(r"<del>((?:(?!<del>).)*)</del>\s*<ins>((?:(?!<ins>).)*)</ins>")
_DELETION = re.compile(r"<del>(.*?)</del>")
_INSERTION = re.compile(r"<ins>(.*?)</ins>")
_MARKS = re.compile(r"<del>|<ins>")


def _kind(char: str) -> tuple[bool, bool, bool]:
    """Whether ``char`` is a word, a punctuation and a control character, as Perl's
    ``\\p{IsWord}``, ``\\p{IsPunct}`` (category P) and ``\\p{IsCntrl}`` (Cc) see it."""
    category = unicodedata.category(char)
    word = char.isalnum() or category[0] in "LMN" or category == "Pc"
    return word, category[0] == "P", category == "Cc"


def split_words(text: str) -> list[str]:
    """Cut before each character that starts a run of word, punctuation or control
    characters: ``echo foo(1, 2);`` is ``echo `` ``foo`` ``(`` ``1`` ``, `` ``2`` ``);``."""
    words: list[str] = []
    start = 0
    previous = (False, False, False)
    for i, char in enumerate(text):
        kind = _kind(char)
        if i and any(now and not before for now, before in zip(kind, previous, strict=True)):
            words.append(text[start:i])
            start = i
        previous = kind
    if text:
        words.append(text[start:])
    return words


def _replace_next_larger(thresh: list[int], value: int, high: int | None) -> int | None:
    """Algorithm::Diff's ``_replaceNextLargerWith``: put ``value`` in the sorted ``thresh``
    over the next larger entry (or at its end); its index, or None when already there."""
    if not high:
        high = len(thresh) - 1
    if high == -1 or value > thresh[-1]:
        thresh.append(value)
        return high + 1
    low = 0
    while low <= high:
        index = (high + low) // 2
        found = thresh[index]
        if value == found:
            return None
        if value > found:
            low = index + 1
        else:
            high = index - 1
    thresh[low] = value
    return low


class TooLarge(Exception):
    """The diff would look at more than ``MAX_PAIRS`` word pairs."""


def _match_vector(a: Sequence[str], b: Sequence[str]) -> dict[int, int]:
    """Algorithm::Diff's ``_longestCommonSubsequence``: for each index of ``a`` in the LCS,
    the index of ``b`` it matches. TooLarge before any work over ``MAX_PAIRS``."""
    matches: dict[int, int] = {}
    a_start, a_end, b_start, b_end = 0, len(a) - 1, 0, len(b) - 1
    while a_start <= a_end and b_start <= b_end and a[a_start] == b[b_start]:
        matches[a_start] = b_start
        a_start += 1
        b_start += 1
    while a_start <= a_end and b_start <= b_end and a[a_end] == b[b_end]:
        matches[a_end] = b_end
        a_end -= 1
        b_end -= 1
    positions: dict[str, list[int]] = {}
    for index in range(b_start, b_end + 1):
        positions.setdefault(b[index], []).append(index)
    for found in positions.values():
        found.reverse()  # descending, as the original
    pairs = sum(len(positions.get(a[i], ())) for i in range(a_start, a_end + 1))
    if pairs > MAX_PAIRS:
        raise TooLarge
    thresh: list[int] = []
    links: dict[int, tuple[object, int, int]] = {}
    for i in range(a_start, a_end + 1):
        k: int | None = 0
        for j in positions.get(a[i], ()):
            if k and thresh[k] > j and thresh[k - 1] < j:
                thresh[k] = j
            else:
                k = _replace_next_larger(thresh, j, k)
            if k is not None:
                links[k] = (links[k - 1] if k else None, i, j)
    link: object = links[len(thresh) - 1] if thresh else None
    while isinstance(link, tuple):
        matches[link[1]] = link[2]
        link = link[0]
    return matches


def _marked(a: list[str], b: list[str]) -> str:
    """Text::WordDiff's output with the original's Diff.pm style: same words as they are,
    each changed hunk as ``<del>..</del><ins>..</ins>``."""
    matches = _match_vector(a, b)
    out: list[str] = []
    ai = bi = 0
    for am in sorted(matches):
        bm = matches[am]
        if ai < am or bi < bm:
            _hunk(out, a[ai:am], b[bi:bm])
        out.append(a[am])
        ai, bi = am + 1, bm + 1
    if ai < len(a) or bi < len(b):
        _hunk(out, a[ai:], b[bi:])
    return "".join(out)


def _hunk(out: list[str], deleted: list[str], inserted: list[str]) -> None:
    if deleted:
        out.append("<del>" + "".join(deleted) + "</del>")
    if inserted:
        out.append("<ins>" + "".join(inserted) + "</ins>")


def describe(old: str, new: str) -> str:
    """The answer to ``diff``: ``new`` with each change worded in backticks, or
    ``No difference.`` (``TOO_LARGE`` past ``MAX_PAIRS``)."""
    try:
        marked = _marked(split_words(old), split_words(new))
    except TooLarge:
        return TOO_LARGE
    if not _MARKS.search(marked):
        return NO_DIFFERENCE
    marked = _DELETION_SPACE.sub(r"<del>\1</del>\2", marked)
    marked = _INSERTION_SPACE.sub(r"<ins>\1</ins>\2", marked)
    marked = _REPLACEMENT.sub(r"`replaced \1 with \2`", marked)
    marked = _DELETION.sub(r"`removed \1`", marked)
    return _INSERTION.sub(r"`inserted \1`", marked)
