"""Whose request has a machine next: turns shared out fairly between the people asking.

A machine serves one request at a time. Waiting requests queue per requester (the nick, or the
channel for a request without one), each requester's in the order they came. When the machine
is free again, the turn goes round the requesters in the order they began waiting, and never
to the one just served while someone else waits. With one queue for all (a FIFO lock), two 8 s
requests of one nick made another's request wait out its 10 s and be refused.
"""

from __future__ import annotations

import asyncio
from collections import deque


class Turns:
    """A lock with a queue per requester, handed round them as the module says."""

    def __init__(self) -> None:
        self._held = False
        self._last: str | None = None  # who had the turn last
        # Requesters with waiting requests, in the order their turns come (dicts keep it).
        self._waiting: dict[str, deque[asyncio.Future[None]]] = {}

    async def take(self, who: str) -> None:
        """Until ``who`` has the turn; cancelled (a time-out), it has not."""
        if not self._held:
            self._held = True
            self._last = who
            return
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(who, deque()).append(turn)
        try:
            await turn
        except asyncio.CancelledError:
            if turn.cancelled():
                self._drop(who, turn)
            else:  # handed over just as it was cancelled: pass it on
                self.release()
            raise

    def release(self) -> None:
        """The turn is over: the next requester's oldest request has it, if one waits."""
        while True:
            who = next((w for w in self._waiting if w != self._last),
                       next(iter(self._waiting), None))
            if who is None:
                self._held = False
                return
            queue = self._waiting.pop(who)
            turn = queue.popleft()
            if queue:
                self._waiting[who] = queue  # back in line, after those already waiting
            if not turn.cancelled():  # else its request gave up and has yet to drop it
                self._last = who
                turn.set_result(None)
                return

    def _drop(self, who: str, turn: asyncio.Future[None]) -> None:
        queue = self._waiting.get(who)
        if queue is not None and turn in queue:
            queue.remove(turn)
            if not queue:
                del self._waiting[who]
