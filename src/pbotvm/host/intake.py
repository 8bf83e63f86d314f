"""What vm-server holds of its clients' request lines, bounded.

At most ``MAX_CLIENTS`` connections, a line of at most ``MAX_LINE`` bytes, and at most
``MAX_BUFFERED`` bytes read from all connections together, held until each is answered (40
clients sending 15 MB partial lines once took vm-server from 24 MB to 582 MB). A client over a
bound gets one line saying so, and nothing more of it is read.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

MAX_CLIENTS = 100
MAX_LINE = 16 * 1024 * 1024
MAX_BUFFERED = 32 * 1024 * 1024
# Also the StreamReader's limit: it stops reading a socket once it holds twice this.
READ_CHUNK = 64 * 1024

TOO_MANY = "Virtual machine is busy (too many requests at once), try again soon."
TOO_MUCH = "Virtual machine is busy (too much request data at once), try again soon."
TOO_LARGE = f"Request too large (limit {MAX_LINE // (1024 * 1024)} MiB)."


class Refused(Exception):
    """Over a bound; the message is the client's answer."""


class Allowance:
    """One connection's share of the bytes held."""

    def __init__(self, intake: Intake) -> None:
        self._intake = intake
        self.held = 0

    def take(self, size: int) -> None:
        if self._intake.held + size > self._intake.max_bytes:
            # What it held is dropped with it: given back now, so that the other clients
            # go on, instead of all being refused in the same instant.
            self._intake.held -= self.held
            self.held = 0
            raise Refused(TOO_MUCH)
        self._intake.held += size
        self.held += size


class Intake:
    def __init__(self, max_clients: int = MAX_CLIENTS, max_bytes: int = MAX_BUFFERED) -> None:
        self.max_clients = max_clients
        self.max_bytes = max_bytes
        self.clients = 0
        self.held = 0

    @contextlib.contextmanager
    def client(self) -> Iterator[Allowance]:
        """A connection, for as long as it is served; Refused when there are too many."""
        if self.clients >= self.max_clients:
            raise Refused(TOO_MANY)
        self.clients += 1
        allowance = Allowance(self)
        try:
            yield allowance
        finally:
            self.clients -= 1
            self.held -= allowance.held


async def read_line(reader: asyncio.StreamReader, allowance: Allowance,
                    max_line: int = MAX_LINE) -> bytes:
    """The first line that is not blank, without its newline (the rest of the data if the
    client closed without one; b"" if it sent nothing else). Refused over a bound.

    The pieces are kept as read and joined once: a growing buffer would be copied as it
    grows and leave the allocator twice the bytes it holds."""
    pieces: list[bytes] = []
    size = 0
    try:
        while True:
            chunk = await reader.read(READ_CHUNK)
            if not chunk:
                rest = b"".join(pieces)
                return rest if rest.strip() else b""
            allowance.take(len(chunk))
            while (end := chunk.find(b"\n")) >= 0:
                if size + end > max_line:
                    raise Refused(TOO_LARGE)
                line = b"".join([*pieces, chunk[:end]])
                if line.strip():
                    return line
                pieces, size, chunk = [], 0, chunk[end + 1 :]
            pieces.append(chunk)
            size += len(chunk)
            if size > max_line:
                raise Refused(TOO_LARGE)
    finally:
        # A refusal's or a time-out's traceback keeps this frame alive until the cyclic
        # garbage collector happens to run: the pieces must not stay with it.
        pieces.clear()
