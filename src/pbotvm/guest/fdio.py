"""Non-blocking file descriptors on the asyncio loop, without threads (the server forks)."""

from __future__ import annotations

import asyncio
import os


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


async def read_some(fd: int, size: int = 65536) -> bytes:
    """The next bytes available on ``fd``; b"" at end of file.

    Waits for readiness first: a raw tty (VMIN=0, as pyserial sets it) reads 0 bytes, not
    EAGAIN, when it has nothing, and only a hang-up makes it ready with nothing to read.
    """
    while True:
        await wait_readable(fd)
        try:
            return os.read(fd, size)
        except BlockingIOError:
            continue


async def read_to_end(fd: int) -> bytes:
    os.set_blocking(fd, False)
    chunks = []
    while chunk := await read_some(fd):
        chunks.append(chunk)
    return b"".join(chunks)


async def write_all(fd: int, data: bytes, stall_timeout: float) -> None:
    """Write everything; TimeoutError if the reader takes nothing for ``stall_timeout`` s."""
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view):]
        except BlockingIOError:
            await asyncio.wait_for(wait_writable(fd), stall_timeout)
