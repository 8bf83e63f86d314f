"""``pbotvm``: operator commands around the daemons (the local PTY VM and the demo)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from pathlib import Path

import click

from pbotvm import logs
from pbotvm.config import DEFAULT_ADDR, DEFAULT_HEART, DEFAULT_SERIAL


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """pbot-vm operator commands."""


@main.group()
def pty() -> None:
    """A local stand-in VM: guest-server on PTYs behind QEMU-style TCP ports."""


@pty.command("run")
@click.option("--addr", default=DEFAULT_ADDR, show_default=True)
@click.option("--serial", "serial_port", type=int, default=DEFAULT_SERIAL, show_default=True,
              envvar="PBOTVM_SERIAL", help="TCP port of the guest's serial line.")
@click.option("--heart", "heart_port", type=int, default=DEFAULT_HEART, show_default=True,
              envvar="PBOTVM_HEART", help="TCP port of the guest's heartbeat line.")
@click.option("--control", type=click.Path(path_type=Path), default=None,
              help="Unix socket accepting revert/down/up (see `pbotvm pty ctl`).")
@click.argument("guest_args", nargs=-1)
def pty_run(addr: str, serial_port: int, heart_port: int, control: Path | None,
            guest_args: tuple[str, ...]) -> None:
    """Run the PTY VM in the foreground (as root, so the guest can drop to its user).

    GUEST_ARGS are passed on to guest-server (e.g. -- --user vm).
    """
    from pbotvm.host.ptyvm import PtyVm, run

    logs.setup("ptyvm")

    async def main_task() -> None:
        task = asyncio.ensure_future(run(PtyVm(addr, serial_port, heart_port, list(guest_args)),
                                         control))
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    try:
        asyncio.run(main_task())
    except OSError as e:
        raise click.ClickException(f"PTY VM: {e.strerror or e}") from None


@pty.command("ctl")
@click.option("--control", type=click.Path(path_type=Path), required=True)
@click.argument("command", type=click.Choice(["revert", "down", "up"]))
def pty_ctl(control: Path, command: str) -> None:
    """Send COMMAND to a running PTY VM and wait until it is done.

    As PBOTVM_REVERT_COMMAND, `pbotvm pty ctl --control PATH revert` makes vm-server's
    reverts restart the PTY guest.
    """
    from pbotvm.host.ptyvm import send_control

    try:
        reply = send_control(control, command)
    except OSError as e:
        raise click.ClickException(f"{control}: {e.strerror or e}") from None
    click.echo(reply)
    if not reply.startswith("ok"):
        raise SystemExit(1)


@main.command()
def demo() -> None:
    """Start the PTY VM and vm-server, answer a few vm-client requests, stop both."""
    from pbotvm.host.demo import run_demo

    raise SystemExit(run_demo())
