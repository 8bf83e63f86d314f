"""Byte/text helpers shared by host and guest."""

from __future__ import annotations

import re

# Bytes of a program's output kept, by the guest and again by the host (both configurable).
DEFAULT_OUTPUT_LIMIT = 1024 * 1024
_SURROGATE = re.compile(r"[\udc80-\udcff]")


def decode_text(raw: bytes) -> str:
    """Bytes as text; invalid UTF-8 bytes become ``\\xNN`` (upper-case) instead of vanishing."""
    text = raw.decode("utf-8", errors="surrogateescape")
    return _SURROGATE.sub(lambda m: f"\\x{ord(m.group()) - 0xDC00:02X}", text)


def cap_output(raw: bytes, limit: int) -> tuple[bytes, int]:
    """Cut ``raw`` to at most ``limit`` bytes without splitting a UTF-8 character.

    Returns the kept bytes and how many were cut.
    """
    if len(raw) <= limit:
        return raw, 0
    end = limit
    # Step back over continuation bytes so a multi-byte character is not split.
    while end > 0 and end > limit - 4 and (raw[end] & 0xC0) == 0x80:
        end -= 1
    return raw[:end], len(raw) - end


def truncation_marker(cut: int) -> str:
    return f"[... output truncated: {cut} more bytes]"
