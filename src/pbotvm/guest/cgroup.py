"""Each request's cgroup (v2): one memory limit without swap, one process limit and one CPU
share for all of the request's processes together, and one write that kills them all.

guest-server finds out once, at start-up, where it may make cgroups (``prepare``), and says in
one log line when it cannot: requests then have no memory limit, and the supervisor's
subreaper sweep alone finds what they leave behind. Each supervisor makes its request's cgroup
and moves itself in before its request comes (``enter``): a move waits for an RCU grace period
(~10 ms on a busy host), which must not be on a request's path, and every process the request
starts is then born inside. The supervisor is spared by the group's OOM kill; once it has
exited, the server kills whatever is left and removes the cgroup (``remove``).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import logging
import os
import re
from pathlib import Path

from pbotvm.guest.limits import MIB, BoxLimits, Limits

log = logging.getLogger("pbotvm.guest")

CONTROLLERS = ("cpu", "memory", "pids")
BASE = "pbotvm"  # made under the root cgroup, whose own limits cannot be set
SERVER_LEAF = "guest-server"  # the server's own place, so that its cgroup may have children
REQUEST_PREFIX = "request-"
PROTECTED = -1000  # oom_score_adj that keeps a process out of the OOM killer's reach
REMOVE_TRIES = 100  # times 50 ms
_MOUNTINFO_ESCAPE = re.compile(r"\\([0-7]{3})")


class Unavailable(Exception):
    """Why requests cannot have cgroups here."""


def mount_point(mountinfo: str) -> Path | None:
    """Where the cgroup v2 hierarchy is mounted, from the text of /proc/self/mountinfo."""
    for line in mountinfo.splitlines():
        fields, _, tail = line.partition(" - ")
        if tail.split(" ", 1)[0] == "cgroup2":
            return Path(_MOUNTINFO_ESCAPE.sub(lambda m: chr(int(m[1], 8)), fields.split()[4]))
    return None


def own_path(proc_cgroup: str) -> str | None:
    """The process's cgroup v2 path, from the text of /proc/PID/cgroup."""
    for line in proc_cgroup.splitlines():
        if line.startswith("0::"):
            return line[3:]
    return None


def missing_controllers(controllers: str) -> list[str]:
    available = set(controllers.split())
    return [name for name in CONTROLLERS if name not in available]


def limit_files(limits: Limits, box: BoxLimits) -> dict[str, str]:
    """What a request's cgroup files are set to."""
    return {
        "memory.max": str(box.memory_bytes),
        "memory.swap.max": "0",
        # At the limit, the whole request goes (as at the CPU limit), not one process of it.
        "memory.oom.group": "1",
        "pids.max": str(limits.processes + 1),  # and the supervisor
        "cpu.weight": str(box.cpu_weight),
    }


def oom_kills(memory_events: str) -> int:
    """The ``oom_kill`` count of a memory.events file."""
    for line in memory_events.splitlines():
        name, _, value = line.partition(" ")
        if name == "oom_kill":
            return int(value)
    return 0


