"""The host <-> guest wire format, used by both sides.

Request (host -> guest): a JSON object, framed one of two ways:
  * 2023 (the documented original): the JSON text, then ``\\n:end:\\n``, written in chunks;
  * head (upstream HEAD): the JSON cut into 4000-byte lines, then an empty line.
The guest accepts both on the same stream; a machine entry chooses what the host sends. Our
host starts each frame with ``\\t\\n``: JSON whitespace to the original's guests, a point to
resynchronise at for ours (compact JSON never holds a raw tab).

Reply (guest -> host): ``result:{json}`` line(s), then ``result:end``. Our guest adds the
request ``id`` and a machine-readable status; the original's fields are kept so an original
host still understands us, and unknown fields are ignored both ways.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from dataclasses import dataclass, field
from enum import StrEnum

from pbotvm.text import decode_text

log = logging.getLogger("pbotvm.protocol")

END_2023 = b"\n:end:\n"
# Where our host's frames start. A tab never appears raw in compact JSON (the original's
# encoders and ours escape it in strings); both original guests skip it as whitespace, and a
# cooked tty passes it unchanged (a lone \r would become \n, and \n\n ends a head frame).
FRAME_START = b"\t\n"
# Data resuming after this long a pause starts a frame if the frame so far does not decode:
# the original's hosts send no FRAME_START, and a sender writes a request without pausing.
IDLE_GAP = 1.0
CHUNK_2023 = 16383
CHUNK_HEAD = 4000  # stays under the 4096-byte canonical tty line limit
RESULT_PREFIX = b"result:"
RESULT_END = b"result:end"
# What a reply starts with when a time limit stopped the program (the guest's or the host's).
TIMED_OUT = "[Timed-out]"
# The vsock port the guest listens on and the host connects to, unless both are told another.
VSOCK_PORT = 5555

# `:end:` alone on its line (whitespace allowed), as the original guest matched it.
_END_RE = re.compile(rb"(?:^|\n)[ \t\r]*:end:[ \t\r]*(?:\n|$)")
# A persist-key names a directory in the guest: the host refuses what the guest would.
_PERSIST_KEY_RE = re.compile(r"(?!\.{1,2}$)[A-Za-z0-9._-]{1,64}")
PERSIST_KEY_RULE = ("Invalid persist-key: 1 to 64 letters, digits, '.', '_' or '-', and not "
                    "'.' or '..'.")


def valid_persist_key(key: str) -> bool:
    return _PERSIST_KEY_RE.fullmatch(key) is not None


class Framing(StrEnum):
    V2023 = "2023"
    HEAD = "head"


class ProtocolError(ValueError):
    """A request or reply that cannot be understood; the message is shown to the user."""


@dataclass
class Request:
    lang: str
    sourcefile: str
    execfile: str
    cmdline: str
    code: str
    input: str | None = ""
    arguments: str = ""
    date: int = 0
    factoid: str | None = None
    persist_key: str | None = None
    id: str | None = None

    def to_json(self) -> dict[str, object]:
        obj: dict[str, object] = {
            "lang": self.lang,
            "sourcefile": self.sourcefile,
            "execfile": self.execfile,
            "cmdline": self.cmdline,
            "input": self.input,
            "date": self.date,
            "arguments": self.arguments,
            "code": self.code,
        }
        if self.factoid:
            obj["factoid"] = self.factoid
        if self.persist_key:
            obj["persist-key"] = self.persist_key
        if self.id is not None:
            obj["id"] = self.id
        return obj

    @classmethod
    def from_json(cls, obj: object) -> Request:
        if not isinstance(obj, dict):
            raise ProtocolError("request is not a JSON object")

        def text(key: str, default: str | None = None, *, required: bool = False) -> str | None:
            value = obj.get(key, default)
            if value is None:
                if required:
                    raise ProtocolError(f"request has no {key!r}")
                return default
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return str(value)
            if not isinstance(value, str):
                raise ProtocolError(f"request field {key!r} must be a string")
            return value

        date = obj.get("date", 0)
        if isinstance(date, str) and date.strip().lstrip("-").isdigit():
            date = int(date)
        if not isinstance(date, int) or isinstance(date, bool):
            raise ProtocolError("request field 'date' must be an integer")
        persist_key = text("persist-key") or None
        if persist_key is not None and not valid_persist_key(persist_key):
            raise ProtocolError("request field 'persist-key' must match [A-Za-z0-9._-]{1,64}")
        sourcefile = text("sourcefile", "prog.sh") or "prog.sh"
        execfile = text("execfile", sourcefile) or sourcefile
        for name in (sourcefile, execfile):
            if "/" in name or name in (".", ".."):
                raise ProtocolError(f"file name {name!r} must not contain a path")
        raw_id = obj.get("id")
        return cls(
            lang=text("lang", "_default") or "_default",
            sourcefile=sourcefile,
            execfile=execfile,
            cmdline=text("cmdline", required=True) or "",
            code=text("code", "") or "",
            input=text("input", ""),
            arguments=text("arguments", "") or "",
            date=date,
            factoid=text("factoid") or None,
            persist_key=persist_key,
            id=None if raw_id is None else str(raw_id),
        )


def encode_request(request: Request, framing: Framing = Framing.V2023) -> list[bytes]:
    """The request as the pieces to write, in order."""
    payload = json.dumps(request.to_json(), ensure_ascii=False, separators=(",", ":")).encode()
    if framing is Framing.HEAD:
        pieces = [payload[i : i + CHUNK_HEAD] + b"\n" for i in range(0, len(payload), CHUNK_HEAD)]
        return [FRAME_START, *pieces, b"\n"]
    data = FRAME_START + payload + END_2023
    return [data[i : i + CHUNK_2023] for i in range(0, len(data), CHUNK_2023)]


class RequestDecoder:
    """Incremental guest-side decoder: feed bytes, get whole requests (either framing).

    A request that cannot be decoded comes out as a ProtocolError in its place, so the caller
    answers it and carries on; nothing that arrives can stop the decoder. A partial frame
    (a writer that died, or garbage on the line) must not spoil the next request: it is
    dropped, unanswered, at a FRAME_START, or when the data after an idle gap of over
    IDLE_GAP seconds decodes on its own and the whole does not.
    """

    def __init__(self, limit: int = 64 * 1024 * 1024) -> None:
        self._buffer = bytearray()
        self._limit = limit
        self._scanned = 0  # bytes already searched for a terminator: keeps feeding linear
        self._last_data = 0.0  # time.monotonic() of the last feed
        self._resumed_at: int | None = None  # where data resumed after an idle gap

    def feed(self, data: bytes, now: float | None = None) -> list[Request | ProtocolError]:
        now = time.monotonic() if now is None else now
        if self._buffer and now - self._last_data > IDLE_GAP:
            self._resumed_at = len(self._buffer)
        self._last_data = now
        self._buffer += data
        out: list[Request | ProtocolError] = []
        while True:
            if self._buffer[:1].isspace():
                self._consume(len(self._buffer) - len(self._buffer.lstrip()))
            if not self._buffer:
                break
            found = self._next_frame()
            if found is None:
                if len(self._buffer) > self._limit:
                    self._consume(len(self._buffer))
                    out.append(ProtocolError(f"request larger than {self._limit} bytes"))
                break
            out.append(_decode_frame(*found))
        return out

    def _consume(self, count: int) -> None:
        """Drop ``count`` bytes from the front, keeping the positions that point past them."""
        del self._buffer[:count]
        self._scanned = max(0, self._scanned - count)
        if self._resumed_at is not None:
            self._resumed_at = self._resumed_at - count if self._resumed_at > count else None

    def _next_frame(self) -> tuple[bytes, int | None] | None:
        """The next whole frame and where in it data resumed after a gap; None until one is
        complete. A FRAME_START inside the frame drops what came before it."""
        # A terminator or a start may straddle the previous feed: look back a few bytes.
        start = max(0, self._scanned - 16)
        blank = self._buffer.find(b"\n\n", start)
        end = _END_RE.search(self._buffer, start)
        if end is not None and (blank < 0 or end.start() <= blank):
            frame_end, next_start = end.start(), end.end()
        elif blank >= 0:
            frame_end, next_start = blank, blank + 2
        else:
            frame_end = next_start = -1
        restart = self._buffer.rfind(FRAME_START, start, frame_end if frame_end >= 0 else None)
        if restart > 0:
            log.warning("request decoder: %d bytes of a partial frame dropped at a frame start",
                        restart)
            self._consume(restart)
            return self._next_frame()
        if frame_end < 0:
            self._scanned = len(self._buffer)
            return None
        frame = bytes(self._buffer[:frame_end])
        resumed = self._resumed_at
        self._consume(next_start)
        self._scanned = 0
        return frame, resumed if resumed is not None and resumed < frame_end else None


def _decode_frame(frame: bytes, resumed: int | None) -> Request | ProtocolError:
    """The frame's request; when it does not decode but its part after an idle gap does, that
    part's (what came before was a partial frame that nobody finished)."""
    decoded = _decode_payload(frame)
    if isinstance(decoded, ProtocolError) and resumed is not None:
        retried = _decode_payload(frame[resumed:])
        if isinstance(retried, Request):
            log.warning("request decoder: %d bytes of a partial frame dropped after an idle "
                        "gap", resumed)
            return retried
    return decoded


