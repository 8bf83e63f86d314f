"""``pbotvm``: operator commands around the daemons (the local PTY VM and the demo)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import click

from pbotvm import logs
from pbotvm import settings as settings_table
from pbotvm.config import DEFAULT_ADDR, DEFAULT_MACHINE
from pbotvm.settings import find

if TYPE_CHECKING:
    from pbotvm.config import HostSettings
    from pbotvm.host.machines.guest import Guest
    from pbotvm.host.machines.qemu import QemuGuest


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """pbot-vm operator commands."""


@main.group()
def pty() -> None:
    """A local stand-in VM: guest-server on PTYs behind QEMU-style TCP ports."""


@pty.command("run")
@click.option("--addr", default=DEFAULT_ADDR, show_default=True)
@settings_table.option(find(DEFAULT_MACHINE, "PBOTVM_SERIAL"), "--serial", "serial_port")
@settings_table.option(find(DEFAULT_MACHINE, "PBOTVM_HEART"), "--heart", "heart_port")
@click.option("--control", type=click.Path(path_type=Path), default=None,
              help="Unix socket accepting revert/down/up (see `pbotvm pty ctl`).")
@click.argument("guest_args", nargs=-1)
def pty_run(addr: str, serial_port: int, heart_port: int, control: Path | None,
            guest_args: tuple[str, ...]) -> None:
    """Run the PTY VM in the foreground (as root, so the guest can drop to its user).

    GUEST_ARGS are passed on to guest-server (e.g. -- --user vm). Its pid, ports and control
    socket go to $PBOTVM_STATE_DIR/ptyvm/serial-PORT.json, where vm-server and vm-watchdog
    find it.
    """
    from pbotvm.config import state_dir
    from pbotvm.host.machines.ptyvm import PtyVm, record_path, run

    if (refusal := _guest_refusal(list(guest_args))) is not None:
        raise click.ClickException(refusal)
    logs.setup("ptyvm")

    async def main_task() -> None:
        task = asyncio.ensure_future(run(PtyVm(addr, serial_port, heart_port, list(guest_args)),
                                         control,
                                         record_path(state_dir(os.environ), serial_port)))
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    try:
        asyncio.run(main_task())
    except OSError as e:
        raise click.ClickException(f"PTY VM: {e.strerror or e}") from None


def _guest_refusal(guest_args: list[str]) -> str | None:
    """What guest-server would refuse to start for (``guest.user_access``), said before the
    PTY VM starts it: the PTY VM would otherwise serve its lines with no guest behind."""
    from pbotvm.guest import runner, server, user_access
    from pbotvm.guest.settings import GuestSettings
    from pbotvm.settings import ConfigError

    if os.geteuid() != 0:
        return None  # guest-server says that it needs root
    try:
        given = server.main.make_context("guest-server", guest_args,
                                         resilient_parsing=True).params
        user = GuestSettings.from_env(given=given).user
    except (ConfigError, click.ClickException) as e:
        return str(e)
    runner.make_roots_places(runner.RunSettings(user=user))  # as guest-server does first
    return user_access.problem(user)


# vm-server's revert command gets the serial port of the machine it reverts in this variable.
machine_serial_option = click.option(
    "--machine-serial", metavar="PORT|SOCKET", envvar="PBOTVM_MACHINE_SERIAL", default=None,
    help="Act only if the VM serves this serial port or socket (env PBOTVM_MACHINE_SERIAL, "
         "which vm-server sets for its revert command).")


@pty.command("ctl")
@click.option("--control", type=click.Path(path_type=Path), required=True)
@machine_serial_option
@click.argument("command", type=click.Choice(["revert", "down", "up"]))
def pty_ctl(control: Path, machine_serial: str | None, command: str) -> None:
    """Send COMMAND to a running PTY VM and wait until it is done.

    As PBOTVM_REVERT_COMMAND, `pbotvm pty ctl --control PATH revert` makes vm-server's
    reverts restart the PTY guest, and only for the machine this PTY VM serves.
    """
    from pbotvm.host.machines.ptyvm import send_control

    try:
        reply = send_control(control, f"{command} {machine_serial}" if machine_serial
                             else command)
    except OSError as e:
        raise click.ClickException(f"{control}: {e.strerror or e}") from None
    click.echo(reply)
    if not reply.startswith("ok"):
        raise SystemExit(1)


@main.command()
def status() -> None:
    """Each machine's guests as the running vm-server sees them: state and since when,
    requests, time-outs, reverts, the last revert's reason and duration, p50 and p95 of the
    last hour. Read from $PBOTVM_STATE_DIR/machines; exit 1 when no vm-server runs there.
    """
    import time

    from pbotvm.config import state_dir
    from pbotvm.host import status_report

    directory = state_dir(os.environ)
    try:
        statuses = status_report.running(directory)
    except OSError as e:
        hint = " (run it as the user vm-server runs as)" if isinstance(e, PermissionError) else ""
        raise click.ClickException(f"cannot read {e.filename}: {e.strerror or e}{hint}") from None
    if not statuses:
        click.echo(f"no vm-server runs with the state directory {directory}")
        raise SystemExit(1)
    click.echo(status_report.table(statuses, time.time()))


@main.command()
@click.option("--pty", is_flag=True, help="Use the local PTY stand-in instead of the real guest.")
@click.option("--guests", type=click.IntRange(1, 8), default=2, show_default=True,
              help="How many guests serve the machine (a pool).")
def demo(pty: bool, guests: int) -> None:
    """Start the guests and vm-server, answer a few vm-client requests, stop them.

    The real guests: build the minimal image (cached), boot it under QEMU, warm it up, save
    snapshot 1, and show two requests at once and a time-out being reverted.
    """
    from pbotvm.host.demo import run_demo

    raise SystemExit(run_demo(pty, guests))


@contextlib.contextmanager
def _one_line(*errors: type[Exception]) -> Iterator[None]:
    """These errors, raised in the block, are the operator's one line of output."""
    try:
        yield
    except errors as e:
        raise click.ClickException(str(e)) from None


