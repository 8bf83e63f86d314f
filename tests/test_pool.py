"""A machine's pool of guests (``machines.pool``): which request gets which guest. In-process
with stand-in guests, then through vm-client on the PTY stack."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import cast

import pytest

from pbotvm.config import ConfigError, Machine, Machines
from pbotvm.host.machines import qemu
from pbotvm.host.machines.machine_state import MachineState
from pbotvm.host.machines.pool import Pool
from pbotvm.host.machines.qemu import LINE_SETTINGS
from tests.conftest import AttachedStack, bystander, until
from tests.support.perl_client import perl_ask
from tests.support.stack import BIN, LocalStack, free_port


class Heart:
    def __init__(self, alive: bool) -> None:
        self.beating = alive

    def alive(self) -> bool:
        return self.beating


class Guest:
    """What the pool looks at of a guest: its heartbeat, and which host it is on."""

    def __init__(self, name: str, alive: bool = True, uri: str = "") -> None:
        self.name = name
        self.heart = Heart(alive)
        self.machine = Machine(name=name, uri=uri)

    def __repr__(self) -> str:
        return self.name


def pool_of(*guests: Guest, weights: dict[str, float] | None = None) -> Pool:
    return Pool("m", [cast(MachineState, guest) for guest in guests], weights)


def name(state: MachineState | None) -> str | None:
    return None if state is None else repr(state)


def test_requests_go_to_free_guests_in_turn_and_wait_for_one() -> None:
    async def scenario() -> list[str | None]:
        pool = pool_of(Guest("a"), Guest("b"))
        first = await pool.take("x", 1)
        second = await pool.take("y", 1)
        assert await pool.take("z", 0.1) is None  # both serve: the wait limit
        waiting = asyncio.create_task(pool.take("z", 1))
        await asyncio.sleep(0)
        assert first is not None and second is not None
        pool.release(first)
        third = await waiting
        pool.release(second)
        assert third is not None
        pool.release(third)
        fourth = await pool.take("x", 1)  # the guest free the longest
        return [name(first), name(second), name(third), name(fourth)]

    assert asyncio.run(scenario()) == ["a", "b", "a", "b"]


REMOTE = "qemu+ssh://root@host2/system"


@pytest.mark.parametrize(("weights", "order"), [
    (None, ["a", "c", "b", "d"]),  # the least busy host first
    ({REMOTE: 2.0}, ["a", "c", "d", "b"]),  # the remote host takes two per local one
])
def test_requests_go_to_the_least_busy_host_by_its_weight(
        weights: dict[str, float] | None, order: list[str]) -> None:
    async def scenario() -> list[str | None]:
        pool = pool_of(Guest("a"), Guest("b"), Guest("c", uri=REMOTE), Guest("d", uri=REMOTE),
                       weights=weights)
        return [name(await pool.take(who, 1)) for who in "wxyz"]

    assert asyncio.run(scenario()) == order


def test_host_weights_in_the_machines_file() -> None:
    data = {"machines": {"m": {"guests": [{}, {"uri": REMOTE}]}},
            "host-weights": {"local": 1, REMOTE: 2.5}}
    machines = Machines.parse(data, "f", {})
    assert machines.weights == {"local": 1.0, REMOTE: 2.5}
    assert [guest.uri for guest in machines.resolve("m").members()] == ["", REMOTE]
    with pytest.raises(ConfigError, match="'host-weights' must map \"local\" or a libvirt "
                                          "URI to a number above 0"):
        Machines.parse({**data, "host-weights": {REMOTE: 0}}, "f", {})


def test_a_silent_guest_is_out_of_rotation_unless_no_guest_beats() -> None:
    async def scenario() -> list[str | None]:
        silent, beating = Guest("silent", alive=False), Guest("beating")
        pool = pool_of(silent, beating)
        got = [await pool.take("x", 1)]
        got.append(await pool.take("y", 0.2))  # the beating one serves: wait, not "silent"
        assert got[0] is not None
        pool.release(got[0])
        beating.heart.beating = False  # nobody beats: a request finds out (and heals it)
        got.append(await pool.take("z", 1))
        return [name(state) for state in got]

    assert asyncio.run(scenario()) == ["beating", None, "silent"]


def test_a_persist_key_always_goes_to_the_guest_it_names() -> None:
    async def scenario() -> set[str | None]:
        pool = pool_of(Guest("a"), Guest("b"), Guest("c"))
        seen = set()
        for _ in range(5):
            state = await pool.take("x", 1, key="counter")
            seen.add(name(state))
            assert state is not None
            pool.release(state)
        # Its guest taken, a keyed request waits for it even though others are free.
        keyed = pool.pinned("counter")
        other = await pool.take("y", 1, key="counter")
        assert other is keyed
        assert await pool.take("z", 0.1, key="counter") is None
        pool.release(keyed)
        return seen

    assert len(asyncio.run(scenario())) == 1


async def served(pool: Pool, who: str, wait: float, order: list[str]) -> None:
    """One request of ``who``: a guest taken (within ``wait`` s), the nick noted in
    ``order``, the guest given back."""
    guest = await pool.take(who, wait)
    assert guest is not None
    order.append(who)
    await asyncio.sleep(0)
    pool.release(guest)


def test_the_nick_served_longest_ago_goes_next() -> None:
    async def scenario() -> list[str]:
        pool = pool_of(Guest("a"))
        order: list[str] = []
        holder = await pool.take("A", 1)
        assert holder is not None

        tasks = [asyncio.create_task(served(pool, who, 5, order)) for who in ("A", "A", "B")]
        await asyncio.sleep(0.05)
        pool.release(holder)
        await asyncio.gather(*tasks)
        return order

    assert asyncio.run(scenario()) == ["B", "A", "A"]


def test_a_turn_lost_with_its_guest_is_not_a_turn_served() -> None:
    async def scenario() -> list[str]:
        pool = pool_of(Guest("a"))
        assert name(await pool.take("x", 1)) == "a"
        # x's guest died under its request: the request is taken again before the guest is
        # given back (its revert holds it), and nicks whose last request ended come meanwhile.
        pool.came_to_nothing("x")
        order: list[str] = []

        again = asyncio.create_task(served(pool, "x", 1, order))
        await asyncio.sleep(0)
        others = [asyncio.create_task(served(pool, who, 1, order)) for who in "yz"]
        await asyncio.sleep(0)
        pool.release(pool.guests[0])
        await asyncio.gather(again, *others)
        return order

    assert asyncio.run(scenario()) == ["x", "y", "z"]


def test_a_request_that_gives_up_leaves_no_guest_taken() -> None:
    async def scenario() -> str | None:
        pool = pool_of(Guest("a"))
        holder = await pool.take("A", 1)
        assert holder is not None
        waiting = asyncio.create_task(pool.take("B", 5))
        await asyncio.sleep(0.05)
        pool.release(holder)  # handed to B's request...
        waiting.cancel()  # ...which is cancelled before it runs
        await asyncio.gather(waiting, return_exceptions=True)
        return name(await pool.take("C", 0.2))

    assert asyncio.run(scenario()) == "a"


@pytest.mark.root
@pytest.mark.slow
def test_two_long_requests_of_one_nick_do_not_starve_another(stack: LocalStack) -> None:
    # Issue 19's case, at the stack's 5 s time-out: nick A's two requests of 3.5 s, then
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


# --- a pool of two PTY VMs through vm-client ------------------------------------------------

def started(stack: LocalStack, name: str) -> int:
    """Requests the guest-server of PTY VM ``name`` has started."""
    return sum(line.endswith(" started") and ": request " in line
               for line in stack.log(name).splitlines())


@pytest.fixture(scope="module")
def pool_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with LocalStack(tmp_path_factory.mktemp("pool"), guests=2,
                    # Room for 20 clients at once on one guest (after one is killed).
                    env={"PBOTVM_STDIN_COMMAND": "", "PBOTVM_TIMEOUT": "8",
                         "PBOTVM_HEART_STALE": "7"}) as s:
        def both_serve() -> bool:
            ask_both(s)  # two requests at once: one on each guest that beats
            return bool(started(s, "ptyvm") and started(s, "ptyvm-1"))

        assert until(both_serve, 30)
        yield s


def ask_both(stack: LocalStack) -> list[str]:
    with ThreadPoolExecutor(2) as pool:
        return list(pool.map(lambda n: stack.ask(f"-lang=sh sleep 0.3; echo {n}", nick=f"n{n}"),
                             range(2)))


@pytest.mark.root
@pytest.mark.parametrize("client", ["vm-client", "perl"])
def test_two_guests_serve_two_requests_at_once(pool_stack: LocalStack, tmp_path: Path,
                                               client: str) -> None:
    """Through our vm-client, and a Perl client as PBot's."""
    start = time.monotonic()

    def ask(code: str, nick: str) -> float:
        if client == "perl":
            assert perl_ask(tmp_path, pool_stack.server, code, nick) == f"{nick}\n"
        else:
            assert pool_stack.ask(code, nick=nick) == nick
        return time.monotonic() - start

    with ThreadPoolExecutor(2) as pool:
        slow = pool.submit(ask, "-lang=sh sleep 2; echo A", "A")
        time.sleep(0.3)
        quick = pool.submit(ask, "-lang=sh echo B", "B")
        # On one guest B would have waited for A.
        assert quick.result() < slow.result()


