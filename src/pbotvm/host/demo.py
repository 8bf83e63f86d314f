"""``pbotvm demo``: the pipeline answering a few vm-client requests, as PBot would send them.

By default the real guest (image built and cached, booted under QEMU, snapshot 1 saved); with
``--pty`` the local PTY stand-in, which starts in a second.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

import click

from pbotvm.config import DEFAULT_HEART, DEFAULT_SERIAL, DEFAULT_SERVER_PORT
from tests.support.stack import LocalStack, QemuStack, port_free

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


def _port(default: int) -> int | None:
    return default if port_free(default) else None


def run_demo(pty: bool) -> int:
    if os.geteuid() != 0:
        raise click.ClickException("the guest runs as root (it drops to user vm) and QEMU "
                                   "needs its devices; run as root")
    with tempfile.TemporaryDirectory(prefix="pbotvm-demo-") as tmp:
        ports: dict[str, Any] = {"serial": _port(DEFAULT_SERIAL), "heart": _port(DEFAULT_HEART),
                                 "server": _port(DEFAULT_SERVER_PORT)}
        stack: LocalStack
        if pty:
            stack = LocalStack(Path(tmp), **ports)
            what, requests = "the PTY VM", REQUESTS
        else:
            stack = QemuStack(Path(tmp), progress=True, **ports)
            what = "the QEMU guest (image, boot, warm-up, snapshot)"
            requests = REQUESTS + REVERT_REQUESTS
        click.echo(f"Starting {what} on {stack.devices()}, and vm-server on port "
                   f"{stack.server} ...")
        start = time.monotonic()
        try:
            stack.start(timeout=120)
        except RuntimeError as e:
            stack.stop()
            raise click.ClickException(str(e).splitlines()[0]) from None
        click.echo(f"Ready in {time.monotonic() - start:.0f} s.")
        try:
            for code in requests:
                start = time.monotonic()
                reply = stack.ask(code)
                ms = (time.monotonic() - start) * 1000
                click.echo(f"\n<tester> cc {code}\n<pbot>   {reply}   ({ms:.0f} ms)")
        finally:
            stack.stop()
        click.echo("\nStopped.")
    return 0
