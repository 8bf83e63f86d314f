"""Fair turns between nicks: in-process, then through vm-client on the PTY stack."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from pbotvm.host.machines.turns import Turns
from tests.support.stack import LocalStack


def served(holder: str, waiting: list[str], cancel: tuple[int, ...] = ()) -> list[str]:
    """Who has the turn, in order: ``holder`` first, then those who queued in ``waiting``'s
    order while it held the turn (the ones at indices ``cancel`` give up while waiting)."""
    async def scenario() -> list[str]:
        turns = Turns()
        order: list[str] = []

        async def request(who: str) -> None:
            await turns.take(who)
            order.append(who)
            await asyncio.sleep(0)
            turns.release()

        await turns.take(holder)
        order.append(holder)
        tasks = [asyncio.create_task(request(who)) for who in waiting]
        await asyncio.sleep(0)  # all queued
        for index in cancel:
            tasks[index].cancel()
        turns.release()
        await asyncio.gather(*tasks, return_exceptions=True)
        assert turns._holder is None and not turns._waiting
        return order

    return asyncio.run(scenario())


def test_another_nick_goes_before_the_holders_next_request() -> None:
    assert served("A", ["A", "B"]) == ["A", "B", "A"]


def test_the_turn_goes_to_the_nick_served_longest_ago() -> None:
    # B and C were never served: they go first, in the order they came; then A, B, A.
    assert served("A", ["A", "B", "A", "C", "B"]) == ["A", "B", "C", "A", "B", "A"]
    assert served("A", ["B", "C", "B", "B"]) == ["A", "B", "C", "B", "B"]


def test_one_nick_alone_is_served_in_order() -> None:
    assert served("A", ["A", "A"]) == ["A", "A", "A"]


def test_a_request_that_gives_up_leaves_the_others_their_places() -> None:
    assert served("A", ["B", "C", "B"], cancel=(0,)) == ["A", "C", "B"]
    assert served("A", ["B", "C"], cancel=(0, 1)) == ["A"]


def test_a_turn_handed_over_as_its_request_gives_up_passes_on() -> None:
    async def scenario() -> list[str]:
        turns = Turns()
        order: list[str] = []
        await turns.take("A")
        b = asyncio.create_task(turns.take("B"))
        c = asyncio.create_task(turns.take("C"))
        await asyncio.sleep(0)
        turns.release()  # B's now...
        b.cancel()  # ...but it is cancelled before it runs
        await asyncio.gather(b, return_exceptions=True)
        await c
        order.append("C")
        turns.release()
        assert turns._holder is None
        return order

    assert asyncio.run(scenario()) == ["C"]


@pytest.mark.root
@pytest.mark.slow
def test_two_long_requests_of_one_nick_do_not_starve_another(stack: LocalStack) -> None:
    # The case, at the stack's 5 s time-out: nick A's two requests of 3.5 s, then
    # nick B's. A single queue served A twice and B, waiting 5 s, was told "busy".
    start = time.monotonic()

    def ask(code: str, nick: str) -> tuple[str, float]:
        reply = stack.ask(code, nick=nick)
        return reply, time.monotonic() - start

    with ThreadPoolExecutor(3) as pool:
        first = pool.submit(ask, "-lang=sh sleep 3.5; echo A1", "A")
        time.sleep(0.2)
        second = pool.submit(ask, "-lang=sh sleep 3.5; echo A2", "A")
        time.sleep(0.2)
        other = pool.submit(ask, "-lang=sh echo B", "B")
        (a1, a1_at), (a2, a2_at), (b, b_at) = first.result(), second.result(), other.result()
    assert (a1, b, a2) == ("A1", "B", "A2")
    assert a1_at < b_at < a1_at + 1 < a2_at
