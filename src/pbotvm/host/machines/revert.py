"""Reverting a machine to its clean snapshot.

Either libvirt (``PBOTVM_LIBVIRT_URI``, snapshot ``PBOTVM_SNAPSHOT`` of the machine's domain:
``loadvm`` through the QEMU monitor, else libvirt's snapshot revert) or, when
``PBOTVM_REVERT_COMMAND`` is set, that command (an argv, never a shell) with ``PBOTVM_DOMAIN``,
``PBOTVM_SNAPSHOT``, ``PBOTVM_MACHINE`` (its name) and ``PBOTVM_MACHINE_SERIAL`` (its serial
socket, else its serial port) in its environment. ``pbotvm vm revert`` and ``pbotvm pty ctl
revert`` read it and refuse to revert a VM that serves another one: one revert command serves
every machine, and a request for one machine must never reset another.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time

from pbotvm.config import HostSettings, Machine

log = logging.getLogger("pbotvm.revert")

COMMAND_TIMEOUT = 300.0
MACHINE_SERIAL_VAR = "PBOTVM_MACHINE_SERIAL"


class RevertError(RuntimeError):
    pass


def _libvirt_revert(uri: str, domain: str, snapshot: str) -> None:
    # Heavy (libvirt-python); only the server's revert path needs it.
    from pbotvm.host.machines.libvirt_domain import LibvirtError, revert

    try:
        how = revert(uri, domain, snapshot)
    except LibvirtError as e:
        raise RevertError(str(e)) from None
    log.info("%s: reverted with %s", domain, how)


async def _command_revert(argv: list[str], machine: Machine, snapshot: str) -> None:
    env = {**os.environ, "PBOTVM_DOMAIN": machine.domain, "PBOTVM_SNAPSHOT": snapshot,
           "PBOTVM_MACHINE": machine.name,
           MACHINE_SERIAL_VAR: machine.serial_socket or str(machine.serial)}
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, env=env, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    except OSError as e:
        raise RevertError(f"revert command {argv[0]}: {e.strerror or e}") from None
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), COMMAND_TIMEOUT)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise RevertError(f"revert command timed out after {COMMAND_TIMEOUT:.0f} s") from None
    if proc.returncode:
        tail = out.decode(errors="replace").strip().splitlines()[-1:] or [""]
        raise RevertError(f"revert command exited {proc.returncode}: {tail[0]}")


async def revert(machine: Machine, settings: HostSettings) -> float:
    """Revert ``machine``; returns the seconds it took. Raises RevertError."""
    start = time.monotonic()
    if settings.revert_command:
        await _command_revert(settings.revert_command, machine, settings.snapshot)
    else:
        await asyncio.to_thread(_libvirt_revert, settings.libvirt_uri, machine.domain,
                                settings.snapshot)
    return time.monotonic() - start
