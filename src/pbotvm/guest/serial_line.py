"""The two serial devices: requests and replies on one, the heartbeat on the other."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable

import serial

from pbotvm.guest import fdio
from pbotvm.protocol import ProtocolError, Request, RequestDecoder, Result, encode_result

log = logging.getLogger("pbotvm.guest")

BAUD = 115200
HEARTBEAT_INTERVAL = 5.0
REOPEN_DELAY = 1.0
REPLY_STALL = 30.0  # a reader that takes nothing for this long gets no reply

Answer = Callable[[Request | ProtocolError, str], Awaitable[Result]]


class SerialLine:
    """Requests are read as they arrive and answered strictly one after another, in order."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._port: serial.Serial | None = None
        self._queue: asyncio.Queue[Request | ProtocolError] = asyncio.Queue()
        self._lock = asyncio.Lock()  # a reply being written keeps the port from closing
        self._open_error = ""

    def open(self) -> bool:
        """Open raw (no echo, no line editing, no output translation) and drop stale input."""
        try:
            port = serial.Serial(self.path, BAUD)
            port.reset_input_buffer()
        except (OSError, serial.SerialException) as e:
            if str(e) != self._open_error:  # retried every second: log each new problem once
                log.error("serial %s: cannot open: %s", self.path, e)
                self._open_error = str(e)
            return False
        os.set_blocking(port.fileno(), False)
        self._port = port
        self._open_error = ""
        log.info("serial %s: open", self.path)
        return True

    async def run(self, answer: Answer) -> None:
        await asyncio.gather(self._read(), self._reply(answer))

    async def _read(self) -> None:
        while True:
            if self._port is None and not self.open():
                await asyncio.sleep(REOPEN_DELAY)
                continue
            decoder = RequestDecoder()
            try:
                while data := await fdio.read_some(self._port.fileno()):
                    for item in decoder.feed(data):
                        self._queue.put_nowait(item)
                log.warning("serial %s: end of file; reopening", self.path)
            except OSError as e:
                log.warning("serial %s: read error: %s; reopening", self.path, e)
            async with self._lock:
                self._port.close()
                self._port = None
            await asyncio.sleep(REOPEN_DELAY)

    async def _reply(self, answer: Answer) -> None:
        while True:
            result = await answer(await self._queue.get(), "serial")
            async with self._lock:
                if self._port is None:
                    log.error("serial %s: closed; reply to %s dropped", self.path, result.id)
                    continue
                try:
                    await fdio.write_all(self._port.fileno(), encode_result(result),
                                         REPLY_STALL)
                except (OSError, TimeoutError) as e:
                    log.error("serial %s: reply to %s dropped: %s", self.path, result.id,
                              e or "nobody reads")


async def heartbeat(path: str) -> None:
    """A line every 5 s, for as long as the process lives.

    Never blocks: QEMU drops output while no client is connected, and a beat the device
    cannot take now is simply skipped.
    """
    fd: int | None = None
    last_error = ""
    while True:
        try:
            if fd is None:
                fd = os.open(path, os.O_WRONLY | os.O_NOCTTY | os.O_NONBLOCK)
                log.info("heartbeat %s: open", path)
            os.write(fd, b"\n")
            last_error = ""
        except BlockingIOError:
            pass
        except OSError as e:
            if str(e) != last_error:  # one line per new problem, not one per beat
                log.error("heartbeat %s: %s", path, e)
                last_error = str(e)
            if fd is not None:
                os.close(fd)
                fd = None
        await asyncio.sleep(HEARTBEAT_INTERVAL)
