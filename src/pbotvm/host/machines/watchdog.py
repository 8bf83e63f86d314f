"""vm-watchdog: reverts a machine whose guest keeps burning CPU while nobody uses it.

The original's rule (host/bin/vm-watchdog): a sample every 15 s; revert after two consecutive
samples of at least 25 % CPU, the second no lower than the first. A sample is the CPU time the
VM used over the interval, as its backend reads it (``Guest.cpu_seconds``: libvirt's domain
statistics, or /proc/PID/stat of QEMU's process or of the PTY VM's process tree); never
``top``.

A CPU-bound request is vm-server's business (it has its own time-out and revert): an interval
in which vm-server served or reverted the machine, as its status file tells
(``machine_state``), does not count, and the revert itself happens under the machine's lock,
which vm-server holds while it serves. Reverts go through vm-server's path (``Guest.revert``).
Every decision is one log line.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from dataclasses import dataclass
from typing import Any

import click

from pbotvm import logs
from pbotvm import settings as settings_table
from pbotvm.config import DEFAULT_THRESHOLD, WATCHDOG, ConfigError, HostSettings
from pbotvm.host.machines.backends import KINDS, guest_for
from pbotvm.host.machines.guest import Guest, GuestError, timed_revert
from pbotvm.host.machines.machine_state import (
    MachineLock,
    Status,
    lock_path,
    read_status,
    status_path,
)

log = logging.getLogger("pbotvm.watchdog")



@dataclass(frozen=True)
class Reading:
    cpu: float  # seconds of CPU the VM has used so far
    at: float  # time.monotonic()
    source: str  # what was measured: readings of different sources are not compared


def cpu_percent(before: Reading, after: Reading) -> float:
    """CPU use between two readings, in percent of one CPU (a busy 2-vCPU guest: 200)."""
    return max(0.0, after.cpu - before.cpu) / max(after.at - before.at, 1e-9) * 100


def should_revert(previous: float, percent: float, threshold: float) -> bool:
    """The original's rule: this sample and the one before at or above the threshold, this
    one no lower."""
    return previous >= threshold and percent >= previous


def server_activity(before: Status | None, after: Status | None, now: float) -> str | None:
    """What vm-server did with the machine between two looks at its status (None: the
    status of a vm-server that is not running), or None if it left the machine alone."""
    if after is not None:
        if after.reverting_since is not None:
            return f"vm-server is reverting it (for {now - after.reverting_since:.1f} s)"
        if after.serving_since is not None:
            return f"vm-server is serving a request (for {now - after.serving_since:.1f} s)"
    if before is None or after is None:
        return "vm-server started" if after is not None else None
    if after.pid != before.pid:
        return "vm-server restarted"
    if before.serving_since is not None or before.reverting_since is not None:
        return "vm-server was busy with it"
    served = after.requests - before.requests
    if served or after.reverts != before.reverts:
        return (f"vm-server served {served} request(s) and made "
                f"{after.reverts - before.reverts} revert(s)")
    return None


def read(guest: Guest) -> Reading:
    """A sample of the guest's CPU time; GuestError when there is nothing to measure."""
    return Reading(guest.cpu_seconds(), time.monotonic(), guest.describe())


