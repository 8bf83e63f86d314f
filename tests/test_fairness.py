"""The one rule vm-server shares machines and workers by (``host.fairness``)."""

from __future__ import annotations

from pbotvm.host.fairness import FairQueue


def order(queue: FairQueue[int], busy: set[str] | None = None) -> list[tuple[str, int]]:
    taken = []
    while (item := queue.take(busy or set())) is not None:
        taken.append(item)
    return taken


def test_the_requester_served_longest_ago_goes_next() -> None:
    queue: FairQueue[int] = FairQueue()
    for who, item in [("a", 1), ("a", 2), ("a", 3), ("b", 4), ("c", 5), ("b", 6)]:
        queue.put(who, item)
    assert order(queue) == [("a", 1), ("b", 4), ("c", 5), ("a", 2), ("b", 6), ("a", 3)]


def test_a_busy_requester_waits_and_keeps_its_place() -> None:
    queue: FairQueue[int] = FairQueue()
    for who, item in [("a", 1), ("a", 2), ("b", 3)]:
        queue.put(who, item)
    assert queue.take() == ("a", 1)
    assert order(queue, busy={"a"}) == [("b", 3)]
    assert queue.take(busy={"a"}) is None and queue.take() == ("a", 2)


def test_a_requester_with_nothing_left_is_forgotten() -> None:
    queue: FairQueue[int] = FairQueue()
    queue.put("a", 1)
    assert queue.take() == ("a", 1)
    queue.done("a")
    queue.put("a", 2)
    queue.put("b", 3)
    assert order(queue) == [("a", 2), ("b", 3)]  # both newcomers: in the order they came
    queue.put("a", 4)
    queue.discard("a", 4)
    assert not queue and list(queue.drain()) == []