def prepare(limits: Limits, box: BoxLimits) -> Path | None:
    """The cgroup under which requests get theirs, ready to hand them the controllers; None
    when there is none (said in one log line)."""
    try:
        root = _mount_point()
        own = own_path(_read(Path("/proc/self/cgroup")))
        if root is None or own is None:
            raise Unavailable("no cgroup v2 hierarchy is mounted")
        base = make_base(root, own)
    except (Unavailable, OSError) as e:
        log.warning("cgroups: unavailable (%s): requests get no memory limit, and the "
                    "supervisor's sweep alone finds what they leave behind", e)
        return None
    log.info("cgroups: each request in one under %s (memory %d MiB, %d processes, "
             "cpu.weight %d)", base, box.memory_bytes // MIB, limits.processes, box.cpu_weight)
    return base


def make_base(root: Path, own: str) -> Path:
    """Under the hierarchy mounted at ``root``, for this process in cgroup ``own``: the
    cgroup to make request cgroups in, its controllers handed down. This process moves to a
    leaf of its cgroup when that is not the root (a cgroup that hands controllers down may
    hold no process)."""
    here = root / own.lstrip("/")
    lacking = missing_controllers(_read(here / "cgroup.controllers"))
    if lacking:
        raise Unavailable(f"{here} offers no {', '.join(lacking)} controller")
    if own == "/":
        # The root may hand controllers down while it holds processes; no other cgroup may.
        _enable_controllers(here)
        base = here / BASE
        base.mkdir(exist_ok=True)
    else:
        others = [pid for pid in _read(here / "cgroup.procs").split() if int(pid) != os.getpid()]
        if others:
            raise Unavailable(f"{here} holds other processes too; give guest-server a cgroup "
                              "of its own (systemd: Delegate=yes)")
        leaf = here / SERVER_LEAF
        leaf.mkdir(exist_ok=True)
        _write(leaf / "cgroup.procs", str(os.getpid()))
        base = here
    _enable_controllers(base)
    if not (base / "cgroup.kill").exists():
        raise Unavailable("the kernel has no cgroup.kill (Linux 5.14 or later has)")
    for stale in base.glob(f"{REQUEST_PREFIX}*"):
        # Left by a supervisor of an earlier guest-server; one still running keeps its own.
        with contextlib.suppress(OSError):
            stale.rmdir()
    return base


def enter(base: Path, pid: int, limits: Limits, box: BoxLimits) -> None:
    """Make the request cgroup of this supervisor, ``pid`` to the server, and move in, spared
    by the group's OOM kill (the processes it starts are not: see ``unprotect``)."""
    path = base / f"{REQUEST_PREFIX}{pid}"
    path.mkdir()
    for name, value in limit_files(limits, box).items():
        try:
            _write(path / name, value)
        except FileNotFoundError:
            if name != "memory.swap.max":  # absent without swap accounting: no swap to limit
                raise
    _write(Path("/proc/self/oom_score_adj"), str(PROTECTED))
    _write(path / "cgroup.procs", "0")


def unprotect() -> None:
    """In a child of the supervisor, before it execs: back to the default OOM score, so that
    the group's OOM kill takes it (a protected process alone at the limit would wait for
    ever for memory)."""
    _write(Path("/proc/self/oom_score_adj"), "0")


async def remove(base: Path, pid: int) -> None:
    """Kill what is left in the cgroup of supervisor ``pid`` (which has exited) and remove
    it; nothing to do outside cgroups or when it is gone already."""
    path = base / f"{REQUEST_PREFIX}{pid}"
    try:
        for _ in range(REMOVE_TRIES):
            try:
                path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError as e:
                if e.errno != errno.EBUSY:
                    raise
            _write(path / "cgroup.kill", "1")
            await asyncio.sleep(0.05)
        log.error("cgroups: %s still holds processes after 5 s", path)
    except OSError as e:
        log.error("cgroups: cannot remove %s: %s", path, e)


def memory_kills() -> int:
    """How many processes the OOM killer has taken from this process's cgroup (the request's,
    in a supervisor); 0 outside a cgroup with a memory controller."""
    root = _mount_point()
    own = own_path(_read(Path("/proc/self/cgroup")))
    if root is None or own is None:
        return 0
    try:
        return oom_kills(_read(root / own.lstrip("/") / "memory.events"))
    except OSError:
        return 0


@functools.cache
def _mount_point() -> Path | None:
    return mount_point(_read(Path("/proc/self/mountinfo")))


def _enable_controllers(path: Path) -> None:
    _write(path / "cgroup.subtree_control", " ".join(f"+{name}" for name in CONTROLLERS))


def _read(path: Path) -> str:
    with open(path) as f:
        return f.read()


def _write(path: Path, text: str) -> None:
    # Never O_CREAT: a file the kernel does not offer must fail, not be attempted.
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)