def _limit_reason(error: ValueError | RecursionError) -> str:
    """What valid JSON we cannot take: arrays nested thousands deep, or a number of
    thousands of digits (Python refuses to convert those, as a defence against slow input)."""
    if isinstance(error, RecursionError):
        return "nested too deeply"
    return f"a number has more than {sys.get_int_max_str_digits()} digits"


def _decode_payload(frame: bytes) -> Request | ProtocolError:
    # Neither framing puts raw newlines inside the JSON text, so removing them is lossless.
    text = frame.replace(b"\r", b"").replace(b"\n", b"")
    try:
        return Request.from_json(json.loads(text.decode("utf-8")))
    except UnicodeDecodeError as e:
        return ProtocolError(f"request is not UTF-8: {e.reason} at byte {e.start}")
    except json.JSONDecodeError as e:
        return ProtocolError(f"request is not JSON: {e.msg} at character {e.pos}")
    except ProtocolError as e:
        return e
    except (ValueError, RecursionError) as e:
        return ProtocolError(f"request is not JSON: {_limit_reason(e)}")


@dataclass
class Result:
    """What the guest answers. ``killed`` names the limit that stopped the program, if any."""

    text: str
    id: str | None = None
    exit: int | None = None
    killed: str | None = None
    extra: dict[str, object] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        obj: dict[str, object] = {"result": self.text}
        if self.id is not None:
            obj["id"] = self.id
        if self.exit is not None:
            obj["exit"] = self.exit
        if self.killed is not None:
            obj["killed"] = self.killed
        return obj


