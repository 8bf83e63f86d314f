"""Run one command as the unprivileged user, under the original's limits, and kill
everything it started: a shell command line (``run``), or an argv with the descriptors the
caller sets up (``run_plumbed``, for compilers, C programs and gdb).

Called inside a per-request supervisor (see ``supervisor.py``): a root process that is a child
subreaper, so every orphan of the program (even one that used setsid and a double fork) is
re-parented to it and can be found and killed afterwards, while other requests' processes,
which live under other supervisors, are left alone. The supervisor has shut itself in the
request's box (``box``, ``cgroup``) already, and the program inherits it.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import pwd
import resource
import selectors
import shutil
import signal
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from pbotvm import procs
from pbotvm.guest import cgroup
from pbotvm.guest.limits import Limits

SHELL = "/bin/bash"  # the original relied on /bin/sh being bash; we ask for it by name
CPU_LIMIT = "cpu time limit"
WALL_LIMIT = "wall time limit"
MEMORY_LIMIT = "memory limit"
# Statuses of a process killed by RLIMIT_CPU (SIGKILL at the hard limit, SIGXCPU at the soft
# one), directly or as reported by a shell that waited for it.
_KILLED = 128 + signal.SIGKILL
_CPU_KILL_STATUSES = frozenset({_KILLED, 128 + signal.SIGXCPU})
CPU_SAMPLING_SLACK = 1.0  # seconds; see limit_hit
_REAP_GRACE = 2.0  # seconds to wait for SIGKILLed processes to be reaped
_FIRST_FREE_FD = 64  # above every descriptor number a program is handed
_ADDR_NO_RANDOMIZE = 0x0040000  # personality(2) flag
_QUERY_PERSONALITY = 0xFFFFFFFF
_personality = ctypes.CDLL(None, use_errno=True).personality


@dataclass(frozen=True)
class Capture:
    """The first bytes of one output stream and how many bytes it had in all."""

    data: bytes
    size: int


@dataclass(frozen=True)
class Outcome:
    stdout: Capture
    stderr: Capture
    status: int  # as a shell reports it: the exit code, or 128 + signal number
    killed: str | None  # CPU_LIMIT, MEMORY_LIMIT or WALL_LIMIT when a limit stopped it


def shell_status(wait_status: int) -> int:
    code = os.waitstatus_to_exitcode(wait_status)
    return 128 - code if code < 0 else code


def limit_hit(status: int, cpu_seconds: float, limits: Limits, timed_out: bool,
              memory_killed: bool = False) -> str | None:
    """Which limit stopped the program, if any.

    The kernel kills the process itself, so a CPU-limit kill is recognised by its status
    together with the CPU time the whole request used (the status alone could be faked with
    ``exit 137``), and a memory-limit kill by its status together with the OOM kills its
    cgroup counted meanwhile (``memory_killed``).
    """
    if timed_out:
        return WALL_LIMIT
    if memory_killed and status == _KILLED:
        return MEMORY_LIMIT
    # The kernel enforces the limit on its precise run time, rusage reports tick-sampled time:
    # a process killed at 8 s shows 7.90-7.98 s on a busy machine, 7.84 s with both cores
    # taken by other work, and failed a 0.5 s margin in a test run on a loaded machine.
    if status in _CPU_KILL_STATUSES and cpu_seconds >= limits.cpu_seconds - CPU_SAMPLING_SLACK:
        return CPU_LIMIT
    return None


def run(command: bytes, *, argv: list[str] | None = None, user: pwd.struct_passwd, cwd: Path,
        env: Mapping[str, str], stdin: bytes, limits: Limits, keep: int) -> Outcome:
    """Run ``/bin/bash -c command``, or ``argv`` directly when bash would only exec it (see
    ``plain_command``); keep at most ``keep`` bytes of each output stream."""

    def exec_program() -> None:
        if argv is not None:
            _exec_as_bash_would(argv, env)
        bash: list[str | bytes] = [SHELL, "-c", command]
        os.execve(SHELL, bash, env)

    # A file, not a pipe: a program that never reads its input cannot block us.
    with tempfile.TemporaryFile() as stdin_file:
        stdin_file.write(stdin)
        stdin_file.flush()
        stdin_file.seek(0)
        ran = _run(exec_program, user=user, cwd=cwd, limits=limits,
                   files={0: stdin_file.fileno()}, pipes=[(1,), (2,)], keep=keep)
    stdout, stderr = ran.captures
    return Outcome(stdout, stderr, ran.status, ran.killed)


@dataclass(frozen=True)
class Plumbed:
    """How a ``run_plumbed`` run ended."""

    captures: list[Capture]  # what each pipe carried, in the order asked
    status: int  # as a shell reports it: the exit code, or 128 + signal number
    signal: int | None  # the signal that ended the process, if one did
    killed: str | None  # CPU_LIMIT, MEMORY_LIMIT or WALL_LIMIT when a limit stopped it


def run_plumbed(argv: list[str], *, user: pwd.struct_passwd, cwd: Path,
                env: Mapping[str, str], limits: Limits, files: Mapping[int, int],
                pipes: Sequence[Sequence[int]], keep: int,
                or_else: list[str] | None = None, spare: int | None = None) -> Plumbed:
    """Exec ``argv`` (found on the environment's PATH), no shell, with the descriptors given:
    ``files`` maps a descriptor of the program to one of ours, and each group in ``pipes``
    shares one new pipe whose output is collected (``keep`` bytes of it). ``or_else`` is exec'd
    instead when ``argv`` cannot be: a shell line that does the same, to say why in its
    words (or to run a script without ``#!``). ``spare`` is a process started ahead for a
    later run (``start_plumbed``), which the sweep afterwards leaves alone."""
    started = start_plumbed(argv, user=user, cwd=cwd, env=env, limits=limits, files=files,
                            pipes=pipes, or_else=or_else)
    return finish_plumbed(started, limits=limits, keep=keep, spare=spare)


@dataclass(frozen=True)
class Started:
    """A process of ``start_plumbed``, not yet waited for."""

    pid: int
    pidfd: int  # names this process even once it is reaped, unlike its pid
    read_ends: list[int]  # of its pipes, in the order asked


def start_plumbed(argv: list[str], *, user: pwd.struct_passwd, cwd: Path,
                  env: Mapping[str, str], limits: Limits, files: Mapping[int, int],
                  pipes: Sequence[Sequence[int]], or_else: list[str] | None = None,
                  idle: bool = False) -> Started:
    """``run_plumbed``'s process, started; ``finish_plumbed`` collects it. An ``idle`` one
    runs only on CPU time nobody else wants (SCHED_IDLE), until ``wake`` is called."""

    def exec_program() -> None:
        path = shutil.which(argv[0], path=env.get("PATH", ""))
        if or_else is not None:
            if path is not None:
                with contextlib.suppress(OSError, ValueError):
                    os.execve(path, argv, env)
            os.execve(or_else[0], or_else, env)
        if path is None:
            os.write(2, f"{argv[0]}: command not found\n".encode())
            os._exit(127)
        os.execve(path, argv, env)

    return _start(exec_program, user=user, cwd=cwd, limits=limits, files=files, pipes=pipes,
                  idle=idle)


def wake(started: Started) -> None:
    """An ``idle`` process (each of its threads) back to the usual scheduling."""
    normal = os.sched_param(0)
    for task in os.listdir(f"/proc/{started.pid}/task"):
        with contextlib.suppress(ProcessLookupError):
            os.sched_setscheduler(int(task), os.SCHED_OTHER, normal)


def discard(started: Started) -> None:
    """Kill a started process that is not needed after all, and what it started (gdb runs
    ``iconv -l`` as it starts), and reap them: call it between runs."""
    with contextlib.suppress(ProcessLookupError):
        signal.pidfd_send_signal(started.pidfd, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(started.pid, 0)
    _sweep(None)
    for fd in (started.pidfd, *started.read_ends):
        os.close(fd)


def finish_plumbed(started: Started, *, limits: Limits, keep: int,
                   spare: int | None = None) -> Plumbed:
    """Collect a started process: its pipes until they close and its exit, within the wall
    limit (counted from now); then kill and reap what it left, but ``spare``."""
    memory_kills = cgroup.memory_kills()
    try:
        wait_status, captures = _collect(started, limits.wall_seconds, keep)
    finally:
        _sweep(spare)
        for fd in (started.pidfd, *started.read_ends):
            os.close(fd)
    timed_out = wait_status is None
    status = 128 + signal.SIGKILL if wait_status is None else shell_status(wait_status)
    ended_by = (os.WTERMSIG(wait_status)
                if wait_status is not None and os.WIFSIGNALED(wait_status) else None)
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    memory_killed = status == _KILLED and cgroup.memory_kills() > memory_kills
    killed = limit_hit(status, usage.ru_utime + usage.ru_stime, limits, timed_out,
                       memory_killed)
    return Plumbed(captures, status, ended_by, killed)


def _run(exec_program: Callable[[], None], *, user: pwd.struct_passwd, cwd: Path,
         limits: Limits, files: Mapping[int, int], pipes: Sequence[Sequence[int]],
         keep: int) -> Plumbed:
    started = _start(exec_program, user=user, cwd=cwd, limits=limits, files=files,
                     pipes=pipes)
    return finish_plumbed(started, limits=limits, keep=keep)


def _start(exec_program: Callable[[], None], *, user: pwd.struct_passwd, cwd: Path,
           limits: Limits, files: Mapping[int, int], pipes: Sequence[Sequence[int]],
           idle: bool = False) -> Started:
    procs.become_subreaper()
    ends = [os.pipe() for _ in pipes]
    fds = dict(files)
    for group, (_, write_end) in zip(pipes, ends, strict=True):
        fds.update(dict.fromkeys(group, write_end))
    pid = os.fork()
    if pid == 0:
        _exec_as_user(exec_program, user, cwd, limits, fds, idle)
    for _, write_end in ends:
        os.close(write_end)
    return Started(pid, os.pidfd_open(pid), [read_end for read_end, _ in ends])


def _exec_as_bash_would(argv: list[str], env: Mapping[str, str]) -> None:
    """Exec ``argv`` as ``bash -c`` execs a lone command: found on PATH (as the user), with
    the variables bash adds. Returns when it cannot, for bash to report it in its words."""
    path = shutil.which(argv[0], path=env.get("PATH", ""))
    if path is None:
        return
    # bash counts itself in SHLVL, then uncounts the exec; `_` is the path it ran.
    bash_adds = {"PWD": os.getcwd(), "SHLVL": "0", "_": path}
    # A script without #!, or text exec cannot carry (a lone surrogate): bash deals with it.
    with contextlib.suppress(OSError, ValueError):
        os.execve(path, argv, {**env, **bash_adds})


def _exec_as_user(exec_program: Callable[[], None], user: pwd.struct_passwd, cwd: Path,
                  limits: Limits, fds: Mapping[int, int], idle: bool) -> NoReturn:
    """In the forked child: drop to the user, apply the limits, exec. Never returns."""
    try:
        # Out of the way first, so that no target number overwrites a source still needed.
        moved = {target: fcntl.fcntl(source, fcntl.F_DUPFD_CLOEXEC, _FIRST_FREE_FD)
                 for target, source in fds.items()}
        for target, source in moved.items():
            os.dup2(source, target)
        os.chdir(cwd)
        if idle:
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        cgroup.unprotect()
        os.setgroups([user.pw_gid])
        os.setgid(user.pw_gid)
        os.setuid(user.pw_uid)
        for which, value in ((resource.RLIMIT_FSIZE, limits.file_bytes),
                             (resource.RLIMIT_CPU, limits.cpu_seconds),
                             (resource.RLIMIT_NPROC, limits.processes)):
            resource.setrlimit(which, (value, value))
        # Python ignores these; the program should see the defaults, as under a shell.
        for sig in (signal.SIGPIPE, signal.SIGXFSZ):
            signal.signal(sig, signal.SIG_DFL)
        # Fixed addresses, as gdb gives the programs it runs: a C program run directly prints
        # the addresses it would under gdb. Under TCG it also halves a compile (gcc hello
        # 0.85 -> 0.42 s, gdb's start 1.25 -> 0.71 s, measured in the guest), presumably
        # because code at the address it had last time is found translated. The kernel turns
        # the flag off again for a set-user-ID program.
        _personality(_personality(_QUERY_PERSONALITY) | _ADDR_NO_RANDOMIZE)
        exec_program()
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.write(2, f"guest: cannot run the program: {e}\n".encode())
    finally:
        os._exit(127)


def _collect(started: Started, wall: float, keep: int) -> tuple[int | None, list[Capture]]:
    """Read the pipes until they close and the process has exited, or the wall limit.

    Returns the wait status (None on time-out) and the captures. Output of background jobs
    counts until they close the pipes, as with the original.
    """
    deadline = time.monotonic() + wall
    pidfd, fds = started.pidfd, started.read_ends
    kept = {fd: bytearray() for fd in fds}
    sizes = dict.fromkeys(fds, 0)
    wait_status: int | None = None
    with selectors.DefaultSelector() as selector:
        for fd in (pidfd, *fds):
            selector.register(fd, selectors.EVENT_READ)
        while selector.get_map():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            for key, _ in selector.select(remaining):
                if key.fd == pidfd:
                    selector.unregister(pidfd)
                    wait_status = os.waitpid(started.pid, 0)[1]
                    continue
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    selector.unregister(key.fd)
                    continue
                sizes[key.fd] += len(chunk)
                buffer = kept[key.fd]
                buffer += chunk[: max(keep - len(buffer), 0)]
        timed_out = bool(selector.get_map())
    if timed_out:
        wait_status = None
    return wait_status, [Capture(bytes(kept[fd]), sizes[fd]) for fd in fds]


def _sweep(spare: int | None) -> None:
    """Kill and reap every process below us but ``spare`` (and what is below it)."""
    if _children_left(spare):
        procs.kill_descendants(spare=spare)
        _reap_all(spare)


def _children_left(spare: int | None) -> bool:
    """Reap the children that have exited; True while any process is still there, but
    ``spare`` (and what is below it).

    False means nothing of the program is left: as a subreaper we adopt every orphan below
    us, so with no child we have no descendant. The usual run thus skips the scan of all
    of /proc that killing needs (1-2 ms); with a spare, the scan tells (in a box, its /proc
    holds the request's processes alone).
    """
    try:
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass
    except ChildProcessError:
        return False
    return spare is None or bool(procs.descendants(os.getpid(), spare))


def _reap_all(spare: int | None) -> None:
    """Reap every child but ``spare``, so the rusage of the whole request is counted."""
    deadline = time.monotonic() + _REAP_GRACE
    while time.monotonic() < deadline:
        try:
            if os.waitpid(-1, os.WNOHANG)[0] == 0:
                if spare is not None and not procs.descendants(os.getpid(), spare):
                    return
                time.sleep(0.01)
        except ChildProcessError:
            return