@pytest.mark.root
def test_a_reverting_guest_leaves_the_other_serving(pool_stack: LocalStack) -> None:
    with bystander(pool_stack):
        assert pool_stack.ask("-lang=sh sleep 30", nick="slow").startswith("[Timed-out]")
        time.sleep(0.5)  # its guest reverts meanwhile
    assert "reverting (time-out)" in pool_stack.log("vm-server")


@pytest.mark.root
def test_a_persist_key_follows_its_guest(pool_stack: LocalStack) -> None:
    before = started(pool_stack, "ptyvm"), started(pool_stack, "ptyvm-1")
    for n in range(4):
        assert pool_stack.ask(f"-lang=sh echo {n}", **{"persist-key": "pooled",
                                                        "nick": f"nick{n}"}) == str(n)
    after = started(pool_stack, "ptyvm"), started(pool_stack, "ptyvm-1")
    assert sorted(b - a for a, b in zip(before, after, strict=True)) == [0, 4]


@pytest.mark.root
def test_history_and_machine_names_are_the_machines(pool_stack: LocalStack) -> None:
    assert pool_stack.ask("-lang=sh echo aaa", channel="#pooled") == "aaa"
    for _ in range(3):  # whichever guest runs it
        assert pool_stack.ask("-lang=sh s/a/b/", channel="#pooled") in ("baa", "bba", "bbb")
    assert pool_stack.ask("-vm=main -lang=sh echo named") == "named"
    assert "Unknown machine" in pool_stack.ask("-vm=pbot-vm/1 -lang=sh echo guest")