@main.group()
def image() -> None:
    """The guest disk image (Debian, built with debootstrap, cached)."""


@image.command("build")
@click.option("--profile", type=click.Choice(["minimal", "full"]), default="minimal",
              show_default=True, help="minimal: sh, bash, python3, perl, C; full: every "
              "language Debian packages.")
@click.option("--force", is_flag=True, help="Rebuild even when the cached image is up to date.")
def image_build(profile: str, force: bool) -> None:
    """Build the guest image unless an up-to-date one is cached; print its directory."""
    from pbotvm.image.build import BuildError, build
    from pbotvm.provision.profiles import PROFILES

    with _one_line(BuildError):
        click.echo(build(PROFILES[profile], force=force).directory)


profile_option = click.option(
    "--profile", type=click.Choice(["minimal", "full"]), default="minimal", show_default=True,
    help="Image profile (built first if needed).")


@main.group()
def vm() -> None:
    """The QEMU guest: boot it from the image, snapshot it, revert it, stop it.

    The serial devices are Unix sockets only root can use (PBOTVM_SERIAL_SOCKET,
    PBOTVM_HEART_SOCKET; default serial.sock and heart.sock in the state directory), or with
    `up --tcp` the default machine's TCP ports (PBOTVM_SERIAL, PBOTVM_HEART). The state
    (pidfile, QMP socket, console log, disk overlay) lives in $PBOTVM_STATE_DIR/qemu.
    PBOTVM_ACCEL=kvm|tcg skips the KVM probe.
    """


def _settings() -> HostSettings:
    from pbotvm.config import ConfigError, HostSettings

    with _one_line(ConfigError):
        return HostSettings.from_env(os.environ)


def _qemu_guests(count: int = 1, *, tcp: bool = False) -> list[QemuGuest]:
    """The default machine's QEMU guests: those ``vm up`` recorded, else ``count`` new ones
    (``nth_guest``), their lines on Unix sockets in their state directories unless ``tcp``."""
    from pbotvm.config import nth_guest
    from pbotvm.host.machines.qemu import QemuGuest, guest_paths, recorded_guests, with_sockets

    settings = _settings()
    machine = settings.machines.resolve()
    guests = []
    for index in range(max(count, len(recorded_guests(settings.state_dir)))):
        lines = nth_guest(machine, index) if count > 1 or index else machine
        paths = guest_paths(settings.state_dir, index)
        guests.append(QemuGuest(lines if tcp else with_sockets(lines, paths), paths,
                                os.environ))
    return guests