def encode_result(result: Result) -> bytes:
    line = json.dumps(result.to_json(), ensure_ascii=False, separators=(",", ":"))
    return RESULT_PREFIX + line.encode() + b"\n" + RESULT_END + b"\n"


def decode_line(raw: bytes) -> str:
    return decode_text(raw).rstrip("\r\n")


class ResultDecoder:
    """Host-side reader of the reply stream for one request.

    Lines before the first ``result:`` line are noise (a cooked tty echoes the request) and
    are skipped; later non-result lines are kept verbatim, as the original did. A result
    carrying another request's id is stale (a timed-out job answering late) and is dropped.
    With ``require_id`` (the guest is known to echo ids), so is a result without one: it
    can only be a frame someone else put on the line.
    """

    def __init__(self, request_id: str | None, *, require_id: bool = False) -> None:
        self._id = request_id
        self._require_id = require_id and request_id is not None
        self._started = False
        self.id_echoed = False  # a result carried this request's id
        self.dropped = 0  # results that were not for this request
        self.parts: list[str] = []
        self.done = False
        self.exit: int | None = None
        self.killed: str | None = None

    @property
    def text(self) -> str:
        return "".join(self.parts)

    def feed_line(self, raw: bytes) -> None:
        line = decode_line(raw)
        if line == RESULT_END.decode():
            if self._started:
                self.done = True
            return
        if line.startswith("result:"):
            self._feed_result(line[len("result:") :])
        elif self._started:
            self.parts.append(line + "\n")

    def _feed_result(self, payload: str) -> None:
        try:
            obj = json.loads(payload)
        except json.JSONDecodeError:
            obj = None
        if not isinstance(obj, dict):
            if self._started:
                self.parts.append(payload + "\n")
            return
        rid = obj.get("id")
        if (rid is None and self._require_id) or (
                rid is not None and self._id is not None and str(rid) != self._id):
            self.dropped += 1
            return
        self.id_echoed = self.id_echoed or (rid is not None and str(rid) == self._id)
        self._started = True
        text = obj.get("result")
        self.parts.append(("" if text is None else str(text)) + "\n")
        if isinstance(obj.get("exit"), int):
            self.exit = obj["exit"]
        if isinstance(obj.get("killed"), str):
            self.killed = obj["killed"]