@pytest.mark.root
def test_a_killed_guest_loses_no_request(pool_stack: LocalStack) -> None:
    # Issue 15: 20 clients x 20 requests with unique outputs, one guest killed meanwhile.
    def client(k: int) -> list[tuple[str, str]]:
        return [(f"c{k}r{r}", pool_stack.ask(f"-lang=sh echo c{k}r{r}", nick=f"c{k}"))
                for r in range(20)]

    with ThreadPoolExecutor(20) as pool:
        answers = [pool.submit(client, k) for k in range(20)]
        time.sleep(1)
        os.kill(pool_stack.pid("ptyvm-1"), signal.SIGKILL)
        got = [pair for future in answers for pair in future.result()]
    assert len(got) == 400
    assert [(want, reply) for want, reply in got if reply != want] == []


@pytest.mark.root
def test_after_every_run_each_guest_reverts_while_the_other_serves(tmp_path: Path) -> None:
    with LocalStack(tmp_path, guests=2,
                    env={"PBOTVM_STDIN_COMMAND": "", "PBOTVM_TIMEOUT": "8",
                         "PBOTVM_HEART_STALE": "7", "PBOTVM_REVERT": "after-every-run"}) as s:
        with bystander(s):
            for n in range(6):
                assert s.ask(f"-lang=sh echo {n}", nick="fresh") == str(n)
        assert until(lambda: s.log("vm-server").count("reverting (after every run)") >= 6, 20)
        assert "revert failed" not in s.log("vm-server")


