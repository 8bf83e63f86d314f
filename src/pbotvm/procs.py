"""Process-tree control without cgroups: a subreaper adopts every orphan below it, so
everything a job started (even via setsid and double fork) can be found and killed."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36


def _prctl(option: int, value: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(option, value, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def become_subreaper(enable: bool = True) -> None:
    _prctl(PR_SET_CHILD_SUBREAPER, int(enable))


def die_with_parent(sig: int = signal.SIGKILL) -> None:
    """For preexec_fn: send this child ``sig`` when the process that started it dies."""
    _prctl(PR_SET_PDEATHSIG, sig)


def _stat(pid: int | str) -> list[bytes]:
    """The fields of /proc/PID/stat after the command name (state, ppid, ...); [] if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return []
    # The command name may contain spaces and parentheses: split after the last ')'.
    return stat[stat.rfind(b")") + 2 :].split()


def running(pid: int) -> bool:
    """Whether the process exists and is not a zombie (exited, waiting to be reaped)."""
    fields = _stat(pid)
    return bool(fields) and fields[0] != b"Z"


def stat_table() -> dict[int, list[bytes]]:
    """pid -> the /proc/PID/stat fields after the command name, of every process (zombies
    too: field 0 is the state, 1 the ppid)."""
    table = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (fields := _stat(entry)):
            table[int(entry)] = fields
    return table


_TIMES = slice(11, 15)  # utime, stime, cutime, cstime among the fields after the command name


def tree_cpu_ticks(table: dict[int, list[bytes]], root: int) -> int | None:
    """Clock ticks used by ``root`` and every process below it, with the children they have
    reaped (so a process that ends moves its time to its parent instead of losing it);
    None if ``root`` does not exist."""
    if root not in table:
        return None
    children: dict[int, list[int]] = {}
    for pid, fields in table.items():
        children.setdefault(int(fields[1]), []).append(pid)
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += sum(int(value) for value in table[pid][_TIMES])
        todo.extend(children.get(pid, []))
    return total


def _parents() -> dict[int, int]:
    """pid -> ppid of every live (non-zombie) process."""
    return {pid: int(fields[1]) for pid, fields in stat_table().items() if fields[0] != b"Z"}


def descendants(root: int, spare: int | None = None) -> list[int]:
    """Every live process below ``root``, but ``spare`` and the processes below it."""
    parents = _parents()
    children: dict[int, list[int]] = {}
    for pid, ppid in parents.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = [], list(children.get(root, []))
    while todo:
        pid = todo.pop()
        if pid == spare:
            continue
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def terminate(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """SIGTERM a child we started, SIGKILL it if it is still there after ``grace`` s; reaped."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def reap() -> None:
    """Collect every exited child so none stays a zombie."""
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass


def kill_descendants(root: int | None = None, spare: int | None = None) -> int:
    """SIGKILL every process below ``root`` (default: this process) until none is left, but
    ``spare`` and the processes below it.

    Stopping them first keeps a fork loop from outrunning the kills. Returns how many were
    killed. Only a subreaper sees the orphans of its descendants.
    """
    root = os.getpid() if root is None else root
    killed: set[int] = set()
    for _ in range(100):
        pids = [p for p in descendants(root, spare) if p not in killed]
        if not pids:
            break
        for sig in (signal.SIGSTOP, signal.SIGKILL):
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
        killed.update(pids)
        if root == os.getpid():
            reap()
    return len(killed)
