"""A guest reverted by the operator's command (``PBOTVM_REVERT_COMMAND``), an argv, never a
shell: a VM someone else runs, or one of ours reverted the operator's way.

The command gets ``PBOTVM_DOMAIN``, ``PBOTVM_SNAPSHOT``, ``PBOTVM_MACHINE`` (the machine's
name) and ``PBOTVM_MACHINE_SERIAL`` (its serial socket, else its serial port) in its
environment. ``pbotvm vm revert`` and ``pbotvm pty ctl revert`` read the last one and refuse to
revert a VM that serves another machine: one revert command serves every machine, and a
request for one machine must never reset another.
"""

from __future__ import annotations

import asyncio
import os

from pbotvm.config import Machine
from pbotvm.host.machines.guest import Guest, GuestError, Say, Warm
from pbotvm.image.build import Image

COMMAND_TIMEOUT = 300.0
MACHINE_SERIAL_VAR = "PBOTVM_MACHINE_SERIAL"


async def run_command(argv: list[str], machine: Machine, snapshot: str) -> None:
    """Run the revert command for ``machine``; GuestError when it fails."""
    env = {**os.environ, "PBOTVM_DOMAIN": machine.domain, "PBOTVM_SNAPSHOT": snapshot,
           "PBOTVM_MACHINE": machine.name,
           MACHINE_SERIAL_VAR: machine.serial_socket or str(machine.serial)}
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, env=env, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    except OSError as e:
        raise GuestError(f"revert command {argv[0]}: {e.strerror or e}") from None
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), COMMAND_TIMEOUT)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise GuestError(f"revert command timed out after {COMMAND_TIMEOUT:.0f} s") from None
    if proc.returncode:
        tail = out.decode(errors="replace").strip().splitlines()[-1:] or [""]
        raise GuestError(f"revert command exited {proc.returncode}: {tail[0]}")


class CommandGuest(Guest):
    """Reverted by the command; the rest, if anything, by the backend found for its lines
    (``inner``)."""

    kind = "command"

    def __init__(self, lines: Machine, argv: list[str], snapshot: str,
                 inner: Guest | None) -> None:
        super().__init__(lines)
        self.argv = argv
        self.snapshot = snapshot
        self.inner = inner

    def _backend(self) -> Guest:
        if self.inner is None:
            raise GuestError(f"{self.lines.name} is run by someone else: only its revert "
                             "command is known here")
        return self.inner

    async def up(self, image: Image | None, warm: Warm, say: Say) -> str:
        return await self._backend().up(image, warm, say)

    def down(self) -> bool:
        return self._backend().down()

    async def revert(self, *, slow: bool = False) -> str:
        await run_command(self.argv, self.lines, self.snapshot)
        return f"the revert command {os.path.basename(self.argv[0])}"

    def cpu_seconds(self) -> float:
        return self._backend().cpu_seconds()

    def running(self) -> bool:
        return self.inner is None or self.inner.running()

    def describe(self) -> str:
        return self.inner.describe() if self.inner is not None else super().describe()
