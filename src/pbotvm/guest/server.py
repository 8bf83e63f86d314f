"""``guest-server``: the daemon inside the guest, as root.

One single-threaded asyncio loop: the heartbeat, the serial line (requests answered one after
another, in order) and vsock connections (concurrent). Each request runs in a forked root
supervisor (``supervisor.py``), so nothing a program does can stop the loop; the next one is
forked once the reply is out.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import pwd
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from pbotvm import logs, settings
from pbotvm.guest import box, cgroup, clock, runner, serial_line, supervisor, user_access, vsock
from pbotvm.guest.runner import RunSettings
from pbotvm.guest.settings import SETTINGS, GuestSettings
from pbotvm.protocol import ProtocolError, Request, Result
from pbotvm.settings import ConfigError

log = logging.getLogger("pbotvm.guest")


@dataclass(frozen=True)
class Lines:
    """Where requests come from: the serial devices, and vsock unless it is off."""

    serial: str
    heart: str
    vport: int | None  # None: no vsock
    set_clock: bool


class GuestServer:
    def __init__(self, lines: Lines, run: RunSettings) -> None:
        self.lines = lines
        self.supervisors = supervisor.Supervisors(run)

    async def serve(self) -> None:
        line = serial_line.SerialLine(self.lines.serial)
        # Raw mode and a flushed input before the first beat: the host sends requests only
        # once it hears us, and the tty must not echo or replay any of them.
        line.open()
        tasks = [serial_line.heartbeat(self.lines.heart), line.run(self.answer)]
        if self.lines.vport is not None and (
                sock := vsock.listen(self.lines.vport)) is not None:
            tasks.append(vsock.serve(sock, self.answer))
        self.supervisors.prepare()
        await asyncio.gather(*tasks)

    async def answer(self, item: Request | ProtocolError, via: str) -> Result:
        if isinstance(item, ProtocolError):
            _after_reply(log.warning, "%s: bad request: %s", via, item)
            return Result(text=f"Failed to decode request: {item}\n")
        log.info("%s: request %s lang=%s started", via, item.id, item.lang)
        start = time.monotonic()
        if self.lines.set_clock:
            self._sync_clock(item.date)
        try:
            result = await self.supervisors.run(item)
        except Exception as e:  # fork or pipe failure: answer anyway and keep serving
            log.exception("%s: request %s failed", via, item.id)
            result = Result(text=f"[Fatal error: {e}]\n", id=item.id)
        _after_reply(self.supervisors.prepare)
        _after_reply(log.info, "%s: request %s lang=%s finished in %.3fs exit=%s killed=%s", via,
                     item.id, item.lang, time.monotonic() - start, result.exit, result.killed)
        return result

    @staticmethod
    def _sync_clock(date: int) -> None:
        try:
            old = clock.sync(date)
        except OSError as e:
            log.error("clock: cannot set to %d: %s", date, e)
            return
        if old is not None:
            log.info("clock: set from %.0f to %d", old, date)


def run_settings(env: GuestSettings) -> RunSettings:
    """The settings every request runs with, and what this guest has of the box (each says
    in one log line what it lacks)."""
    user = env.user
    settings = RunSettings(user=user, output_limit=env.output_limit, limits=env.limits,
                           box_limits=env.box_limits)
    runner.make_roots_places(settings)  # before the box is tried
    try:
        account = pwd.getpwnam(user)
    except KeyError:
        log.error("no user %r: every request will say so", user)
        return settings
    boxed = box.available(Path(account.pw_dir), account.pw_uid, account.pw_gid,
                          env.box_limits.tmpfs_bytes,
                          writable=settings.roots_directories, visible=settings.own_code)
    return dataclasses.replace(settings, box=boxed,
                               cgroups=cgroup.prepare(env.limits, env.box_limits))


def _after_reply(callback: Callable[..., object], *args: object) -> None:
    """Call once the caller has written the reply, which it does without yielding to the loop
    (unless the reader is slow to take it).

    For what the reply need not wait for: under TCG one log line costs the guest 0.2-0.9 ms,
    as much as the serial round trip, and forking the next supervisor 25-40 ms.
    """
    asyncio.get_running_loop().call_soon(callback, *args)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@settings.options(SETTINGS)
@click.option("--vsock/--no-vsock", default=True, show_default=True,
              help="Also accept requests on vsock (skipped, with a log line, if unavailable).")
@click.option("--set-clock/--no-set-clock", default=True, show_default=True,
              help="Set the clock from a request's date when it is more than 60 s off "
                   "(off when the guest shares the host's clock).")
def main(vsock: bool, set_clock: bool, **given: Any) -> None:
    """PBot VM guest server: runs requests from the host as an unprivileged user."""
    logs.setup("guest-server")
    try:
        env = GuestSettings.from_env(given=given)
    except ConfigError as e:
        raise click.ClickException(str(e)) from None
    if os.geteuid() != 0:
        raise click.ClickException("guest-server must run as root (it drops each program "
                                   "to the unprivileged user)")
    log.info("starting: serial %s, heartbeat %s, user %s, vsock %s", env.serial, env.heart,
             env.user, env.vport if vsock else "off")
    lines = Lines(serial=env.serial, heart=env.heart, vport=env.vport if vsock else None,
                  set_clock=set_clock)
    run = run_settings(env)
    if (refusal := user_access.problem(run.user)) is not None:
        raise click.ClickException(refusal)  # rather than answer wrongly (user_access)
    # Every request's supervisor is a fork of this process: find the temporary directory
    # here, once, instead of in each of them (tempfile probes it by writing a file).
    tempfile.gettempdir()
    try:
        asyncio.run(GuestServer(lines, run).serve())
    except KeyboardInterrupt:
        log.info("interrupted; exiting")
