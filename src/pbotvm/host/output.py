"""The base post-processing of a guest answer (spec original.md §3.9), before the language's.

In order: one trailing newline goes; backspaces move a cursor back over what was written;
each BEL becomes a random noise word; ESC and FF become ``<esc>`` and ``<ff>``; any other
control character below 0x20 becomes ``\\xNN``, except newline, carriage return, tab and the
IRC formatting codes, which IRC clients render (HEAD's set: bold, colour, reset, monospace,
italic, strikethrough, underline).
"""

from __future__ import annotations

import random
import re

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
    """§3.9 on the collected guest text. ``rng`` picks the BEL words (tests pass a seeded one)."""
    choice = rng.choice if rng is not None else random.choice
    text = apply_backspaces(text.removesuffix("\n"))
    if "\a" in text:
        text = re.sub("\a", lambda _bell: choice(BEEPS), text)
    for char, name in _NAMED.items():
        text = text.replace(char, name)
    return _UNPRINTABLE.sub(lambda match: f"\\x{ord(match[0]):02X}", text)
