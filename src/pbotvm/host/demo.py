"""``pbotvm demo``: the local stack answering a few vm-client requests, as PBot would send them."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import click

from pbotvm.config import DEFAULT_HEART, DEFAULT_SERIAL, DEFAULT_SERVER_PORT
from pbotvm.host.stack import LocalStack, port_free

REQUESTS = [
    "-lang=sh echo hello from $(uname -s) as $(whoami)",
    "-lang=python3 print(sum(range(10)))",
    "-lang=perl -stdin=world print 'hello ', scalar <STDIN>",
    "-lang=bash -args 'a b' c for x in \"$@\"; do echo \"[$x]\"; done",
    '-lang=sh echo "out"; echo "err" >&2; exit 3',
    "-lang=nosuchlang 1",
]


def _port(default: int) -> int | None:
    return default if port_free(default) else None


def run_demo() -> int:
    if os.geteuid() != 0:
        raise click.ClickException("the PTY VM runs the guest as root (it drops to user vm); "
                                   "run as root")
    with tempfile.TemporaryDirectory(prefix="pbotvm-demo-") as tmp:
        stack = LocalStack(Path(tmp), serial=_port(DEFAULT_SERIAL), heart=_port(DEFAULT_HEART),
                           server=_port(DEFAULT_SERVER_PORT))
        click.echo(f"Starting the PTY VM (serial {stack.serial}, heartbeat {stack.heart}) and "
                   f"vm-server (port {stack.server}) ...")
        with stack:
            for code in REQUESTS:
                start = time.monotonic()
                reply = stack.ask(code)
                ms = (time.monotonic() - start) * 1000
                click.echo(f"\n<tester> cc {code}\n<pbot>   {reply}   ({ms:.0f} ms)")
        click.echo("\nStopped.")
    return 0
