"""Non-blocking file descriptors on the asyncio loop, without threads (the server forks)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable


async def wait_readable(fd: int) -> None:
    await _wait(fd, writable=False)


async def wait_writable(fd: int) -> None:
    await _wait(fd, writable=True)


async def _wait(fd: int, *, writable: bool) -> None:
    loop = asyncio.get_running_loop()
    ready = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    if writable:
        loop.add_writer(fd, wake)
    else:
        loop.add_reader(fd, wake)
    try:
        await ready
    finally:
        if writable:
            loop.remove_writer(fd)
        else:
            loop.remove_reader(fd)


async def feed(fd: int, consume: Callable[[bytes], None]) -> None:
    """Hand every chunk read from ``fd`` to ``consume`` until end of file.

    One reader registration for the whole stream, not one per read: under TCG every syscall
    and task wake-up costs the guest tens of microseconds.
    """
    loop = asyncio.get_running_loop()
    ended: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        except OSError as e:
            stop(e)
            return
        if data:
            consume(data)
        else:
            # A raw tty (VMIN=0, as pyserial sets it) reads 0 bytes, not EAGAIN, when empty;
            # but only a hang-up makes it ready with nothing to read.
            stop(None)

    def stop(error: OSError | None) -> None:
        loop.remove_reader(fd)
        if ended.done():
            return
        if error is None:
            ended.set_result(None)
        else:
            ended.set_exception(error)

    loop.add_reader(fd, readable)
    try:
        await ended
    finally:
        loop.remove_reader(fd)


async def read_to_end(fd: int) -> bytes:
    os.set_blocking(fd, False)
    chunks: list[bytes] = []
    await feed(fd, chunks.append)
    return b"".join(chunks)


async def write_all(fd: int, data: bytes, stall_timeout: float) -> None:
    """Write everything; TimeoutError if the reader takes nothing for ``stall_timeout`` s."""
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view):]
        except BlockingIOError:
            await asyncio.wait_for(wait_writable(fd), stall_timeout)