def _up(guests: Sequence[Guest], profile: str, say: Callable[[str], None]) -> list[str]:
    """Build the image if needed, then bring the ``guests`` up from it, warmed, at once; if
    one fails, those that came up go down again."""
    from pbotvm.host import warmup
    from pbotvm.host.machines.guest import GuestError
    from pbotvm.image.build import BuildError, build
    from pbotvm.provision.profiles import PROFILES

    with _one_line(BuildError):
        image = build(PROFILES[profile])

    async def each(guest: Guest) -> str:
        def said(line: str) -> None:
            say(line if len(guests) == 1 else f"{guest.lines.name}: {line}")

        return await guest.up(image, warmup.for_image(image, said), said)

    async def together() -> list[str | BaseException]:
        return await asyncio.gather(*(each(guest) for guest in guests), return_exceptions=True)

    outcomes = asyncio.run(together())
    failed = [e for e in outcomes if isinstance(e, BaseException)]
    if failed:
        for guest, outcome in zip(guests, outcomes, strict=True):
            if not isinstance(outcome, BaseException):
                guest.down()
        if not all(isinstance(e, GuestError) for e in failed):
            raise failed[0]
        raise click.ClickException(str(failed[0]))
    return [str(outcome) for outcome in outcomes]


def _revert(guest: Guest, slow: bool = False) -> None:
    from pbotvm.host.machines.guest import GuestError, timed_revert

    with _one_line(GuestError):
        how, seconds = asyncio.run(timed_revert(guest, slow=slow))
    click.echo(f"reverted with {how} in {seconds:.3f} s")


guests_option = click.option(
    "--guests", type=click.IntRange(1, 64), default=1, show_default=True,
    help="How many guests: a pool for the default machine (each its own overlay, lines and "
         "snapshot; guest K's ports are the machine's plus 2K, its sockets name-K.sock).")


@vm.command("up")
@profile_option
@guests_option
@click.option("--tcp", is_flag=True, help="Serve the serial devices on TCP PBOTVM_SERIAL and "
              "PBOTVM_HEART (the original's layout; any local user can connect first).")
def vm_up(profile: str, guests: int, tcp: bool) -> None:
    """Build the image if needed, boot it, warm it up and save snapshot 1."""
    pool = _qemu_guests(guests, tcp=tcp)[:guests]
    for guest, summary in zip(pool, _up(pool, profile, lambda line: click.echo(
            f"pbotvm vm: {line}", err=True)), strict=True):
        click.echo(f"up: {summary}" if len(pool) == 1 else f"up: {guest.lines.name}: {summary}")


@vm.command("down")
def vm_down() -> None:
    """Stop the VM (every guest vm up started)."""
    stopped = [guest.down() for guest in _qemu_guests()]
    click.echo("stopped" if any(stopped) else "not running")


@vm.command("status")
def vm_status() -> None:
    """Show whether the VMs run, and their ports and state files. Exit 1 when none does."""
    from pbotvm.host.machines.qemu import read_info

    running = 0
    for guest in _qemu_guests():
        info = read_info(guest.paths)
        if info is None or not guest.running():
            click.echo(f"not running (state dir {guest.paths.state_dir})")
            continue
        running += 1
        click.echo(f"running: pid {info.pid}, {info.accel}, serial {info.serial_where}, "
                   f"heart {info.heart_where}\nQMP {info.qmp}\nconsole {guest.paths.console}\n"
                   f"image {info.image}")
    if not running:
        raise SystemExit(1)


@vm.command("revert")
@machine_serial_option
@click.option("--slow", is_flag=True, help="Restart QEMU straight into the snapshot instead "
              "of loadvm in the running VM.")
