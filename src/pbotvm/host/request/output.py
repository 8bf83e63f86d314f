"""The user's answer made from the guest's text: the one place output is finished (and
capped: ``cap``).

``finish`` runs the base post-processing (the original's postprocess_output), then the
language's own filter, then caps the reply. The base post-processing, in order: one trailing
newline goes; backspaces move a cursor back over what was written; each BEL becomes a random
noise word; ESC and FF become ``<esc>`` and ``<ff>``; any other control character below
0x20 becomes ``\\xNN``, except newline, carriage return, tab and the IRC formatting codes,
which IRC clients render (HEAD's set: bold, colour, reset, monospace, italic, strikethrough,
underline).
"""

from __future__ import annotations

import random
import re
from typing import TYPE_CHECKING

from pbotvm.protocol import TIMED_OUT
from pbotvm.text import cap_output, truncation_marker

if TYPE_CHECKING:
    from pbotvm.host.request.languages import Language, Shown, Source

BEEPS = ("*BEEP*", "*BING*", "*DING*", "*DONG*", "*CLUNK*", "*BONG*", "*PING*", "*BOOP*",
         "*BLIP*", "*BOP*", "*WHIRR*")
_NAMED = {"\x1b": "<esc>", "\x0c": "<ff>"}
_KEPT = "\n\r\t\x02\x03\x0f\x11\x1d\x1e\x1f"
_UNPRINTABLE = re.compile("[" + "".join(
    re.escape(chr(code)) for code in range(0x20) if chr(code) not in _KEPT) + "]")


def apply_backspaces(text: str) -> str:
    """A cursor over the text: BS moves it left (not past the start), anything else
    overwrites the character under it or is appended. Nothing is cut: ``abc\\b\\bX`` is
    ``aXc``."""
    if "\b" not in text:
        return text
    out: list[str] = []
    cursor = 0
    for index, piece in enumerate(text.split("\b")):
        if index:
            cursor = max(cursor - 1, 0)
        out[cursor : cursor + len(piece)] = piece  # overwrites, and extends past the end
        cursor += len(piece)
    return "".join(out)


def postprocess(text: str, rng: random.Random | None = None) -> str:
    """The base post-processing of the collected guest text. ``rng`` picks the BEL words (tests
    pass a seeded one)."""
    choice = rng.choice if rng is not None else random.choice
    text = apply_backspaces(text.removesuffix("\n"))
    if "\a" in text:
        text = re.sub("\a", lambda _bell: choice(BEEPS), text)
    for char, name in _NAMED.items():
        text = text.replace(char, name)
    return _UNPRINTABLE.sub(lambda match: f"\\x{ord(match[0]):02X}", text)


def finish(text: str, language: Language, source: Source, shown: Shown, limit: int, *,
           timed_out: bool = False) -> str:
    """The answer to print for the guest's ``text`` about ``source``; ``timed_out`` when the
    host's time limit cut it short, as the original: ``[Timed-out]`` and what had arrived.
    The cap applies to the reply itself, after escaping (which can make a character four)."""
    text = language.postprocess_output(postprocess(text), source, shown)
    if timed_out:
        text = f"{TIMED_OUT} {text}".rstrip()
    return cap(text, limit)


def cap(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` bytes of UTF-8 and marked so: every reply passes it, an
    edit's (``show``, ``copy``, ``diff``) as well as a program's."""
    raw, cut = cap_output(text.encode("utf-8", "surrogatepass"), limit)
    if not cut:
        return text
    return raw.decode("utf-8", "surrogatepass").rstrip("\n") + "\n" + truncation_marker(cut)
