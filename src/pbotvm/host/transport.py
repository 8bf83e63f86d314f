"""Host-side channels to a guest: AF_VSOCK when a CID is set, else the serial TCP port.

vsock is used natively (no socat child); any failure to connect falls back to the serial
port, which the original never did when socat existed but could not connect.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time

from pbotvm.config import Machine
from pbotvm.protocol import Request, ResultDecoder, encode_request

log = logging.getLogger("pbotvm.transport")

VSOCK_CONNECT_TIMEOUT = 1.0
SERIAL_CONNECT_TIMEOUT = 3.0
VSOCK_RETRY_AFTER = 60.0


# A result line carries JSON-escaped output (up to 6 bytes per byte for control characters).
_READ_LIMIT = 64 * 1024 * 1024


class GuestUnreachable(ConnectionError):
    """Neither vsock nor the serial port accepted a connection."""


class VsockBackoff:
    """After vsock fails for a machine, go straight to serial for a while: a host without
    vhost-vsock would otherwise pay the connect time-out on every request. Kept per machine
    by vm-server; per (CID, port), as an override may aim one machine elsewhere."""

    def __init__(self) -> None:
        self._retry_at: dict[tuple[int, int], float] = {}

    def allows(self, key: tuple[int, int]) -> bool:
        return time.monotonic() >= self._retry_at.get(key, 0.0)

    def failed(self, key: tuple[int, int]) -> None:
        self._retry_at[key] = time.monotonic() + VSOCK_RETRY_AFTER

    def worked(self, key: tuple[int, int]) -> None:
        self._retry_at.pop(key, None)


async def _open_vsock(cid: int, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    sock = socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        await asyncio.wait_for(loop.sock_connect(sock, (cid, port)), VSOCK_CONNECT_TIMEOUT)
        return await asyncio.open_connection(sock=sock, limit=_READ_LIMIT)
    except BaseException:
        sock.close()
        raise


class _QuickAckProtocol(asyncio.StreamReaderProtocol):
    """ACKs every segment at once.

    QEMU's UART sends a byte at a time. Unless the chardev has ``nodelay=on`` (libvirt's TCP
    serial devices cannot ask for it), Nagle holds each byte until the previous one is ACKed,
    and Linux delays ACKs by 40 ms: ~48 ms per reply instead of ~3. The kernel drops the
    quick-ACK mode on its own, hence set again after every read.
    """

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._sock = transport.get_extra_info("socket")

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        with contextlib.suppress(OSError):
            self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)


async def open_serial(addr: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=_READ_LIMIT, loop=loop)
    protocol = _QuickAckProtocol(reader, loop=loop)
    transport, _ = await asyncio.wait_for(
        loop.create_connection(lambda: protocol, addr, port), SERIAL_CONNECT_TIMEOUT)
    # Our requests go out whole, not held back behind an unACKed piece.
    transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return reader, asyncio.StreamWriter(transport, protocol, reader, loop)


async def connect(machine: Machine, vsock: VsockBackoff | None = None,
                  ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, str]:
    """Open a channel to the machine's guest; returns reader, writer and a description.
    ``vsock``: the machine's back-off (none: a one-off connection tries vsock first)."""
    vsock = vsock or VsockBackoff()
    key = (machine.cid, machine.vport)
    if machine.cid and vsock.allows(key):
        try:
            reader, writer = await _open_vsock(machine.cid, machine.vport)
            vsock.worked(key)
            return reader, writer, f"vsock {machine.cid}:{machine.vport}"
        except (OSError, TimeoutError) as e:
            vsock.failed(key)
            log.info("vsock %d:%d unavailable (%s); using serial port %d (retry vsock in 60 s)",
                     machine.cid, machine.vport, e, machine.serial)
    try:
        reader, writer = await open_serial(machine.addr, machine.serial)
    except (OSError, TimeoutError) as e:
        raise GuestUnreachable(f"serial {machine.addr}:{machine.serial}: {e}") from e
    return reader, writer, f"serial {machine.addr}:{machine.serial}"


async def exchange(machine: Machine, request: Request, decoder: ResultDecoder,
                   vsock: VsockBackoff | None = None) -> str:
    """Send one request and feed the reply into ``decoder`` until ``result:end`` or EOF.

    Returns the channel description (for logs). The caller bounds the time.
    """
    reader, writer, channel = await connect(machine, vsock)
    try:
        for piece in encode_request(request, machine.framing):
            writer.write(piece)
        await writer.drain()
        while not decoder.done:
            try:
                line = await reader.readuntil(b"\n")
            except asyncio.IncompleteReadError as e:
                if e.partial:
                    decoder.feed_line(e.partial)
                break
            except asyncio.LimitOverrunError:
                log.warning("reply line longer than %d bytes; reply cut there", _READ_LIMIT)
                break
            decoder.feed_line(line)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    return channel
