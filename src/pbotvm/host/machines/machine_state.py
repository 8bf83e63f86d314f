"""One guest's runtime state, in one object: whether it serves or reverts, its heartbeat,
transport choice, whether it echoes request ids, and counters; and what other processes see of
it. Which request has which guest is its machine's pool's business (``pool``).

vm-server keeps a status file per machine, ``<state dir>/machines/<name>.<serial>.json``
(``<name>.<socket>-<digest>.json`` for a serial line on a Unix socket),
written whole and renamed into place: its pid, whether it is serving a request and since
when, whether it is reverting, and its counters. vm-watchdog reads it; ``pbotvm status`` and
the metrics read more of it (``host.status_report``): the guest's last heartbeat (the file is
written at each), its last revert, the p50 and p95 of its last hour. Beside it, a lock file
is held (flock) by vm-server while the machine serves or reverts, and by vm-watchdog while it
reverts, so that neither reverts a machine the other is using: the status file says what is
going on, the lock settles the race between reading it and acting.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import time
import urllib.parse
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from pbotvm import procs
from pbotvm.config import DEFAULT_STALE_AFTER, Machine
from pbotvm.host import state_files
from pbotvm.host.machines.heartbeat import HeartbeatMonitor
from pbotvm.host.machines.latencies import Latencies
from pbotvm.host.machines.transport import TransportChoice

log = logging.getLogger("pbotvm.machine")

LOCK_POLL = 0.05  # seconds between tries while the watchdog holds the machine


@dataclass(frozen=True)
class Status:
    """The status file's content. Times are ``time.time()``; None: not serving/reverting."""

    machine: str
    pid: int  # vm-server's
    serving_since: float | None = None
    reverting_since: float | None = None
    requests: int = 0  # requests that had the machine since vm-server started
    timeouts: int = 0
    reverts: int = 0
    # What ``pbotvm status`` and the metrics show besides; vm-watchdog reads only the above.
    guest: str = ""  # the guest's serial line, which tells a machine's guests apart
    started: float = 0.0  # vm-server began to watch the guest
    free_since: float = 0.0  # the last request or revert ended, or the guest came (back)
    last_beat: float | None = None  # None: no heartbeat since vm-server started
    stale_after: float = DEFAULT_STALE_AFTER  # a heartbeat older than this: the guest is silent
    last_revert_reason: str | None = None
    last_revert_seconds: float | None = None  # from its start until the guest beat again
    p50: float | None = None  # seconds a request held the guest, over the last hour
    p95: float | None = None

    def server_running(self) -> bool:
        return procs.running(self.pid)


_FIELDS = {field.name for field in fields(Status)}


def _file_stem(machine: Machine) -> str:
    # A machine name comes from the operator's file; quoted, it can never be a path. A
    # socket's path may be longer than a file name can be: its name and a digest stand for it.
    line = str(machine.serial)
    if machine.serial_socket:
        digest = hashlib.sha256(machine.serial_socket.encode()).hexdigest()[:8]
        line = f"{urllib.parse.quote(Path(machine.serial_socket).name, safe='')}-{digest}"
    return f"{urllib.parse.quote(machine.name, safe='')}.{line}"


def status_path(state_dir: Path, machine: Machine) -> Path:
    return state_dir / "machines" / f"{_file_stem(machine)}.json"


def lock_path(state_dir: Path, machine: Machine) -> Path:
    return state_dir / "machines" / f"{_file_stem(machine)}.lock"


def read_status(path: Path) -> Status | None:
    """The status vm-server last wrote; None if there is none (or it cannot be read). Fields
    this version does not know are left out: another version may have written it."""
    try:
        data = json.loads(path.read_text())
        return Status(**{key: value for key, value in data.items() if key in _FIELDS})
    except (OSError, ValueError, TypeError, AttributeError):
        return None


def write_status(path: Path, status: Status) -> None:
    """Replace the file at once: a reader sees the old status or the new one, never half."""
    state_files.make_dir(path.parent)
    temp = path.with_name(f".{path.name}.{os.getpid()}")
    try:
        with os.fdopen(state_files.open_file(temp, os.O_WRONLY | os.O_TRUNC), "w") as file:
            file.write(json.dumps(asdict(status)) + "\n")
        os.replace(temp, path)
    except OSError:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise


class MachineLock:
    """The machine's lock file, taken without waiting. When the file cannot be opened (state
    directory not writable) there is nobody to exclude: the lock counts as taken.

    The watchdog also writes into it when its revert ended, so that vm-server, which did not
    revert, still lets the guest come back before it sends the next request."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self._warned = False

    def _open(self) -> int | None:
        if self._fd is None:
            try:
                state_files.make_dir(self.path.parent)
                self._fd = state_files.open_file(self.path, os.O_RDWR)
            except OSError as e:
                if not self._warned:
                    log.warning("cannot open the lock file %s (%s): vm-server and vm-watchdog "
                                "cannot keep out of each other's way", self.path,
                                e.strerror or e)
                    self._warned = True
        return self._fd

    def try_acquire(self) -> bool:
        fd = self._open()
        if fd is None:
            return True
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def note_revert(self) -> None:
        """A revert has just ended (written while the lock is held)."""
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, f"{time.monotonic()}\n".encode(), 0)

    def last_revert(self) -> float:
        """``time.monotonic()`` (one clock for all processes) when the last noted revert
        ended; 0 if none was."""
        fd = self._open()
        try:
            return float(os.pread(fd, 64, 0) or 0) if fd is not None else 0.0
        except (OSError, ValueError):
            return 0.0

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class MachineState:
    """vm-server's side: everything it knows about one guest, kept in its status file."""

    def __init__(self, machine: Machine, heart: HeartbeatMonitor, state_dir: Path,
                 pool: str = "") -> None:
        self.machine = machine
        self.pool = pool or machine.name  # the machine whose pool the guest is in
        self.heart = heart
        self.transport = TransportChoice(machine.name, lambda: heart.arrivals)
        self.healed_at: float | None = None  # time.monotonic() of the last revert for silence
        # Once its guest has echoed an id, a result without one is a frame someone else put
        # on the line, never an answer. Reverts do not change what the guest is.
        self.ids_echoed = False
        self.serving_since: float | None = None
        self.reverting_since: float | None = None
        self.requests = 0
        self.timeouts = 0
        self.reverts = 0
        self.started = self.free_since = time.time()
        self.last_revert_reason: str | None = None
        self.last_revert_seconds: float | None = None
        self._latencies = Latencies()
        self._held_at = 0.0  # time.monotonic(): the serving request or the revert began
        self._arrivals = heart.arrivals
        heart.listeners.append(self._beat)
        self._lock = MachineLock(lock_path(state_dir, machine))
        self._locked_out = False  # the watchdog held the machine when our wait ran out
        self._seen_revert = self._lock.last_revert()  # the watchdog's last, as we know
        self._status_path = status_path(state_dir, machine)
        self._status_failed = False
        self.snapshot: Status  # the last status written: what the metrics' thread reads
        self._write_status()

    @property
    def reverting(self) -> bool:
        """A revert runs: ours, or the watchdog's (the only other holder of the lock)."""
        return self.reverting_since is not None or self._locked_out

    async def claim(self, deadline: float) -> bool:
        """Once its pool has given this guest to a request: its lock file, by ``deadline``
        (``loop.time()``); True once the request has the guest."""
        try:
            got = await self._take_lock(deadline)
        except BaseException:  # cancelled: the guest must not stay locked
            self._lock.release()
            raise
        if not got:
            return False
        self.serving_since = time.time()
        self._held_at = time.monotonic()
        self.requests += 1
        self._write_status()
        return True

    async def _take_lock(self, deadline: float) -> bool:
        """The lock file, which the watchdog holds while it reverts; after a revert of its,
        the guest's next beat (as after our own reverts: a restarted PTY guest would miss
        what came before it)."""
        loop = asyncio.get_running_loop()
        while not self._lock.try_acquire():
            if loop.time() >= deadline:
                self._locked_out = True
                return False
            await asyncio.sleep(LOCK_POLL)
        self._locked_out = False
        reverted = self._lock.last_revert()
        if reverted > self._seen_revert:
            self._seen_revert = reverted
            await self.heart.beat_after(reverted, max(0.0, deadline - loop.time()))
        return True

    def timed_out(self) -> None:
        self.timeouts += 1

    def begin_revert(self, reason: str) -> None:
        """The serving request hands the machine over to a revert (still held)."""
        now = time.monotonic()
        self._latencies.add(now - self._held_at, now)
        self._held_at = now
        self.last_revert_reason, self.last_revert_seconds = reason, None
        self.serving_since = None
        self.reverting_since = time.time()
        self.reverts += 1
        self.transport.start_over()
        self._write_status()

    def release(self) -> None:
        """The request or the revert is over (its pool then gives the guest to the next)."""
        now = time.monotonic()
        if self.reverting_since is not None:
            self.last_revert_seconds = now - self._held_at
        elif self.serving_since is not None:
            self._latencies.add(now - self._held_at, now)
        self.free_since = time.time()
        self.serving_since = self.reverting_since = None
        self._write_status()
        self._lock.release()

    def close(self) -> None:
        self.heart.listeners.remove(self._beat)
        self._lock.close()

    def _beat(self) -> None:
        """The guest beat: the file says so (a reader tells a silent guest by the age of its
        last beat); the first beat after a silence frees the guest anew."""
        if self.heart.arrivals != self._arrivals:
            self._arrivals = self.heart.arrivals
            self.free_since = time.time()
        self._write_status()

    def status(self) -> Status:
        p50, p95 = self._latencies.percentiles(time.monotonic())
        heart = self.heart
        last_beat = time.time() - heart.silent_for() if heart.ever_beat() else None
        machine = self.machine
        return Status(self.pool, os.getpid(), self.serving_since, self.reverting_since,
                      self.requests, self.timeouts, self.reverts,
                      guest=machine.serial_socket or f"{machine.addr}:{machine.serial}",
                      started=self.started, free_since=self.free_since, last_beat=last_beat,
                      stale_after=heart.stale_after, last_revert_reason=self.last_revert_reason,
                      last_revert_seconds=self.last_revert_seconds, p50=p50, p95=p95)

    def _write_status(self) -> None:
        self.snapshot = self.status()
        try:
            write_status(self._status_path, self.snapshot)
        except OSError as e:
            # The status is for the watchdog; serving must not depend on it.
            if not self._status_failed:
                log.warning("%s: cannot write %s: %s", self.machine.name, self._status_path,
                            e.strerror or e)
                self._status_failed = True