# --- a pool of two QEMU guests: `pbotvm vm up --guests 2`, then vm-server --------------------

@pytest.mark.vm
def test_vm_up_makes_a_pool_that_vm_server_finds_and_serves(tmp_path: Path) -> None:
    state = tmp_path / "state"
    env = {**os.environ, "PBOTVM_STATE_DIR": str(state), "XDG_CONFIG_HOME": str(tmp_path)}
    for told in (*LINE_SETTINGS, "PBOTVM_MACHINES", "PBOTVM_REVERT_COMMAND"):
        env.pop(told, None)
    up = subprocess.run([str(BIN / "pbotvm"), "vm", "up", "--guests", "2"], env=env,
                        capture_output=True, text=True, timeout=900, check=False)
    try:
        assert up.returncode == 0, up.stderr
        assert [line.split(":")[:2] for line in up.stdout.splitlines()] == [
            ["up", " pbot-vm/0"], ["up", " pbot-vm/1"]]
        stack = AttachedStack(tmp_path / "server", free_port(), free_port(),
                              {"PBOTVM_STATE_DIR": str(state), "XDG_CONFIG_HOME": str(tmp_path),
                               "PBOTVM_TIMEOUT": "20"}, revert_command=None)
        for told in (*LINE_SETTINGS, "PBOTVM_MACHINES"):
            stack.env.pop(told, None)
        with stack as s:
            assert "pbot-vm: the 2 guests `pbotvm vm up` started" in s.log("vm-server")
            start = time.monotonic()

            def ask(code: str, nick: str) -> float:
                assert s.ask(code, nick=nick) == nick
                return time.monotonic() - start

            with ThreadPoolExecutor(2) as pool:
                slow = pool.submit(ask, "-lang=sh sleep 5; echo A", "A")
                time.sleep(0.5)
                quick = pool.submit(ask, "-lang=sh echo B", "B")
                assert quick.result() < slow.result()  # each on a guest of its own
            # One guest times out and reverts (QMP loadvm); the other answers meanwhile.
            with ThreadPoolExecutor(1) as pool:
                stuck = pool.submit(s.ask, "-lang=sh sleep 60", nick="stuck")
                time.sleep(1)
                assert s.ask("-lang=sh echo other", nick="other") == "other"
                assert stuck.result().startswith("[Timed-out]")
            s.wait_answer("-lang=sh echo after", "after", 60)
            # The other guest may answer before the revert's line is written.
            assert until(lambda: re.search(r"pbot-vm/\d: reverted to snapshot 1 in [0-9.]+ s "
                                           r"\(QEMU pid \d+: loadvm\)", s.log("vm-server")),
                         30), s.log("vm-server")
    finally:
        down = subprocess.run([str(BIN / "pbotvm"), "vm", "down"], env=env,
                              capture_output=True, text=True, timeout=120, check=False)
    assert down.stdout.strip() == "stopped"
    assert qemu.recorded_guests(state) == []


@pytest.mark.root
def test_status_shows_each_guest_of_the_pool(pool_stack: LocalStack) -> None:
    done = subprocess.run([str(BIN / "pbotvm"), "status"], env=pool_stack.env,
                          capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("pbot-vm (vm-server pid ")  # one machine...
    guests = [line.split()[0] for line in lines[2:]]
    assert sorted(guests) == sorted(f"127.0.0.1:{serial}" for serial, _ in pool_stack.guests)
