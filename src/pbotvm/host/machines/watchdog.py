"""vm-watchdog: reverts a machine whose guest keeps burning CPU while nobody uses it.

The original's rule (spec original.md §9): a sample every 15 s; revert after two consecutive
samples of at least 25 % CPU, the second no lower than the first. A sample is the CPU time the
VM used over the interval, from libvirt's domain statistics (``cpu.time``), or from
/proc/PID/stat of the QEMU backend's process or of the PTY VM's process tree; never ``top``.

A CPU-bound request is vm-server's business (it has its own time-out and revert): an interval
in which vm-server served or reverted the machine, as its status file tells
(``machine_state``), does not count, and the revert itself happens under the machine's lock,
which vm-server holds while it serves. Reverts go through vm-server's path (``revert``).
Every decision is one log line.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import click

from pbotvm import logs, procs
from pbotvm.config import ConfigError, HostSettings, Machine
from pbotvm.host.machines.machine_state import (
    MachineLock,
    Status,
    lock_path,
    read_status,
    status_path,
)
from pbotvm.host.machines.revert import RevertError, revert

log = logging.getLogger("pbotvm.watchdog")

DEFAULT_INTERVAL = 15.0
DEFAULT_THRESHOLD = 25.0
_TIMES = slice(11, 15)  # utime, stime, cutime, cstime among the fields after the command name


class NoVm(Exception):
    """There is no VM to measure; the message says why (one line)."""


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


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


class ProcessTreeSource:
    """A VM that is a process on this machine: QEMU (recorded in its vm.json) or the PTY VM
    (its pid file; the guest's programs run below it)."""

    def __init__(self, what: str, find_pid: Callable[[], int | None]) -> None:
        self.what = what
        self.find_pid = find_pid

    def read(self) -> Reading:
        pid = self.find_pid()
        if pid is None:
            raise NoVm(f"no {self.what} is running")
        ticks = tree_cpu_ticks(procs.stat_table(), pid)
        if ticks is None:
            raise NoVm(f"{self.what} pid {pid} is gone")
        return Reading(ticks / os.sysconf("SC_CLK_TCK"), time.monotonic(),
                       f"{self.what} pid {pid}")


class LibvirtSource:
    """A libvirt domain: ``cpu.time`` of its domain statistics (ns)."""

    def __init__(self, uri: str, domain: str) -> None:
        self.uri = uri
        self.domain = domain

    def read(self) -> Reading:
        import libvirt

        from pbotvm.host.machines.devices import LibvirtError, session

        try:
            with session(self.uri, self.domain) as conn:
                dom = conn.lookupByName(self.domain)
                if not dom.isActive():
                    raise NoVm(f"libvirt domain {self.domain} is not running")
                [(_, stats)] = conn.domainListGetStats([dom], libvirt.VIR_DOMAIN_STATS_CPU_TOTAL)
                # Drivers without the statistics API's CPU group give the same counter here.
                nanoseconds = stats["cpu.time"] if "cpu.time" in stats else dom.info()[4]
        except LibvirtError as e:
            raise NoVm(str(e)) from None
        return Reading(nanoseconds / 1e9, time.monotonic(),
                       f"libvirt {self.uri} domain {self.domain}")


def qemu_pid(state_dir: Path) -> int | None:
    from pbotvm.host.machines.qemu import VmPaths, pid_alive, read_info

    info = read_info(VmPaths(state_dir / "qemu"))
    return info.pid if info is not None and pid_alive(info.pid) else None


def pty_pid(state_dir: Path) -> int | None:
    from pbotvm.host.machines.ptyvm import pid_path

    return read_pid(pid_path(state_dir))


class AutoSource:
    """Whichever VM runs: the QEMU backend's, else the PTY VM, else the libvirt domain."""

    def __init__(self, state_dir: Path, uri: str, domain: str) -> None:
        self.qemu = ProcessTreeSource("QEMU", lambda: qemu_pid(state_dir))
        self.pty = ProcessTreeSource("PTY VM", lambda: pty_pid(state_dir))
        self.libvirt = LibvirtSource(uri, domain)

    def read(self) -> Reading:
        for source in (self.qemu, self.pty):
            if source.find_pid() is not None:
                return source.read()
        return self.libvirt.read()


Source = ProcessTreeSource | LibvirtSource | AutoSource


def make_source(kind: str, settings: HostSettings, machine: Machine) -> Source:
    state = settings.state_dir
    if kind == "qemu":
        return ProcessTreeSource("QEMU", lambda: qemu_pid(state))
    if kind == "pty":
        return ProcessTreeSource("PTY VM", lambda: pty_pid(state))
    if kind == "libvirt":
        return LibvirtSource(settings.libvirt_uri, machine.domain)
    return AutoSource(state, settings.libvirt_uri, machine.domain)


class Watchdog:
    """One machine, one sample per ``tick``."""

    def __init__(self, settings: HostSettings, machine: Machine, source: Source,
                 threshold: float = DEFAULT_THRESHOLD) -> None:
        self.settings = settings
        self.machine = machine
        self.source = source
        self.threshold = threshold
        self.previous = 0.0  # the last counted sample, in percent
        self._reading: Reading | None = None
        self._status: Status | None = None
        self._status_path = status_path(settings.state_dir, machine)
        self._lock = MachineLock(lock_path(settings.state_dir, machine))

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
            reading = self.source.read()
        except NoVm as e:
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
            seconds = asyncio.run(revert(self.machine, self.settings))
        except RevertError as e:
            return f"revert failed: {e}"
        finally:
            # The next sample starts after the revert: its own CPU use is no sample.
            try:
                self._reading = self.source.read()
            except NoVm:
                self._reading = None
        return f"reverted to snapshot {self.settings.snapshot} in {seconds:.2f} s"

    def run(self, interval: float) -> None:
        log.info("%s: watching, a sample every %g s, reverting after two at or above %g%%",
                 self.machine.name, interval, self.threshold)
        while True:
            self.tick()
            time.sleep(interval)  # after the tick, as the original: a revert ends a sample


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--interval", type=click.FloatRange(min=0.1), default=DEFAULT_INTERVAL,
              show_default=True, envvar="PBOTVM_WATCHDOG_INTERVAL",
              help="Seconds between samples (env PBOTVM_WATCHDOG_INTERVAL).")
