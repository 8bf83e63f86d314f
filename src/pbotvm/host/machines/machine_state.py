"""One guest's runtime state, in one object: whether it serves or reverts, its heartbeat,
transport choice, whether it echoes request ids, and counters; and what other processes see of
it. Which request has which guest is its machine's pool's business (``pool``).

vm-server keeps a status file per machine, ``<state dir>/machines/<name>.<serial>.json``
(``<name>.<socket>-<digest>.json`` for a serial line on a Unix socket),
written whole and renamed into place: its pid, whether it is serving a request and since
when, whether it is reverting, and its counters. vm-watchdog reads it. Beside it, a lock file
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
from dataclasses import asdict, dataclass
from pathlib import Path

from pbotvm import procs
from pbotvm.config import Machine
from pbotvm.host import state_files
from pbotvm.host.machines.heartbeat import HeartbeatMonitor
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

    def server_running(self) -> bool:
        return procs.running(self.pid)


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
    """The status vm-server last wrote; None if there is none (or it cannot be read)."""
    try:
        return Status(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
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

    def __init__(self, machine: Machine, heart: HeartbeatMonitor, state_dir: Path) -> None:
        self.machine = machine
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
        self._lock = MachineLock(lock_path(state_dir, machine))
        self._locked_out = False  # the watchdog held the machine when our wait ran out
        self._seen_revert = self._lock.last_revert()  # the watchdog's last, as we know
        self._status_path = status_path(state_dir, machine)
        self._status_failed = False
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

    def begin_revert(self) -> None:
        """The serving request hands the machine over to a revert (still held)."""
        self.serving_since = None
        self.reverting_since = time.time()
        self.reverts += 1
        self.transport.start_over()
        self._write_status()

    def release(self) -> None:
        """The request or the revert is over (its pool then gives the guest to the next)."""
        self.serving_since = self.reverting_since = None
        self._write_status()
        self._lock.release()

    def close(self) -> None:
        self._lock.close()

    def status(self) -> Status:
        return Status(self.machine.name, os.getpid(), self.serving_since, self.reverting_since,
                      self.requests, self.timeouts, self.reverts)

    def _write_status(self) -> None:
        try:
            write_status(self._status_path, self.status())
        except OSError as e:
            # The status is for the watchdog; serving must not depend on it.
            if not self._status_failed:
                log.warning("%s: cannot write %s: %s", self.machine.name, self._status_path,
                            e.strerror or e)
                self._status_failed = True