# --- vm-client -> vm-server ------------------------------------------------------------------

CLIENT_FIELDS = ("nick", "channel", "code", "lang", "arguments", "factoid", "persist-key",
                 "usage")


_ESCAPED_BYTE = re.compile(r"[\udc80-\udcff]")  # a byte that was not UTF-8 (surrogateescape)
_LONE_SURROGATE = re.compile(r"[\ud800-\udfff]")


def parse_client_line(line: str) -> dict[str, str]:
    """The context of one client line: a JSON object (what PBot sends) or plain vm-exec text.

    ``line`` is decoded with ``surrogateescape``: a byte that is not UTF-8 is shown as
    ``\\xNN`` in plain text, and makes a JSON line malformed. A line that starts like a JSON
    object must be one; the original compiled broken JSON as C code. Plain text becomes the
    code. A persist-key the guest would refuse is refused here, before any request is sent
    (the guest's refusal carries no request id: the host waited for its time-out). Whatever
    the line holds, the answer to a bad one is one clear line.
    """
    stripped = line.strip()
    if not stripped.startswith('{"'):
        return {"code": decode_text(stripped.encode("utf-8", "surrogateescape"))}
    if bad := _ESCAPED_BYTE.search(stripped):
        raise ProtocolError(f"Malformed JSON request: byte 0x{ord(bad[0]) - 0xDC00:02X} at "
                            f"character {bad.start()} is not UTF-8.")
    try:
        obj = json.loads(stripped)
    except json.JSONDecodeError as e:
        raise ProtocolError(f"Malformed JSON request: {e.msg} at character {e.pos}.") from None
    except (ValueError, RecursionError) as e:
        raise ProtocolError(f"Malformed JSON request: {_limit_reason(e)}.") from None
    if not isinstance(obj, dict):
        raise ProtocolError("Malformed JSON request: expected an object.")
    context: dict[str, str] = {}
    for key in CLIENT_FIELDS:
        value = obj.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise ProtocolError(f"Malformed JSON request: {key!r} must be a string.")
        text = str(value)
        if surrogate := _LONE_SURROGATE.search(text):
            raise ProtocolError(f"Malformed JSON request: {key!r} has a lone surrogate "
                                f"(\\u{ord(surrogate[0]):04x}), which is no character.")
        if key == "persist-key" and text and not valid_persist_key(text):
            raise ProtocolError(PERSIST_KEY_RULE)
        context[key] = text
    return context


# Reading a longer line costs the reader time in proportion: such a line (no chat line is
# one) counts as an unknown requester's.
REQUESTER_LINE_MAX = 64 * 1024


def requester(line: str) -> str:
    """Who sent a client line, for fair turns: its nick, else its channel; "" when the line
    does not say (plain text, broken JSON, or longer than ``REQUESTER_LINE_MAX``)."""
    if len(line) > REQUESTER_LINE_MAX:
        return ""
    try:
        context = parse_client_line(line)
    except ProtocolError:
        return ""
    return context.get("nick") or context.get("channel") or ""
