"""vm-server's worker processes (``host.workers``): budgets, failures, fair turns. Real
processes, no root."""

from __future__ import annotations

import asyncio
import operator
import os
import subprocess
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest

from pbotvm.host.workers import Failed, OverBudget, Workers
from tests.conftest import processes_running, until

T = TypeVar("T")


def with_workers(test: Callable[[Workers], Awaitable[T]], size: int = 2) -> T:
    async def main() -> T:
        workers = Workers(size=size)
        await workers.start()
        try:
            return await test(workers)
        finally:
            await workers.close()

    return asyncio.run(main())


def test_a_job_runs_in_another_process() -> None:
    async def test(workers: Workers) -> tuple[int, int]:
        return await workers.run("a", 5, operator.add, 2, 3), await workers.run("a", 5, os.getpid)

    total, pid = with_workers(test)
    assert total == 5 and pid != os.getpid()


def test_a_job_past_its_budget_is_killed_with_what_it_started() -> None:
    async def test(workers: Workers) -> float:
        start = time.monotonic()
        with pytest.raises(OverBudget):
            # A child of the worker (as astyle is) must go too.
            await workers.run("a", 0.5, subprocess.run, ["sleep", "1000.5"])
        took = time.monotonic() - start
        assert until(lambda: not processes_running("sleep", "1000.5"), 5)
        assert await workers.run("a", 5, operator.add, 1, 1) == 2  # a new worker took over
        return took

    assert with_workers(test) < 3


@pytest.mark.parametrize(("function", "args", "message"), [
    (int, ("x",), "int: ValueError: invalid literal for int() with base 10: 'x'"),
    (bytearray, (2**31,), "bytearray: out of memory"),  # the worker's address space is bounded
    (os._exit, (3,), "died"),
])
def test_a_failing_job_is_one_line_and_the_pool_goes_on(function: Callable[..., object],
                                                        args: tuple[object, ...],
                                                        message: str) -> None:
    async def test(workers: Workers) -> None:
        with pytest.raises(Failed) as failure:
            await workers.run("a", 5, function, *args)
        assert message in str(failure.value) and "\n" not in str(failure.value)
        assert await workers.run("a", 5, operator.add, 1, 1) == 2

    with_workers(test)


def test_one_requesters_flood_leaves_the_others_a_worker() -> None:
    async def test(workers: Workers) -> tuple[float, float]:
        start = time.monotonic()
        flood = [asyncio.create_task(workers.run("flood", 5, time.sleep, 0.4))
                 for _ in range(6)]
        await asyncio.sleep(0.1)
        asked = time.monotonic()
        await workers.run("other", 5, operator.add, 1, 1)
        waited = time.monotonic() - asked
        await asyncio.gather(*flood)
        return waited, time.monotonic() - start

    waited, flooded = with_workers(test)
    assert waited < 0.3
    assert flooded >= 6 * 0.4  # the flood's jobs ran one after another


def test_waiting_requesters_take_turns() -> None:
    async def test(workers: Workers) -> list[str]:
        order: list[str] = []

        async def job(name: str) -> None:
            await workers.run(name, 5, time.sleep, 0.05)
            order.append(name)

        # One worker: "a" queues three jobs before "b" and "c" queue one each.
        tasks = [asyncio.create_task(job(name)) for name in ("a", "a", "a", "b", "c")]
        await asyncio.gather(*tasks)
        return order

    assert with_workers(test, size=1) == ["a", "b", "c", "a", "a"]


def test_a_cancelled_job_that_waits_never_runs() -> None:
    async def test(workers: Workers) -> None:
        busy = asyncio.create_task(workers.run("a", 5, time.sleep, 0.3))
        await asyncio.sleep(0.05)
        waiting = asyncio.create_task(workers.run("a", 5, subprocess.run, ["sleep", "1000.7"]))
        await asyncio.sleep(0.05)
        waiting.cancel()
        await busy
        await asyncio.sleep(0.3)
        assert not processes_running("sleep", "1000.7")

    with_workers(test, size=1)


def test_when_no_worker_can_start_a_job_fails_at_once() -> None:
    async def main() -> None:
        workers = Workers(preload=("pbotvm.no_such_module",), size=1)
        await workers.start()
        try:
            with pytest.raises(Failed, match="no worker could start"):
                await asyncio.wait_for(workers.run("a", 5, operator.add, 1, 1), 10)
        finally:
            await workers.close()

    asyncio.run(main())