@click.option("--threshold", type=click.FloatRange(min=0, min_open=True),
              default=DEFAULT_THRESHOLD, show_default=True, envvar="PBOTVM_WATCHDOG_THRESHOLD",
              help="CPU percent (of one CPU) that two samples in a row must reach "
                   "(env PBOTVM_WATCHDOG_THRESHOLD).")
@click.option("--machine", "machine_name", default=None,
              help="Machine to watch (default: the default machine).")
@click.option("--source", type=click.Choice(["auto", "libvirt", "qemu", "pty"]), default="auto",
              show_default=True,
              help="Where the CPU time comes from; auto: the QEMU backend's VM if one runs "
                   "(pbotvm vm up), else the PTY VM, else the libvirt domain.")
def main(interval: float, threshold: float, machine_name: str | None, source: str) -> None:
    """Revert a machine whose guest keeps using CPU while vm-server leaves it alone.

    Reverts as vm-server does (PBOTVM_REVERT_COMMAND, else libvirt snapshot PBOTVM_SNAPSHOT),
    never while vm-server serves a request on the machine.
    """
    from pbotvm.host.machines.qemu import with_vm_up_guest

    logs.setup("vm-watchdog")
    try:
        # As vm-server does: the same machine, its status file and its revert.
        settings, found = with_vm_up_guest(HostSettings.from_env(), os.environ)
        machine = settings.machines.resolve(machine_name)
    except (ConfigError, LookupError) as e:
        raise click.ClickException(str(e)) from None
    if found is not None:
        log.info("%s", found)
    watchdog = Watchdog(settings, machine, make_source(source, settings, machine), threshold)
    try:
        watchdog.run(interval)
    except KeyboardInterrupt:
        sys.exit(0)
