"""A machine's guests, and which request has which: each request is placed on a free guest
of its machine that beats, the waiting ones taken by ``fairness``'s rule (the nick served
longest ago goes next), each to the least busy host (busy guests per the host's weight),
then to its guest free the longest.

A machine is a pool of one guest or more (``config.Machine.members``); each guest serves one
request at a time (its serial line carries one conversation). A guest that serves, reverts or
has no heartbeat is out of rotation and the others serve; only when no guest of the machine
beats does a request go to a silent one, which then answers that the machine is resetting and
has it healed. A request with a persist-key goes to the guest the key names (a hash of it):
the key's files live on that guest's disk, so they follow the key whichever guest would be
free.
"""

from __future__ import annotations

import asyncio
import functools
import time
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pbotvm.config import LOCAL_HOST
from pbotvm.host.fairness import FairQueue
from pbotvm.host.machines.machine_state import MachineState

# Seconds between looks at the guests while a request waits: a guest's heartbeat coming back
# frees no turn by itself.
RECHECK = 0.5


@dataclass(eq=False)
class _Waiter:
    turn: asyncio.Future[MachineState]
    pin: MachineState | None  # the guest a persist-key names


class Pool:
    def __init__(self, name: str, guests: Sequence[MachineState],
                 weights: Mapping[str, float] | None = None) -> None:
        self.name = name
        self.guests = list(guests)
        self.weights = weights or {}
        self._taken: dict[MachineState, str] = {}  # guest -> who has it
        self._free_since = {guest: 0.0 for guest in self.guests}
        self._waiting: FairQueue[_Waiter] = FairQueue()

    def pinned(self, key: str) -> MachineState:
        return self.guests[zlib.crc32(key.encode()) % len(self.guests)]

    def taken(self, guest: MachineState) -> bool:
        return guest in self._taken

    async def take(self, who: str, timeout: float,
                   key: str | None = None) -> MachineState | None:
        """A guest for ``who``'s request (the one ``key`` names, if given) within
        ``timeout`` seconds; None when none came free. Give it back with ``release``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        waiter = _Waiter(loop.create_future(), self.pinned(key) if key else None)
        self._waiting.put(who, waiter)
        try:
            while not waiter.turn.done():
                self._dispatch()
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                await asyncio.wait([waiter.turn], timeout=min(remaining, RECHECK))
        finally:
            if not waiter.turn.done():
                waiter.turn.cancel()
                self._waiting.discard(who, waiter)
            elif asyncio.current_task().cancelling():  # type: ignore[union-attr]
                self.release(waiter.turn.result())  # handed over just as it gave up
        return None if waiter.turn.cancelled() else waiter.turn.result()

    def came_to_nothing(self, who: str) -> None:
        """``who``'s turn was lost with its guest: its request, taken again, ranks as never
        served. Otherwise every nick whose request ended (and counts as new again) goes
        before it, and with enough of them it waits out its time."""
        self._waiting.unserve(who)

    def seize(self, guest: MachineState, who: str) -> bool:
        """Take ``guest`` at once if it is free (vm-server healing it); whether it was."""
        if guest in self._taken:
            return False
        self._taken[guest] = who
        return True

    def release(self, guest: MachineState) -> None:
        """The request (or the revert after it) is done with ``guest``."""
        who = self._taken.pop(guest)
        self._waiting.done(who)
        self._free_since[guest] = time.monotonic()
        self._dispatch()

    def _dispatch(self) -> None:
        while True:
            free = [guest for guest in self.guests if guest not in self._taken]
            beating = [guest for guest in free if guest.heart.alive()]
            usable = beating or ([] if any(g.heart.alive() for g in self.guests) else free)
            taken = self._waiting.take(can=functools.partial(_can_have, usable=usable))
            if taken is None:
                return
            who, waiter = taken
            if waiter.turn.done():  # it gave up and has yet to take itself out
                self._waiting.done(who)
                continue
            # Unpinned: on the least busy host, the guest free the longest, so that every
            # guest is used in turn.
            guest = waiter.pin or min(usable, key=self._placement)
            self._taken[guest] = who
            waiter.turn.set_result(guest)

    def _placement(self, guest: MachineState) -> tuple[float, float]:
        host = _host(guest)
        busy = sum(1 for taken in self._taken if _host(taken) == host)
        return busy / self.weights.get(host, 1.0), self._free_since[guest]


def _host(guest: MachineState) -> str:
    return guest.machine.uri or LOCAL_HOST


def _can_have(waiter: _Waiter, usable: list[MachineState]) -> bool:
    """Whether ``waiter`` can be given one of the ``usable`` guests now (or is done)."""
    if waiter.turn.done():
        return True
    return waiter.pin in usable if waiter.pin is not None else bool(usable)
