"""One guest VM, whatever runs it: the one interface vm-server, vm-watchdog, the CLI and the
demo use.

A guest is reached over its lines (``lines``: a ``config.Machine``, where its serial and
heartbeat devices and its vsock are) and run by a backend: QEMU that ``pbotvm vm up`` started
(``qemu``), a libvirt domain (``libvirt_domain``) or the local PTY stand-in (``ptyvm``). Each
brings the guest up from an image (boot, the caller's warm step, snapshot) and down, reverts
it to its snapshot (fast: ``loadvm`` into the running VM; slow: the VM restarted into it), says
how much CPU it has used (vm-watchdog) and whether its VM runs (the backend's health; the
guest's own is its heartbeat). A VM someone else runs is reverted by the operator's command
(``PBOTVM_REVERT_COMMAND``), which then stands in for its backend's revert.

``backends.guest_for`` picks a machine's backend.
"""

from __future__ import annotations

import os
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Coroutine
from typing import Any, ClassVar

from pbotvm import procs
from pbotvm.config import Machine
from pbotvm.image.build import Image

# What is done to a booted guest before its snapshot (``host.warmup``); WarmUpFailed stops it.
Warm = Callable[[Machine], Coroutine[Any, Any, None]]
Say = Callable[[str], None]


class GuestError(RuntimeError):
    """The backend could not do it; the message is one line for the operator."""


class WarmUpFailed(RuntimeError):
    """A new guest did not answer as it should before its snapshot; the message says how."""


class Guest(ABC):
    """A guest and the backend that runs it."""

    kind: ClassVar[str]

    def __init__(self, lines: Machine) -> None:
        self.lines = lines

    @abstractmethod
    async def up(self, image: Image | None, warm: Warm, say: Say) -> str:
        """Boot ``image`` (the PTY stand-in has none: it runs this host's toolchains), ``warm``
        the guest, snapshot it; one line on how it went."""

    @abstractmethod
    def down(self) -> bool:
        """Stop the VM and remove what ``up`` made; False when none was up."""

    @abstractmethod
    async def revert(self, *, slow: bool = False) -> str:
        """Back to the snapshot; how it was done, in a few words. GuestError when it
        cannot be."""

    @abstractmethod
    def cpu_seconds(self) -> float:
        """CPU time the VM has used so far; GuestError when it does not run."""

    @abstractmethod
    def running(self) -> bool:
        """Whether the VM runs."""

    def describe(self) -> str:
        """The backend and the guest it runs, for log lines."""
        return f"{self.kind} {self.lines.name}"


def process_tree_seconds(pid: int, what: str) -> float:
    """CPU time of a process and everything below it (QEMU; the PTY VM and its guest)."""
    ticks = procs.tree_cpu_ticks(procs.stat_table(), pid)
    if ticks is None:
        raise GuestError(f"{what} pid {pid} is gone")
    return ticks / os.sysconf("SC_CLK_TCK")


async def timed_revert(guest: Guest, *, slow: bool = False) -> tuple[str, float]:
    """``guest.revert``, and the seconds it took."""
    start = time.monotonic()
    how = await guest.revert(slow=slow)
    return how, time.monotonic() - start
