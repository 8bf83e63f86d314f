"""``pbotvm demo``: the pipeline answering a few vm-client requests, as PBot would send them.

By default a pool of two real guests (image built and cached, booted under QEMU, warmed,
snapshot 1 saved); with ``--pty`` the local PTY stand-in, which starts in a second. They are
brought up and down through the one machine interface (``machines.guest``), and vm-server
finds them in the state directory as it would on an operator's host.
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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import click

from pbotvm import procs
from pbotvm.config import (
    DEFAULT_HEART,
    DEFAULT_SERIAL,
    DEFAULT_SERVER_PORT,
    HostSettings,
    Machine,
    nth_guest,
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
    line = json.dumps({"nick": f"tester{abs(hash(code)) % 100}", "channel": "#demo",
                       "code": code})
    done = subprocess.run([str(BIN / "vm-client"), line], env=env, capture_output=True,
                          text=True, timeout=120, check=False)
    return done.stdout.removesuffix("\n")


def _guests(settings: HostSettings, pty: bool, count: int) -> list[Guest]:
    """The demo's pool: ``count`` PTY VMs, or QEMU guests on Unix sockets in the state
    directory (``config.nth_guest`` for each)."""
    from pbotvm.host.machines.ptyvm import PtyGuest
    from pbotvm.host.machines.qemu import QemuGuest, guest_paths, with_sockets

    machine = settings.machines.resolve()
    guests: list[Guest] = []
    for index in range(count):
        lines = nth_guest(machine, index)
        if pty:
            guests.append(PtyGuest.of(settings, lines))
        else:
            paths = guest_paths(settings.state_dir, index)
            guests.append(QemuGuest(with_sockets(lines, paths), paths, os.environ))
    return guests


async def _up(guests: list[Guest], pty: bool, say: Say) -> list[str]:
    from pbotvm.host import warmup
    from pbotvm.image.build import build
    from pbotvm.provision.profiles import MINIMAL

    async def nothing(_: Machine) -> None:
        pass  # the PTY VM runs this host's toolchains, warm already

    image = None if pty else await asyncio.to_thread(build, MINIMAL)

    async def each(guest: Guest) -> str:
        def said(line: str) -> None:
            say(f"{guest.lines.name}: {line}")

        warm = nothing if image is None else warmup.for_image(image, said)
        return f"{guest.lines.name}: {await guest.up(image, warm, said)}"

    return list(await asyncio.gather(*(each(guest) for guest in guests)))


def run_demo(pty: bool, count: int) -> int:
    if os.geteuid() != 0:
        raise click.ClickException("the guest runs as root (it drops to user vm) and QEMU "
                                   "needs its devices; run as root")
    with tempfile.TemporaryDirectory(prefix="pbotvm-demo-") as tmp:
        env = {**os.environ, "PBOTVM_STATE_DIR": str(Path(tmp, "state")),
               "PBOTVM_SERVER": str(_port(DEFAULT_SERVER_PORT)),
               "PBOTVM_SERIAL": str(_port(DEFAULT_SERIAL)),
               "PBOTVM_HEART": str(_port(DEFAULT_HEART))}
        for told in ("PBOTVM_MACHINES", "PBOTVM_REVERT_COMMAND"):
            env.pop(told, None)
        if not pty:  # the lines are where `vm up` records them, on Unix sockets
            del env["PBOTVM_SERIAL"], env["PBOTVM_HEART"]
        settings = HostSettings.from_env(env)
        guests = _guests(settings, pty, count)
        if pty and count > 1:  # the PTY VMs' lines, for vm-server: a machines file
            machines = Path(tmp, "vm-exec.json")
            machines.write_text(json.dumps({"machines": {"pbot-vm": {"guests": [
                {"serial": guest.lines.serial, "heart": guest.lines.heart, "cid": 0}
                for guest in guests]}}}))
            env["PBOTVM_MACHINES"] = str(machines)
        what = "PTY VM" if pty else "QEMU guest"
        steps = "" if pty else " (image, boot, warm-up, snapshot)"
        click.echo(f"Starting a pool of {count} {what}s{steps} ..." if count > 1
                   else f"Starting the {what}{steps} ...")
        start = time.monotonic()

        def say(line: str) -> None:
            click.echo(f"  {line}")

        try:
            for line in asyncio.run(_up(guests, pty, say)):
                click.echo(f"Up: {line}")
        except (GuestError, OSError) as e:
            for guest in guests:
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
            for code in REQUESTS:
                _show(env, [code])
            if count > 1:  # two at once: each on a guest of its own
                _show(env, [f"-lang=sh sleep 1; echo {who} done" for who in ("alice", "bob")])
            if not pty:
                for code in REVERT_REQUESTS:
                    _show(env, [code])
        finally:
            procs.terminate(server)
            for guest in guests:
                guest.down()
        click.echo("\nStopped.")
    return 0


def _show(env: Mapping[str, str], codes: list[str]) -> None:
    """Ask ``codes`` at once (one nick each) and print each exchange with its time."""
    start = time.monotonic()
    with ThreadPoolExecutor(len(codes)) as pool:
        replies = list(pool.map(lambda code: _ask(env, code), codes))
    ms = (time.monotonic() - start) * 1000
    for code, reply in zip(codes, replies, strict=True):
        click.echo(f"\n<tester> cc {code}\n<pbot>   {reply}")
    click.echo(f"   ({ms:.0f} ms{' for both' if len(codes) > 1 else ''})")


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
