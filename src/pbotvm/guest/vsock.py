"""AF_VSOCK listener: one request per connection, answered and closed; connections run
concurrently (each request has its own supervisor). Only the host may connect: a process of
the guest that reached the port over vsock loopback would send requests outside the host's
time-outs and turns (and the box's system call filter gives programs no vsock sockets)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket

from pbotvm.guest import fdio
from pbotvm.guest.serial_line import Answer
from pbotvm.protocol import ProtocolError, Request, RequestDecoder, encode_result

log = logging.getLogger("pbotvm.guest")

IDLE_TIMEOUT = 60.0  # to send a whole request, or to take the reply; then it is dropped


def listen(port: int) -> socket.socket | None:
    """A listening vsock socket, or None (logged) when the kernel or hypervisor has none."""
    family = getattr(socket, "AF_VSOCK", None)
    if family is None:
        log.warning("vsock: not supported by this Python; serial line only")
        return None
    try:
        sock = socket.socket(family, socket.SOCK_STREAM)
    except OSError as e:
        log.warning("vsock: unavailable (%s); serial line only", e.strerror or e)
        return None
    try:
        sock.bind((socket.VMADDR_CID_ANY, port))
        sock.listen()
    except OSError as e:
        sock.close()
        log.warning("vsock: cannot listen on port %d (%s); serial line only", port,
                    e.strerror or e)
        return None
    sock.setblocking(False)
    log.info("vsock: listening on port %d", port)
    return sock


async def serve(sock: socket.socket, answer: Answer) -> None:
    loop = asyncio.get_running_loop()
    connections: set[asyncio.Task[None]] = set()  # strong references while they run
    while True:
        try:
            conn, peer = await loop.sock_accept(sock)
        except OSError as e:
            log.error("vsock: accept failed: %s", e)
            await asyncio.sleep(1)
            continue
        if not from_host(peer):
            log.warning("vsock %s:%s: refused: only the host (CID %d) may send requests",
                        peer[0], peer[1], socket.VMADDR_CID_HOST)
            conn.close()
            continue
        task = asyncio.create_task(handle(conn, answer, f"vsock {peer[0]}:{peer[1]}"))
        connections.add(task)
        task.add_done_callback(connections.discard)


def from_host(peer: tuple[int, int]) -> bool:
    """Whether an accepted peer (CID, port) is the host, as the guest sees it."""
    return peer[0] == socket.VMADDR_CID_HOST


async def handle(conn: socket.socket, answer: Answer, via: str) -> None:
    loop = asyncio.get_running_loop()
    decoder = RequestDecoder()
    with conn:
        conn.setblocking(False)
        try:
            items: list[Request | ProtocolError] = []
            while not items:
                data = await asyncio.wait_for(loop.sock_recv(conn, 65536), IDLE_TIMEOUT)
                if not data:
                    log.info("%s: closed before a whole request", via)
                    return
                items = decoder.feed(data)
            result = await answer(items[0], via)
            # Written at once, without a turn of the loop: the server forks the next
            # supervisor as soon as this task yields.
            await fdio.write_all(conn.fileno(), encode_result(result), IDLE_TIMEOUT)
        except (OSError, TimeoutError) as e:
            log.warning("%s: %s", via, e or "idle time-out")
        with contextlib.suppress(OSError):
            conn.shutdown(socket.SHUT_WR)
