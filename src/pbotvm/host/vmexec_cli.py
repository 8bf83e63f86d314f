"""``vm-exec``: the vm-exec pipeline as a shell tool (``vm-exec -lang=sh echo hello``)."""

from __future__ import annotations

import asyncio
import logging
import os
import sys

import click

from pbotvm.config import ConfigError, HostSettings
from pbotvm.host.machines.backends import with_recorded_guests
from pbotvm.host.request import vmexec


@click.command(context_settings={"ignore_unknown_options": True,
                                 "allow_interspersed_args": False,
                                 "help_option_names": ["--help"]})
@click.argument("code", nargs=-1, type=click.UNPROCESSED)
def main(code: tuple[str, ...]) -> None:
    """Run CODE (vm-exec options, language options and code, or one JSON object) in the guest.

    \b
    Examples:
      vm-exec -lang=sh echo hello
      vm-exec '{"nick":"me","channel":"#c","code":"-lang=python3 print(6*7)"}'

    Settings come from PBOTVM_* variables and the machines file (see README), else the
    guest `pbotvm vm up` started in the state directory is the default machine. -vm-serial,
    -vm-cid and -vm-vport are honoured only with PBOTVM_ALLOW_OVERRIDES=1.
    """
    logging.basicConfig(level=logging.WARNING, format="vm-exec: %(message)s")
    if not code:
        raise click.UsageError("no code given")
    try:
        settings, _ = with_recorded_guests(HostSettings.from_env(), os.environ)
    except ConfigError as e:
        raise click.ClickException(str(e)) from None
    answer = asyncio.run(vmexec.run(" ".join(code), settings))
    click.echo(answer.text)
    sys.exit(answer.status)
