"""The last hour of a guest's request times, and their percentiles."""

from __future__ import annotations

from pbotvm.host.machines.latencies import Latencies, percentile


def test_percentiles_are_nearest_rank() -> None:
    values = [float(n) for n in range(1, 21)]  # 1..20
    assert (percentile(values, 50), percentile(values, 95)) == (10.0, 19.0)
    assert percentile([0.3], 50) == percentile([0.3], 95) == 0.3
    assert percentile([], 50) is None


def test_only_the_last_window_counts() -> None:
    times = Latencies(window=3600)
    assert times.percentiles(0.0) == (None, None)
    times.add(9.0, now=0.0)  # an hour and more before the others
    for n in range(1, 21):
        times.add(n / 100, now=3600.0 + n)
    assert times.percentiles(3620.0) == (0.1, 0.19)
    assert times.percentiles(3600.0 + 20 + 3600 + 1) == (None, None)


def test_a_flood_keeps_the_newest_times_only() -> None:
    times = Latencies(limit=3)
    for seconds in (5.0, 5.0, 1.0, 2.0, 3.0):
        times.add(seconds, now=0.0)
    assert times.percentiles(0.0) == (2.0, 3.0)
