"""One log format for every daemon: one line per event on stderr, as text or, for log
shippers, as JSON (``PBOTVM_LOG_FORMAT=json``).

A line may quote what a client or a program supplied (a request, an answer): its control
characters are escaped here, where every line passes, so that nothing quoted can break a line,
forge the next one (a lone ``\\r`` in a terminal) or drive the operator's terminal (ESC).
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import re

from pbotvm.settings import ConfigError, Setting, choice, on_off

# C0, DEL and C1: the C1 range holds a one-byte CSI (0x9B) some terminals obey.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
FORMATS = ("text", "json")
# Read by every daemon, host's and guest's: both sides' tables list them.
LOG_FORMAT = Setting("PBOTVM_LOG_FORMAT",
                     "`json`: every daemon logs one JSON object per line, for log shippers "
                     "(see [Metrics and status](#metrics-and-status))",
                     choice(*FORMATS), default="text")
DEBUG = Setting("PBOTVM_DEBUG", "set (not `0`): log debug lines too", on_off, default=False)


def escape_controls(text: str) -> str:
    return _CONTROL.sub(lambda match: f"\\x{ord(match[0]):02X}", text)


class OneLineFormatter(logging.Formatter):
    """The event's line escaped; a traceback still follows on lines of its own (ours)."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return escape_controls(super().formatMessage(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, daemon, pid, level, message, and a traceback when
    there is one. The line is printable ASCII: ``json.dumps`` escapes all the rest (C0, DEL,
    C1, every character past ASCII) as ``\\uXXXX``."""

    def __init__(self, daemon: str) -> None:
        super().__init__()
        self.daemon = daemon

    def format(self, record: logging.LogRecord) -> str:
        event: dict[str, object] = {
            "time": datetime.datetime.fromtimestamp(record.created).astimezone()
                    .isoformat(timespec="milliseconds"),
            "daemon": self.daemon,
            "pid": record.process,
            "level": record.levelname.lower(),
            "message": record.getMessage(),
        }
        if record.exc_info:
            event["traceback"] = self.formatException(record.exc_info)
        if record.stack_info:
            event["stack"] = self.formatStack(record.stack_info)
        return json.dumps(event)


def formatter(name: str, log_format: str) -> logging.Formatter:
    if log_format == "json":
        return JsonFormatter(name)
    return OneLineFormatter(f"%(asctime)s.%(msecs)03d {name}[%(process)d] %(message)s",
                            datefmt="%Y-%m-%d %H:%M:%S")


def setup(name: str) -> None:
    """Log as daemon ``name``; a ``PBOTVM_LOG_FORMAT`` that is neither ``text`` nor ``json``
    stops it with one line (before a log shipper gets lines it cannot read)."""
    try:
        log_format = LOG_FORMAT.read(os.environ)
        level = logging.DEBUG if DEBUG.read(os.environ) else logging.INFO
    except ConfigError as e:
        raise SystemExit(f"{name}: {e}") from None
    handler = logging.StreamHandler()
    handler.setFormatter(formatter(name, log_format))
    logging.basicConfig(level=level, handlers=[handler])