class Watchdog:
    """One machine, one sample per ``tick``."""

    def __init__(self, settings: HostSettings, guest: Guest,
                 threshold: float = DEFAULT_THRESHOLD) -> None:
        self.settings = settings
        self.guest = guest
        self.machine = guest.lines
        self.threshold = threshold
        self.previous = 0.0  # the last counted sample, in percent
        self._reading: Reading | None = None
        self._status: Status | None = None
        self._status_path = status_path(settings.state_dir, self.machine)
        self._lock = MachineLock(lock_path(settings.state_dir, self.machine))

    def server_status(self) -> Status | None:
        """vm-server's status for the machine; None when no vm-server runs."""
        status = read_status(self._status_path)
        return status if status is not None and status.server_running() else None

    def tick(self) -> list[str]:
        """Take a sample and act on it; returns the lines logged: the decision, and the
        revert's outcome when it reverted."""
        decision, reverting = self._judge()
        lines = [decision]
        log.info("%s: %s", self.machine.name, decision)
        if reverting:
            try:
                lines.append(self._revert())
            finally:
                self._lock.note_revert()
                self._lock.release()
            log.info("%s: %s", self.machine.name, lines[-1])
        return lines

    def _judge(self) -> tuple[str, bool]:
        """The decision on a new sample, and whether to revert now (the lock is then held)."""
        before, self._status = self._status, self.server_status()
        try:
            reading = read(self.guest)
        except GuestError as e:
            self._reading, self.previous = None, 0.0
            return f"nothing to watch: {e}", False
        last, self._reading = self._reading, reading
        if last is None or last.source != reading.source:
            self.previous = 0.0
            return f"first sample of {reading.source}", False
        percent = cpu_percent(last, reading)
        sample = f"cpu {percent:.1f}% over {reading.at - last.at:.1f} s"
        busy = server_activity(before, self._status, time.time())
        if busy:
            self.previous = 0.0
            return f"{sample}, not counted: {busy}", False
        previous, self.previous = self.previous, percent
        if not should_revert(previous, percent, self.threshold):
            return (f"{sample} (sample before {previous:.1f}%, threshold "
                    f"{self.threshold:g}%): no action"), False
        self.previous = 0.0
        if not self._lock.try_acquire():
            return (f"{sample} after {previous:.1f}%, but vm-server has just taken the "
                    "machine: not reverting"), False
        return f"{sample} after {previous:.1f}% (threshold {self.threshold:g}%): reverting", True

    def _revert(self) -> str:
        try:
            _, seconds = asyncio.run(timed_revert(self.guest))
        except GuestError as e:
            return f"revert failed: {e}"
        finally:
            # The next sample starts after the revert: its own CPU use is no sample.
            try:
                self._reading = read(self.guest)
            except GuestError:
                self._reading = None
        return f"reverted to snapshot {self.settings.snapshot} in {seconds:.2f} s"


def run(watchdogs: list[Watchdog], interval: float) -> None:
    """Each guest's sample in turn, then the interval."""
    for watchdog in watchdogs:
        log.info("%s: watching, a sample every %g s, reverting after two at or above %g%%",
                 watchdog.machine.name, interval, watchdog.threshold)
    while True:
        for watchdog in watchdogs:
            watchdog.tick()
        time.sleep(interval)  # after the ticks, as the original: a revert ends a sample


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@settings_table.options(WATCHDOG)
@click.option("--machine", "machine_name", default=None,
              help="Machine to watch (default: the default machine).")
@click.option("--source", type=click.Choice(["auto", *KINDS]), default="auto",
              show_default=True,
              help="The machine's backend, where the CPU time comes from; auto: the one "
                   "vm-server finds (the VM that pbotvm vm up or pbotvm pty run recorded for "
                   "the machine's lines, else the libvirt domain).")
def main(machine_name: str | None, source: str, **given: Any) -> None:
    """Revert a machine's guest (each of a pool's) that keeps using CPU while vm-server
    leaves it alone.

    Reverts as vm-server does (PBOTVM_REVERT_COMMAND, else libvirt snapshot PBOTVM_SNAPSHOT),
    never while vm-server serves a request on the machine.
    """
    from pbotvm.host.machines.backends import with_recorded_guests

    logs.setup("vm-watchdog")
    try:
        # As vm-server does: the same machine, its status file and its revert.
        settings, found = with_recorded_guests(HostSettings.from_env(), os.environ)
        machine = settings.machines.resolve(machine_name)
        watching = settings_table.read(WATCHDOG, os.environ, given)
    except (ConfigError, LookupError) as e:
        raise click.ClickException(str(e)) from None
    if found is not None:
        log.info("%s", found)
    # Each guest of a pool is watched on its own: its backend, its status file, its lock.
    watchdogs = [Watchdog(settings, guest_for(settings, guest, source), watching["threshold"])
                 for guest in machine.members()]
    try:
        run(watchdogs, watching["interval"])
    except KeyboardInterrupt:
        sys.exit(0)
