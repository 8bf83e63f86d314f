"""One log format for every daemon: one line per event on stderr.

A line may quote what a client or a program supplied (a request, an answer): its control
characters are escaped here, where every line passes, so that nothing quoted can break a line,
forge the next one (a lone ``\\r`` in a terminal) or drive the operator's terminal (ESC).
"""

from __future__ import annotations

import logging
import os
import re

# C0, DEL and C1: the C1 range holds a one-byte CSI (0x9B) some terminals obey.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def escape_controls(text: str) -> str:
    return _CONTROL.sub(lambda match: f"\\x{ord(match[0]):02X}", text)


class OneLineFormatter(logging.Formatter):
    """The event's line escaped; a traceback still follows on lines of its own (ours)."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return escape_controls(super().formatMessage(record))


def setup(name: str) -> None:
    level = logging.DEBUG if os.environ.get("PBOTVM_DEBUG") else logging.INFO
    handler = logging.StreamHandler()
    handler.setFormatter(OneLineFormatter(
        f"%(asctime)s.%(msecs)03d {name}[%(process)d] %(message)s", datefmt="%Y-%m-%d %H:%M:%S"))
    logging.basicConfig(level=level, handlers=[handler])
