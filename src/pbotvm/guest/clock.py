"""Keep the guest clock near the host's: a reverted snapshot wakes up with an old time.

Each request carries the host's time (``date``); like upstream HEAD, the clock is set only
when it is more than a minute off, not on every request as in 2023.
"""

from __future__ import annotations

import time

MAX_DRIFT = 60.0


def needs_setting(now: float, date: int, max_drift: float = MAX_DRIFT) -> bool:
    """True when the clock is off by more than ``max_drift``; ``date`` 0 means unknown."""
    return date > 0 and abs(now - date) > max_drift


def sync(date: int) -> float | None:
    """Set CLOCK_REALTIME to ``date`` if it has drifted; returns the old time when it did."""
    now = time.time()
    if not needs_setting(now, date):
        return None
    time.clock_settime(time.CLOCK_REALTIME, float(date))
    return now
