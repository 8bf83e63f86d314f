"""One root supervisor process per request, forked from the (single-threaded) server.

The supervisor becomes a child subreaper, runs the request (``runner.run_request``), kills
every process the request left behind, and sends the result back through a pipe. The user
cannot signal it (it is root), and the server's event loop never blocks on a request.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import signal
from typing import NoReturn

from pbotvm.guest import fdio, runner
from pbotvm.protocol import Request, Result

log = logging.getLogger("pbotvm.guest")


async def run(request: Request, settings: runner.RunSettings) -> Result:
    read_fd, write_fd = os.pipe()
    try:
        pid = os.fork()
    except OSError:
        os.close(read_fd)
        os.close(write_fd)
        raise
    if pid == 0:
        _supervise(request, settings, write_fd)
    # Closed before anything else can fork, so no other supervisor inherits the write end.
    os.close(write_fd)
    try:
        payload = await fdio.read_to_end(read_fd)
    finally:
        os.close(read_fd)
    status = await _wait_exit(pid)
    try:
        obj = json.loads(payload)
        return Result(text=obj["result"], id=request.id, exit=obj.get("exit"),
                      killed=obj.get("killed"))
    except (ValueError, KeyError, TypeError):
        reason = os.waitstatus_to_exitcode(status)
        log.error("request %s: supervisor %d failed (status %d)", request.id, pid, reason)
        return Result(text="[Fatal error: the guest could not run the request]\n",
                      id=request.id)


async def _wait_exit(pid: int) -> int:
    pidfd = os.pidfd_open(pid)
    try:
        await fdio.wait_readable(pidfd)
    finally:
        os.close(pidfd)
    return os.waitpid(pid, 0)[1]


def _supervise(request: Request, settings: runner.RunSettings, write_fd: int) -> NoReturn:
    code = 1
    try:
        _leave_server(write_fd)
        result = runner.run_request(request, settings)
        with os.fdopen(write_fd, "wb") as out:
            out.write(json.dumps(result.to_json()).encode())
        code = 0
    except BaseException:
        log.exception("request %s: supervisor failed", request.id)
    finally:
        os._exit(code)


def _leave_server(keep_fd: int) -> None:
    """Drop what the fork copied from the server: its signal handlers and descriptors
    (a vsock connection must close when the server closes it, not when we exit; the
    listening socket must not outlive a server restart)."""
    # The server's objects now wrap closed descriptors; a garbage collection must not
    # close their numbers again once they are reused.
    gc.disable()
    signal.set_wakeup_fd(-1)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)
    os.closerange(3, keep_fd)
    os.closerange(keep_fd + 1, os.sysconf("SC_OPEN_MAX"))
