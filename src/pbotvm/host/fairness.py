"""Fair shares between requesters (nicks, or channels without one): the one served longest
ago goes next.

vm-server shares two things this way: a machine's turns (``turns``) and its worker
processes (``workers``). Each requester's items wait in the order they came; of the
requesters with an item ready, the next is the one served longest ago, or never (those in
the order they came). So nobody waits behind more than one item of each other requester,
however many another has queued: with one queue for all, two 8 s requests of one nick made
another's wait out its 10 s and be refused, and 28 slow edits of one nick held up everyone.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Container, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class FairQueue(Generic[T]):
    """Items waiting per requester, taken as the module says."""

    def __init__(self) -> None:
        self._waiting: dict[str, deque[T]] = {}  # in the order the requesters came
        self._served: dict[str, int] = {}  # when each requester still around was served
        self._turns = 0

    def put(self, who: str, item: T) -> None:
        self._waiting.setdefault(who, deque()).append(item)

    def discard(self, who: str, item: T) -> bool:
        """Take ``item`` out if it still waits; whether it did."""
        queue = self._waiting.get(who)
        if queue is None or item not in queue:
            return False
        queue.remove(item)
        if not queue:
            del self._waiting[who]
        return True

    def take(self, busy: Container[str] = (),
             can: Callable[[T], bool] | None = None) -> tuple[str, T] | None:
        """The next item, of a requester not in ``busy`` whose next item ``can`` be served
        now (a request for a guest that is taken waits); None when there is none."""
        ready = [who for who, queue in self._waiting.items()
                 if who not in busy and (can is None or can(queue[0]))]
        if not ready:
            return None
        who = min(ready, key=lambda name: self._served.get(name, -1))
        queue = self._waiting[who]
        item = queue.popleft()
        if not queue:
            del self._waiting[who]
        self._served[who] = self._turns
        self._turns += 1
        return who, item

    def done(self, who: str) -> None:
        """``who``'s item is over: a requester with nothing left waiting is forgotten (its
        next item counts as a newcomer's, so the table does not grow with every nick)."""
        if who not in self._waiting:
            self._served.pop(who, None)

    def unserve(self, who: str) -> None:
        """``who``'s last turn came to nothing: it ranks as never served."""
        self._served.pop(who, None)

    def drain(self) -> Iterator[T]:
        """Every waiting item, taken out."""
        waiting, self._waiting = self._waiting, {}
        for queue in waiting.values():
            yield from queue

    def __bool__(self) -> bool:
        return bool(self._waiting)