def vm_revert(machine_serial: str | None, slow: bool) -> None:
    """Load snapshot 1 (use as PBOTVM_REVERT_COMMAND="pbotvm vm revert"): of the guest on
    the serial line PBOTVM_MACHINE_SERIAL names, else of the first."""
    from pbotvm.host.machines.qemu import read_info

    guests = _qemu_guests()
    serves = {}
    for guest in guests:
        if (info := read_info(guest.paths)) is not None:
            serves[info.serial_socket or str(info.serial)] = guest
    if machine_serial is None:
        _revert(guests[0], slow)
    elif machine_serial in serves:
        _revert(serves[machine_serial], slow)
    elif len(serves) == 1:
        raise click.ClickException(f"the VM in {guests[0].paths.state_dir} serves serial "
                                   f"{next(iter(serves))}, not {machine_serial}: not reverting it")
    elif serves:
        raise click.ClickException(f"the VMs in {guests[0].paths.state_dir} serve serial "
                                   f"{', '.join(serves)}, not {machine_serial}: not reverting "
                                   "them")
    else:
        _revert(guests[0], slow)


@main.group()
def libvirt() -> None:
    """The guest as a libvirt domain (PBOTVM_LIBVIRT_URI, PBOTVM_DOMAIN, PBOTVM_SNAPSHOT).

    The overlay disk and console log live in $PBOTVM_STATE_DIR/libvirt; ports and CID are the
    default machine's. The domain is marked as pbotvm's: a foreign domain is never touched.
    """


def _libvirt_guests(count: int = 1, uri: str | None = None) -> list[Guest]:
    """The default machine's domains: the pool ``libvirt up`` recorded, else ``count`` new
    ones (``nth_guest``; one: the machine's own). With ``uri``, only the guests on that host:
    those recorded there, else ``count`` new ones, numbered after the others."""
    from pbotvm.config import nth_guest
    from pbotvm.host.machines.libvirt_domain import LibvirtGuest, domain_paths, recorded_pool
    from pbotvm.host.machines.libvirt_remote import RemoteGuest

    settings = _settings()
    machine = settings.machines.resolve()
    recorded = recorded_pool(settings.state_dir)
    if uri is not None:
        others = [guest for guest in recorded if guest.uri != uri]
        first = len(others) or 1  # guest 0 is this host's own domain
        there = [guest for guest in recorded if guest.uri == uri] or [
            replace(nth_guest(machine, index), uri=uri) for index in range(first, first + count)]
        return [RemoteGuest(guest, settings, os.environ) for guest in there]
    lines = [guest for guest in recorded if not guest.uri] or [
        nth_guest(machine, index) if count > 1 else machine for index in range(count)]
    return [LibvirtGuest(guest, settings, domain_paths(settings.state_dir, index), os.environ)
            for index, guest in enumerate(lines)]


uri_option = click.option(
    "--uri", metavar="URI", help="The guests on this libvirt host (qemu+ssh://…, qemu+tls://"
    "…), reached through libvirt's connection alone: the image goes there as volumes, the "
    "lines come back as its streams. Without it: the local daemon (PBOTVM_LIBVIRT_URI).")


@libvirt.command("up")
@profile_option
@guests_option
@uri_option
def libvirt_up(profile: str, guests: int, uri: str | None) -> None:
    """Build the image if needed, define the domain, attach the devices, start it, warm it
    up and create snapshot PBOTVM_SNAPSHOT (for each of the guests)."""
    from pbotvm.host.machines.libvirt_domain import ours_defined, record_pool, recorded_pool
    from pbotvm.host.machines.libvirt_lines import run_if_started

    pool = _libvirt_guests(guests, uri)
    summaries = _up(pool, profile, lambda line: click.echo(f"pbotvm libvirt: {line}", err=True))
    settings = _settings()
    recorded = recorded_pool(settings.state_dir)
    if uri is not None:  # beside the guests recorded elsewhere
        others = [guest for guest in recorded if guest.uri != uri]
        machine = settings.machines.resolve()
        if not others and run_if_started(lambda: ours_defined(settings.libvirt_uri,
                                                              machine.domain)):
            others = [machine]  # the lone local domain `libvirt up` made serves beside them
        record_pool(settings.state_dir, others + [guest.lines for guest in pool])
    elif len(pool) > 1 or any(guest.uri for guest in recorded):
        record_pool(settings.state_dir, [guest.lines for guest in pool]
                    + [guest for guest in recorded if guest.uri])
    for summary in summaries:
        click.echo(f"up: {summary}")


