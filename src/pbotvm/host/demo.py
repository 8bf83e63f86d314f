"""``pbotvm demo``: the pipeline answering a few vm-client requests, as PBot would send them.

By default the real guest (image built and cached, booted under QEMU, warmed, snapshot 1
saved); with ``--pty`` the local PTY stand-in, which starts in a second. Either is brought up
and down through the one machine interface (``machines.guest``), and vm-server finds it in the
state directory as it would on an operator's host.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

import click

from pbotvm import procs
from pbotvm.config import (
    DEFAULT_HEART,
    DEFAULT_SERIAL,
    DEFAULT_SERVER_PORT,
    HostSettings,
    Machine,
)
from pbotvm.host.machines.guest import Guest, GuestError, Say

REQUESTS = [
    "-lang=sh echo hello from $(uname -s) as $(whoami)",
    "-lang=python3 print(sum(range(10)))",
    "-lang=perl print 'hello ', scalar <STDIN> -stdin=world",
    "-lang=bash -args \"'a b' c\" for x in \"$@\"; do echo \"[$x]\"; done",
    '-lang=c11 #include <stdio.h>\nint main(void) { printf("%d\\n", 6 * 7); }',
    '-lang=sh echo "out"; echo "err" >&2; exit 3',
    "-lang=nosuchlang 1",
]

# Only the real guest is worth showing this: the snippet is killed, the VM reverted, and the
# next request (queued behind the revert) finds a clean machine.
REVERT_REQUESTS = [
    "-lang=sh echo scribble > /tmp/left-behind; while :; do :; done",
    "-lang=sh cat /tmp/left-behind 2>&1 || echo clean again",
]
READY_TIMEOUT = 60.0
BIN = Path(sys.executable).parent


def _port(default: int) -> int:
    """``default`` if nothing listens there, else a port the kernel picks."""
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", default))
        except OSError:
            s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ask(env: Mapping[str, str], code: str) -> str:
    line = json.dumps({"nick": "tester", "channel": "#demo", "code": code})
    done = subprocess.run([str(BIN / "vm-client"), line], env=env, capture_output=True,
                          text=True, timeout=120, check=False)
    return done.stdout.removesuffix("\n")


def _guest(settings: HostSettings, pty: bool) -> Guest:
    from pbotvm.host.machines.ptyvm import PtyGuest
    from pbotvm.host.machines.qemu import QemuGuest, VmPaths, with_sockets

    machine = settings.machines.resolve()
    if pty:
        return PtyGuest.of(settings, machine)
    sockets = with_sockets(machine, VmPaths(settings.state_dir / "qemu"))
    return QemuGuest.of(settings, sockets, os.environ)


def _up(guest: Guest, pty: bool, say: Say) -> str:
    from pbotvm.host import warmup
    from pbotvm.image.build import build
    from pbotvm.image.profiles import MINIMAL

    if pty:
        async def nothing(_: Machine) -> None:
            pass  # the PTY VM runs this host's toolchains, warm already

        return asyncio.run(guest.up(None, nothing, say))
    image = build(MINIMAL)
    return asyncio.run(guest.up(image, warmup.for_image(image, say), say))


def run_demo(pty: bool) -> int:
    if os.geteuid() != 0:
        raise click.ClickException("the guest runs as root (it drops to user vm) and QEMU "
                                   "needs its devices; run as root")
    with tempfile.TemporaryDirectory(prefix="pbotvm-demo-") as tmp:
        env = {**os.environ, "PBOTVM_STATE_DIR": str(Path(tmp, "state")),
               "PBOTVM_SERVER": str(_port(DEFAULT_SERVER_PORT)),
               "PBOTVM_SERIAL": str(_port(DEFAULT_SERIAL)),
               "PBOTVM_HEART": str(_port(DEFAULT_HEART))}
        if not pty:  # the lines are where `vm up` records them, on Unix sockets
            del env["PBOTVM_SERIAL"], env["PBOTVM_HEART"]
        settings = HostSettings.from_env(env)
        guest = _guest(settings, pty)
        what = "the PTY VM" if pty else "the QEMU guest (image, boot, warm-up, snapshot)"
        click.echo(f"Starting {what} ...")
        start = time.monotonic()

        def say(line: str) -> None:
            click.echo(f"  {line}")

        try:
            click.echo(f"Up: {_up(guest, pty, say)}")
        except (GuestError, OSError) as e:
            guest.down()
            raise click.ClickException(str(e).splitlines()[0]) from None
        log = Path(tmp, "vm-server.log")
        with open(log, "ab") as out:
            server = subprocess.Popen([str(BIN / "vm-server")], env=env,
                                      stdin=subprocess.DEVNULL, stdout=out,
                                      stderr=subprocess.STDOUT)
        try:
            _wait_ready(env, server, log)
            click.echo(f"Ready in {time.monotonic() - start:.0f} s; vm-server on port "
                       f"{env['PBOTVM_SERVER']}.")
            for code in REQUESTS + ([] if pty else REVERT_REQUESTS):
                start = time.monotonic()
                reply = _ask(env, code)
                ms = (time.monotonic() - start) * 1000
                click.echo(f"\n<tester> cc {code}\n<pbot>   {reply}   ({ms:.0f} ms)")
        finally:
            procs.terminate(server)
            guest.down()
        click.echo("\nStopped.")
    return 0


def _wait_ready(env: Mapping[str, str], server: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise click.ClickException(f"vm-server exited {server.returncode}: "
                                       f"{log.read_text(errors='replace').strip()[-500:]}")
        if _ask(env, "-lang=sh echo ready -stdin x") == "ready":
            return
        time.sleep(0.2)
    raise click.ClickException(f"vm-server did not answer within {READY_TIMEOUT:.0f} s")
