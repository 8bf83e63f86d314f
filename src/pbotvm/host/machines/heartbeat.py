"""Watches a guest's heartbeat line (a TCP port, QEMU's Unix socket, or a remote guest's
libvirt stream): connects, reconnects for ever, records each beat.

The guest writes a line every 5 s (upstream HEAD's guest instead answers each line we send
with a status text and ``:END``: for such machines we send one every 5 s). A guest counts as
alive while the last beat is younger than ``stale_after``; the original used 5 s, which flagged
live guests (0-6 s to notice, and false alarms under load), so the default allows two missed
beats.

On each connection we ask once at once: our guest answers a poll whatever the framing, so a
healthy guest is known to be up within milliseconds of vm-server's start, not after up to
5 s of "resetting". A 2023 guest that reads nothing ignores the line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from pbotvm.config import DEFAULT_STALE_AFTER, Machine
from pbotvm.host.machines.transport import heart_name, open_heart
from pbotvm.protocol import Framing

log = logging.getLogger("pbotvm.heartbeat")

RETRY_DELAY = 2.0
BEAT_INTERVAL = 5.0


class HeartbeatMonitor:
    def __init__(self, machine: Machine, stale_after: float = DEFAULT_STALE_AFTER) -> None:
        self.machine = machine  # its heartbeat line: where it is (``transport.open_heart``)
        self.name = machine.name
        self.poll = machine.framing is Framing.HEAD
        self.stale_after = stale_after
        self.last_beat = 0.0  # time.monotonic() of the last beat; 0 = never
        # The line closed since the last beat: QEMU or the PTY VM is gone (a guest that
        # restarts keeps the line open), so the guest counts as down until it beats again.
        self._closed = False
        # Times the guest came (back): the first beat on a connection, or after a silence.
        # What was found out about a guest (its transport) holds until this changes.
        self.arrivals = 0
        self._fresh_connection = False
        # Called on each beat (a machine's state rewrites its status file: the guest lives).
        self.listeners: list[Callable[[], None]] = []
        self.started = time.monotonic()
        self._beat = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"heartbeat-{self.name}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    @property
    def where(self) -> str:
        return heart_name(self.machine)

    def alive(self) -> bool:
        return (self.last_beat > 0 and not self._closed
                and time.monotonic() - self.last_beat <= self.stale_after)

    def lost(self) -> None:
        """The guest could not be reached: down until it beats again."""
        self._closed = True

    def ever_beat(self) -> bool:
        return self.last_beat > 0

    def listening_for(self) -> float:
        return time.monotonic() - self.started

    def silent_for(self) -> float:
        """Seconds since the last beat (or since we started listening, if none came yet)."""
        return time.monotonic() - (self.last_beat or self.started)

    async def beat_after(self, since: float, timeout: float) -> bool:
        """Wait until a beat newer than ``since`` (monotonic) arrives; False on time-out."""
        async with self._beat:
            try:
                await asyncio.wait_for(
                    self._beat.wait_for(lambda: self.last_beat > since), timeout)
            except TimeoutError:
                return False
        return True

    async def _poll(self, writer: asyncio.StreamWriter) -> None:
        """Upstream HEAD's guests answer a line instead of beating on their own."""
        with contextlib.suppress(OSError):
            while True:
                writer.write(b"\n")
                await writer.drain()
                await asyncio.sleep(BEAT_INTERVAL)

    async def _record(self) -> None:
        if self._fresh_connection or not self.alive():
            self.arrivals += 1
            self._fresh_connection = False
        self.last_beat = time.monotonic()
        self._closed = False
        for listener in self.listeners:
            listener()
        async with self._beat:
            self._beat.notify_all()

    async def _run(self) -> None:
        failures = 0
        while True:
            try:
                reader, writer = await open_heart(self.machine)
            except OSError as e:
                # One line when the guest goes away, then one a minute: not one per retry.
                if failures % 30 == 0:
                    log.info("%s: heartbeat %s unreachable (%s); retrying every %.0f s",
                             self.name, self.where, e.strerror or e, RETRY_DELAY)
                failures += 1
                await asyncio.sleep(RETRY_DELAY)
                continue
            log.info("%s: connected to heartbeat %s", self.name, self.where)
            failures = 0
            self._fresh_connection = True
            if self.poll:
                polls: asyncio.Task[None] | None = asyncio.create_task(self._poll(writer))
            else:
                polls = None
                writer.write(b"\n")  # one poll, answered long before the next beat
            try:
                while line := await reader.readline():
                    # A polled guest's answer ends with ":END"; its other lines (and a tty's
                    # echo of our poll) prove nothing.
                    if not self.poll or line.strip() == b":END":
                        await self._record()
            except (OSError, ValueError) as e:  # ValueError: an over-long line
                log.info("%s: heartbeat connection lost: %s", self.name, e)
            finally:
                if polls is not None:
                    polls.cancel()
                writer.close()
                self._closed = True
            log.info("%s: heartbeat connection closed; reconnecting", self.name)
            await asyncio.sleep(RETRY_DELAY)
