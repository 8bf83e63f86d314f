"""One root supervisor process per request, forked from the (single-threaded) server.

The supervisor shuts itself in the request's box: a session of its own (so no controlling
terminal, whichever guest-server has), the request's cgroup (``cgroup``) and its namespaces
(``box``; the server forks it into its PID namespace, whose first process it is). It becomes
a child subreaper, runs the request (``runner.run_request``), kills every process the request
left behind, and sends the result back through a pipe. The user cannot signal it (it is
root), and the server's event loop never blocks on a request. Once the supervisor has exited,
the server removes its cgroup with anything still in it.

The server keeps one supervisor forked ahead of time (``Supervisors.prepare``, called once
a reply is out): under TCG, forking the server and shedding what the fork copied takes
25-40 ms, a fifth of a short request, and a spare that waits for its request takes that
off the request's path, and so does the box, which a spare makes while it waits. A spare
that has waited a moment starts gdb too, for a C request that needs it (``gdb_ahead``).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import pickle
import pwd
import select
import signal
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from pbotvm.guest import box, cgroup, fdio, runner
from pbotvm.guest.cfamily import gdb_ahead
from pbotvm.guest.cfamily import run as c_family
from pbotvm.protocol import Request, Result

log = logging.getLogger("pbotvm.guest")

HANDOVER_STALL = 30.0  # seconds a supervisor may take nothing of its request
# Seconds a spare waits for its request before it starts gdb for it (``gdb_ahead``). Requests
# that come back to back then never pay for a gdb they could not use in time (starting it and
# killing it again); whether its idle start slows them under TCG was lost in the drift of
# this machine's speed.
GDB_AHEAD_AFTER = 0.5


@dataclass(frozen=True)
class _Supervisor:
    pid: int
    request_w: int  # the request goes in, pickled (self-delimiting: no end-of-file needed)
    result_r: int  # the result comes out, pickled, up to end of file


@dataclass(frozen=True)
class _Failure:
    """What a supervisor that failed sends instead of a result: its own log may lead nowhere
    (``_leave_server`` closed the descriptors of the server's handlers; a test's handler
    keeps its records in memory), so the server logs the traceback and answers with the reason."""

    reason: str  # the exception, on one line
    traceback: str


class Supervisors:
    """Runs each request in a supervisor of its own: the spare if there is one, else a fresh
    fork (concurrent vsock requests, or one that comes before the spare is ready)."""

    def __init__(self, settings: runner.RunSettings) -> None:
        self._settings = settings
        self._spare: _Supervisor | None = None
        self._reaping: set[asyncio.Task[None]] = set()  # strong references while they run

    @property
    def spare_pid(self) -> int | None:
        return None if self._spare is None else self._spare.pid

    def prepare(self) -> None:
        """Fork the spare, unless there is one. Blocks the loop for the fork: call it when
        nothing waits, e.g. right after a reply was written."""
        if self._spare is not None:
            return
        try:
            self._spare = _fork(self._settings)
        except OSError as e:
            log.warning("cannot fork a spare supervisor: %s", e)

    async def run(self, request: Request) -> Result:
        spare, self._spare = self._spare, None
        if spare is not None:
            try:
                return await self._hand_over(spare, request)
            except BrokenPipeError:
                # It died before it had the whole request (killed by hand?), so nothing ran.
                log.warning("spare supervisor %d was gone; forking another", spare.pid)
        return await self._hand_over(_fork(self._settings), request)

    async def aclose(self) -> None:
        """Let the spare go (it exits when its request pipe closes); reap every supervisor."""
        if self._spare is not None:
            os.close(self._spare.request_w)
            os.close(self._spare.result_r)
            self._reap_later(self._spare.pid, "idle spare")
            self._spare = None
        await asyncio.gather(*self._reaping)

    async def _hand_over(self, supervisor: _Supervisor, request: Request) -> Result:
        try:
            try:
                await fdio.write_all(supervisor.request_w, pickle.dumps(request),
                                     HANDOVER_STALL)
            except TimeoutError:
                # Alive but not reading: it has not started the request, so it may go.
                os.kill(supervisor.pid, signal.SIGKILL)
                raise
            finally:
                os.close(supervisor.request_w)
                self._reap_later(supervisor.pid, f"request {request.id}")
            payload = await fdio.read_to_end(supervisor.result_r)
        finally:
            os.close(supervisor.result_r)
        try:
            outcome = pickle.loads(payload)
        except (pickle.UnpicklingError, EOFError):
            # It died before its result was whole; its exit status is logged once it is reaped.
            return Result(text="[Fatal error: the guest could not run the request]\n",
                          id=request.id)
        if isinstance(outcome, _Failure):
            _log_failure(f"request {request.id}: supervisor {supervisor.pid} failed: "
                         f"{outcome.reason}", outcome.traceback)
            return Result(text="[Fatal error: the guest could not run the request "
                               f"({outcome.reason})]\n", id=request.id)
        return outcome

    def _reap_later(self, pid: int, what: str) -> None:
        # The reply need not wait for the supervisor's exit (~7 ms under TCG): its result
        # is complete once its pipe closes.
        task = asyncio.get_running_loop().create_task(_reap(pid, what, self._settings.cgroups))
        self._reaping.add(task)
        task.add_done_callback(self._reaping.discard)


async def _reap(pid: int, what: str, cgroups: Path | None) -> None:
    pidfd = os.pidfd_open(pid)
    try:
        await fdio.wait_readable(pidfd)
    finally:
        os.close(pidfd)
    code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    if code:
        log.error("%s: supervisor %d failed (status %d)", what, pid, code)
    if cgroups is not None:
        await cgroup.remove(cgroups, pid)


def _fork(settings: runner.RunSettings) -> _Supervisor:
    request_r, request_w = os.pipe()
    result_r, result_w = os.pipe()
    try:
        pid = box.fork() if settings.box else os.fork()
    except OSError:
        for fd in (request_r, request_w, result_r, result_w):
            os.close(fd)
        raise
    if pid == 0:
        _supervise(settings, request_r, result_w)
    # Closed before anything else can fork, so no other supervisor inherits the write end
    # of this one's result.
    os.close(request_r)
    os.close(result_w)
    os.set_blocking(request_w, False)
    return _Supervisor(pid, request_w, result_r)


def _supervise(settings: runner.RunSettings, request_r: int, result_w: int) -> NoReturn:
    code = 1
    request: Request | None = None
    gdb = None
    try:
        _leave_server(keep=(request_r, result_w))
        shut_in = enter_box(settings)
        if shut_in and not select.select([request_r], [], [], GDB_AHEAD_AFTER)[0]:
            gdb = c_family.start_gdb(settings)
        with os.fdopen(request_r, "rb") as requests:
            request = pickle.load(requests)  # a spare waits here, idle, for its request
        result = (runner.run_request(request, settings, gdb) if shut_in
                  else Result(text="[Fatal error: the guest could not shut the request in]\n",
                              id=request.id))
        with os.fdopen(result_w, "wb") as out:
            out.write(pickle.dumps(result))
        code = 0
    except EOFError:
        code = 0  # the server closed (or exited) before it had a request for us
    except BaseException as e:
        failure = _Failure(" ".join(f"{type(e).__name__}: {e}".split()), traceback.format_exc())
        # Unless the result went out already (then the descriptor is closed).
        with contextlib.suppress(OSError):
            os.write(result_w, pickle.dumps(failure))
    finally:
        if gdb is not None:
            with contextlib.suppress(OSError):
                gdb_ahead.discard(gdb)
        os._exit(code)


def _log_failure(message: str, child_traceback: str) -> None:
    """One error line with the supervisor's traceback under it, as ``log.exception`` shows
    one of our own."""
    if log.isEnabledFor(logging.ERROR):
        record = log.makeRecord(log.name, logging.ERROR, __file__, 0, message, (), None)
        record.exc_text = child_traceback.rstrip("\n")
        log.handle(record)


def enter_box(settings: runner.RunSettings) -> bool:
    """Enter the request's box (what this guest has of it); False (logged) if that failed."""
    os.setsid()
    # The pid the server knows us by, which names our cgroup (os.getpid() is the box's, 1):
    # /proc is still the guest's until the box mounts its own.
    pid = int(os.readlink("/proc/self"))
    try:
        user = pwd.getpwnam(settings.user)
    except KeyError:
        return True  # nothing will run: the runner says why
    try:
        runner.make_roots_places(settings)  # again: /run may have been emptied since
        if settings.cgroups is not None:
            cgroup.enter(settings.cgroups, pid, settings.limits, settings.box_limits)
        if settings.box:
            box.shut_in(Path(user.pw_dir), user.pw_uid, user.pw_gid,
                        settings.box_limits.tmpfs_bytes,
                        writable=settings.roots_directories, visible=settings.own_code)
    except OSError as e:
        log.error("supervisor %d: cannot shut the request in: %s", pid, e)
        return False
    return True


def _leave_server(keep: tuple[int, ...]) -> None:
    """Drop what the fork copied from the server: its signal handlers and descriptors
    (a vsock connection must close when the server closes it, not when we exit; the
    listening socket must not outlive a server restart)."""
    # The server's objects now wrap closed descriptors; a garbage collection must not
    # close their numbers again once they are reused.
    gc.disable()
    signal.set_wakeup_fd(-1)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)
    low = 3
    for fd in sorted(keep):
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, os.sysconf("SC_OPEN_MAX"))
