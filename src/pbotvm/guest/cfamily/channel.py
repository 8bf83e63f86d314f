"""What the gdb driver tells the runner, and how the runner puts it into the program's output.

The program's stdout is a file (the original's ``.output``); the driver does not write into
it, it sends each line it has to show as a record saying where in that file it belongs, and a
last record saying how the run ended. So the program's file-size limit cannot cut the
driver's words, and the program cannot forge them (it never gets the records' descriptor).
Records are JSON, one per line.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field

# Descriptors of the gdb process, as the runner sets them up (the program gets none of them).
PROGRAM_STDERR_FD = 3
OUTPUT_FD = 4  # the program's stdout file, opened for appending; it comes with the order
RECORDS_FD = 5
ORDER_FD = 6  # a unix socket: the order, which gdb may be started well before (``gdb_ahead``)
_ORDER_LIMIT = 1 << 20  # bytes; a request's arguments are far shorter


@dataclass(frozen=True)
class Order:
    """What gdb is to run: the program, in its work directory, with its arguments."""

    directory: str
    program: str
    arguments: list[str]


def send_order(sock: socket.socket, order: Order, output_fd: int) -> None:
    """The order, with the program's stdout file, then end of file."""
    data = json.dumps(order.__dict__).encode()
    sent = socket.send_fds(sock, [data], [output_fd])
    sock.sendall(data[sent:])
    sock.shutdown(socket.SHUT_WR)


def receive_order(fd: int) -> tuple[Order, int]:
    """The order and the program's stdout file, from ``send_order``; blocks until they come."""
    with socket.socket(fileno=fd) as sock:
        data, fds, _, _ = socket.recv_fds(sock, _ORDER_LIMIT, 1)
        while data and (chunk := sock.recv(_ORDER_LIMIT)):
            data += chunk
    if len(fds) != 1:
        for received in fds:
            os.close(received)
        raise ValueError(f"an order comes with one descriptor, not {len(fds)}")
    return Order(**json.loads(data)), fds[0]

_EXITED = "exited"
_STALLED = "stalled"


def emit_record(offset: int, text: str) -> bytes:
    """``text`` is to appear after the first ``offset`` bytes of the program's output."""
    return _line({"at": offset, "text": text})


def exited_record(status: int) -> bytes:
    return _line({"end": _EXITED, "status": status})


def stalled_record() -> bytes:
    """The run reached a state the original's guest-gdb waited out until its time-out."""
    return _line({"end": _STALLED})


def _line(record: dict[str, object]) -> bytes:
    return json.dumps(record).encode() + b"\n"


@dataclass
class Transcript:
    emits: list[tuple[int, str]] = field(default_factory=list)
    status: int = 0
    ended: bool = False  # the driver finished (else gdb died or was killed first)
    stalled: bool = False


def read_records(data: bytes) -> Transcript:
    """The records, in order; lines that are not records are skipped (the user's code can
    run gdb commands, and so Python, inside the driver)."""
    transcript = Transcript()
    for line in data.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if not isinstance(record, dict):
            continue
        at, text, end = record.get("at"), record.get("text"), record.get("end")
        if isinstance(at, int) and isinstance(text, str):
            transcript.emits.append((at, text))
        elif end == _EXITED and isinstance(record.get("status"), int):
            transcript.ended, transcript.status = True, record["status"]
        elif end == _STALLED:
            transcript.ended = transcript.stalled = True
    return transcript


def splice(output: bytes, inserts: Sequence[tuple[int, str]]) -> bytes:
    """The program's output with each text put in after the first ``offset`` bytes."""
    parts, done = [], 0
    for offset, text in inserts:
        cut = min(max(offset, done), len(output))
        parts += [output[done:cut], text.encode("utf-8", "surrogateescape")]
        done = cut
    parts.append(output[done:])
    return b"".join(parts)
