"""The last hour of a guest's request times, for the p50 and p95 ``pbotvm status`` shows:
vm-server keeps the times in memory and writes the two percentiles into the guest's status
file, which so stays a few hundred bytes however busy the guest is.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence

WINDOW = 3600.0
# A flood's oldest times go first past this many: the memory and the sort stay bounded.
LIMIT = 10000


def percentile(ordered: Sequence[float], q: float) -> float | None:
    """The nearest-rank ``q``-th percentile of values in ascending order; None for none."""
    if not ordered:
        return None
    return ordered[max(math.ceil(q / 100 * len(ordered)), 1) - 1]


class Latencies:
    """Seconds each request took, with when it ended (``time.monotonic()``), for ``window``
    seconds."""

    def __init__(self, window: float = WINDOW, limit: int = LIMIT) -> None:
        self.window = window
        self._times: deque[tuple[float, float]] = deque(maxlen=limit)

    def add(self, seconds: float, now: float) -> None:
        self._times.append((now, seconds))

    def percentiles(self, now: float) -> tuple[float | None, float | None]:
        """p50 and p95 of the window ending ``now``."""
        while self._times and self._times[0][0] < now - self.window:
            self._times.popleft()
        ordered = sorted(seconds for _, seconds in self._times)
        return percentile(ordered, 50), percentile(ordered, 95)
