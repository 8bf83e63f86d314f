"""gdb started before its request: a C request that needs gdb pays only for its own program.

gdb's own start (its Python, its data directory) takes 0.6 s of a 0.8 s gdb run in a TCG
guest, and the spare supervisor waits idle for its request anyway. So, once it has waited
half a second (``supervisor.GDB_AHEAD_AFTER``), it starts gdb with the driver, which waits
for its order (``channel.Order``) before it loads anything of the request. Until then gdb
runs only on CPU time nobody else wants (SCHED_IDLE): a request that comes while it starts
is not slowed by it. A request that turns out not to need it discards it; one that comes
while gdb has not started yet still saves what was done.

gdb runs as the user, in the request's box, with the limits of ``limits``; the wall-clock
limit counts from the order. Its own CPU time counts from its start (only root could move
its limit on, and gdb itself needs little of it: the program it runs has its own).
"""

from __future__ import annotations

import os
import pwd
import select
import socket
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from pbotvm.guest import sandbox
from pbotvm.guest.cfamily import channel
from pbotvm.guest.limits import Limits

DRIVER = Path(__file__).with_name("gdb_driver.py")
GDB_ARGV = ("gdb", "-nx", "-q", "-batch", "-x", str(DRIVER))
TIME_LIMIT = 8.0  # seconds: guest-gdb's alarm


def limits(program: Limits) -> Limits:
    """gdb's, and a program's run as gdb would run it: guest-gdb's 8 s of wall-clock time and
    one more second of CPU, so that a busy loop meets the wall-clock limit first, as it met
    guest-gdb's alarm (see ``run``)."""
    return replace(program, wall_seconds=TIME_LIMIT, cpu_seconds=program.cpu_seconds + 1)


@dataclass
class Gdb:
    """A gdb with the driver, waiting for its order."""

    started: sandbox.Started
    order: socket.socket
    idle: bool
    done: bool = False  # collected or discarded: nothing of it is left

    @property
    def pid(self) -> int:
        return self.started.pid


def start(user: pwd.struct_passwd, env: Mapping[str, str], program_limits: Limits, *,
          idle: bool) -> Gdb:
    """gdb as ``user``, in its home, with ``env`` (its programs get it too)."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        with open(os.devnull, "rb") as devnull:
            started = sandbox.start_plumbed(
                list(GDB_ARGV), user=user, cwd=Path(user.pw_dir), env=env,
                limits=limits(program_limits),
                # The program's stdout comes with the order, onto a descriptor that gdb
                # found open at its start: gdb closes any other in the programs it starts.
                files={0: devnull.fileno(), channel.OUTPUT_FD: devnull.fileno(),
                       channel.ORDER_FD: theirs.fileno()},
                pipes=[(1, 2), (channel.PROGRAM_STDERR_FD,), (channel.RECORDS_FD,)],
                idle=idle)
    except BaseException:
        ours.close()
        raise
    finally:
        theirs.close()
    return Gdb(started, ours, idle)


def waiting(gdb: Gdb) -> bool:
    """Whether it is still there to take an order (it may have died, or been killed)."""
    return not gdb.done and not select.select([gdb.started.pidfd], [], [], 0)[0]


def give_order(gdb: Gdb, order: channel.Order, output_fd: int) -> None:
    """Its order; from now on it runs as any process of the request."""
    if gdb.idle:
        sandbox.wake(gdb.started)
    try:
        channel.send_order(gdb.order, order, output_fd)
    finally:
        gdb.order.close()


def finish(gdb: Gdb, program_limits: Limits, keep: int) -> sandbox.Plumbed:
    """Its run after the order, collected (``sandbox.finish_plumbed``)."""
    gdb.done = True
    return sandbox.finish_plumbed(gdb.started, limits=limits(program_limits), keep=keep)


def discard(gdb: Gdb) -> None:
    """Not needed after all: killed and reaped (nothing, if that was done)."""
    if not gdb.done:
        gdb.done = True
        gdb.order.close()
        sandbox.discard(gdb.started)
