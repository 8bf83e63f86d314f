"""The two serial devices: requests and replies on one, the heartbeat on the other."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tty
from collections.abc import Awaitable, Callable
from functools import partial

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
            port = self._port
            assert port is not None  # open() succeeded
            try:
                # A new decoder each time: what was half-read before a reopen is dropped.
                await fdio.feed(port.fileno(), partial(self._decode, RequestDecoder()))
                log.warning("serial %s: end of file; reopening", self.path)
            except OSError as e:
                log.warning("serial %s: read error: %s; reopening", self.path, e)
            async with self._lock:
                port.close()
                self._port = None
            await asyncio.sleep(REOPEN_DELAY)

    def _decode(self, decoder: RequestDecoder, data: bytes) -> None:
        for item in decoder.feed(data):
            self._queue.put_nowait(item)

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
    """A line every 5 s, for as long as the process lives; and an answer to each line the host
    sends (upstream HEAD's health check: a status line, then ``:END``).

    Never blocks: QEMU drops output while no client is connected, and a beat the device
    cannot take now is simply skipped. A 2023 host never writes, so it only sees the beats.
    """
    fd: int | None = None
    polls: asyncio.Task[None] | None = None
    last_error = ""
    while True:
        try:
            if fd is None:
                fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
                if os.isatty(fd):
                    tty.setraw(fd)  # the host's poll must not come back as an echo
                polls = asyncio.create_task(_answer_polls(fd, path))
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
                if polls is not None:
                    polls.cancel()
                os.close(fd)
                fd = None
        await asyncio.sleep(HEARTBEAT_INTERVAL)


async def _answer_polls(fd: int, path: str) -> None:
    def answer(data: bytes) -> None:
        for _ in range(data.count(b"\n")):
            with contextlib.suppress(BlockingIOError):
                os.write(fd, health_text(_read("/proc/loadavg"), _read("/proc/meminfo")))

    try:
        await fdio.feed(fd, answer)
    except OSError as e:
        log.warning("heartbeat %s: no longer answering health checks: %s", path, e)


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def health_text(loadavg: str, meminfo: str) -> bytes:
    """What a health check gets (HEAD ran ``vmstat``; its host only logs the text and waits
    for the exact line ``:END\\r\\n``)."""
    load = " ".join(loadavg.split()[:3]) or "unknown"
    available = next((line.split()[1] for line in meminfo.splitlines()
                      if line.startswith("MemAvailable:")), None)
    memory = f"{int(available) // 1024} MiB" if available and available.isdigit() else "unknown"
    return f"guest-server alive; load {load}; memory available {memory}\r\n:END\r\n".encode()
