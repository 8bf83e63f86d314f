"""Whose request has a machine next: one request at a time, the turns shared out fairly
between the people asking (``fairness``: the nick served longest ago goes next).
"""

from __future__ import annotations

import asyncio

from pbotvm.host.fairness import FairQueue


class Turns:
    """A lock whose waiters are served by ``FairQueue``'s rule."""

    def __init__(self) -> None:
        self._holder: str | None = None  # who has the turn; None: nobody
        self._waiting: FairQueue[asyncio.Future[None]] = FairQueue()

    async def take(self, who: str) -> None:
        """Until ``who`` has the turn; cancelled (a time-out), it has not."""
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.put(who, turn)
        if self._holder is None:
            self._pass_on()
        try:
            await turn
        except asyncio.CancelledError:
            if turn.cancelled():
                self._waiting.discard(who, turn)
            else:  # handed over just as it was cancelled: pass it on
                self.release()
            raise

    def release(self) -> None:
        """The turn is over: the next request has it, if one waits."""
        assert self._holder is not None
        self._waiting.done(self._holder)
        self._holder = None
        self._pass_on()

    def _pass_on(self) -> None:
        while (taken := self._waiting.take()) is not None:
            who, turn = taken
            if turn.cancelled():  # its request gave up and has yet to take it out
                self._waiting.done(who)
                continue
            self._holder = who
            turn.set_result(None)
            return