@libvirt.command("down")
@click.option("--uri", metavar="URI", help="Only the guests on this libvirt host.")
def libvirt_down(uri: str | None) -> None:
    """Destroy and undefine the domain (with its snapshot metadata), each of the pool's; on
    another host, also what `up` made there (volumes, the storage pool)."""
    from pbotvm.host.machines.guest import GuestError
    from pbotvm.host.machines.libvirt_domain import record_pool, recorded_pool

    state_dir = _settings().state_dir
    uris = [uri] if uri is not None else sorted(
        {guest.uri for guest in recorded_pool(state_dir) if guest.uri})
    pool = [] if uri is not None else _libvirt_guests()
    for there in uris:
        pool += _libvirt_guests(uri=there)
    with _one_line(GuestError):
        removed = [guest.down() for guest in pool]
    gone = {guest.lines for guest in pool}
    record_pool(state_dir, [guest for guest in recorded_pool(state_dir) if guest not in gone])
    click.echo("removed" if any(removed) else "not defined")


@libvirt.command("revert")
@click.option("--slow", is_flag=True, help="Only libvirt's snapshot revert (restarts QEMU), "
              "not loadvm through the QEMU monitor.")
def libvirt_revert(slow: bool) -> None:
    """Revert the domain to its snapshot, as vm-server does (the first guest's of a pool)."""
    _revert(_libvirt_guests()[0], slow)


@main.group()
def devices() -> None:
    """Attach the guest's devices to a libvirt domain's config (the original's devices/add-*).

    Honours PBOTVM_LIBVIRT_URI, PBOTVM_DOMAIN, PBOTVM_SERIAL, PBOTVM_HEART (or
    PBOTVM_SERIAL_SOCKET, PBOTVM_HEART_SOCKET: Unix-socket serial devices) and PBOTVM_CID.
    Re-running replaces a device on the same port instead of adding a second one.
    """


def _add_devices(which: str) -> None:
    from pbotvm.config import ConfigError, HostSettings
    from pbotvm.host.machines import devices as dev

    with _one_line(ConfigError, dev.LibvirtError):
        settings = HostSettings.from_env(os.environ)
        machine = settings.machines.resolve()
        wanted = []
        if which in ("serials", "all"):
            wanted += dev.serial_devices(machine)
        if which in ("vsock", "all"):
            wanted.append(dev.vsock_device(machine))
            if (note := dev.vsock_note()) is not None:
                click.echo(f"note: {note}", err=True)
        for line in dev.add(settings.libvirt_uri, machine.domain, wanted):
            click.echo(f"{machine.domain}: {line}")


@devices.command("add-serials")
def devices_add_serials() -> None:
    """Serial ports 2 (requests, TCP PBOTVM_SERIAL) and 3 (heartbeat, TCP PBOTVM_HEART), or
    Unix sockets PBOTVM_SERIAL_SOCKET and PBOTVM_HEART_SOCKET when set."""
    _add_devices("serials")


@devices.command("add-vsock")
def devices_add_vsock() -> None:
    """A virtio vsock device with CID PBOTVM_CID."""
    _add_devices("vsock")


@devices.command("add-all")
def devices_add_all() -> None:
    """Both."""
    _add_devices("all")


@main.group()
def units() -> None:
    """systemd units for vm-server and vm-watchdog (restarted on failure, hardened)."""


@units.command("install")
@click.option("--root", type=click.Path(file_okay=False, path_type=Path), default=Path("/"),
              show_default=True, help="Write below this directory instead of /.")
@click.option("--guests", type=click.IntRange(0, 64), default=0, show_default=True,
              help="Also pbotvm-guests.service: `pbotvm vm up --guests N` before vm-server.")
def units_install(root: Path, guests: int) -> None:
    """Write pbotvm-vm-server.service and pbotvm-vm-watchdog.service (and, with --guests N,
    pbotvm-guests.service).

    They run this installation's vm-server and vm-watchdog with the state directory this
    environment has (PBOTVM_STATE_DIR), the only place they may write; other PBOTVM_*
    settings go in /etc/pbotvm/pbotvm.env.
    """
    import sys

    from pbotvm.config import state_dir
    from pbotvm.host import units as systemd_units

    written = systemd_units.install(root, Path(sys.executable).parent,
                                    state_dir(os.environ).absolute(), guests)
    for path in written:
        click.echo(f"wrote {path}")
    names = " ".join(path.name for path in written)
    click.echo(f"next: systemctl daemon-reload && systemctl enable --now {names}")
