"""A machine's runtime state: the status file vm-server keeps and the lock it shares with
vm-watchdog; in-process, then through the PTY stack."""

from __future__ import annotations

import asyncio
import json
import os
import re
import threading
import time
from dataclasses import asdict
from pathlib import Path

import pytest

from pbotvm.config import Machine
from pbotvm.host.machines.heartbeat import HeartbeatMonitor
from pbotvm.host.machines.machine_state import (
    MachineLock,
    MachineState,
    Status,
    lock_path,
    read_status,
    status_path,
    write_status,
)
from pbotvm.host.machines.pool import Pool
from tests.conftest import make_stack, until
from tests.test_heartbeat import beating_guest

MACHINE = Machine(name="pbot-vm", serial=5555)


def test_paths_never_leave_the_state_directory(tmp_path: Path) -> None:
    assert status_path(tmp_path, MACHINE) == tmp_path / "machines" / "pbot-vm.5555.json"
    odd = Machine(name="../../etc/x", serial=1)
    assert status_path(tmp_path, odd).parent == tmp_path / "machines"
    assert lock_path(tmp_path, odd).name == "..%2F..%2Fetc%2Fx.1.lock"


def test_a_machine_on_a_unix_socket_is_named_after_the_socket(tmp_path: Path) -> None:
    # Not after the TCP port it does not use (pbot-vm.5555.json).
    on_socket = Machine(name="pbot-vm", serial_socket="/run/pbotvm/serial.sock")
    name = status_path(tmp_path, on_socket).name
    assert re.fullmatch(r"pbot-vm\.serial\.sock-[0-9a-f]{8}\.json", name), name
    elsewhere = Machine(name="pbot-vm", serial_socket="/root/state/qemu/serial.sock")
    assert status_path(tmp_path, elsewhere).name != name
    assert lock_path(tmp_path, on_socket).name == name.replace(".json", ".lock")


def test_the_status_is_replaced_whole(tmp_path: Path) -> None:
    path = status_path(tmp_path, MACHINE)
    assert read_status(path) is None
    write_status(path, Status("pbot-vm", 42, serving_since=1.5, requests=3))
    write_status(path, Status("pbot-vm", 42, requests=4, timeouts=1, reverts=1))
    assert read_status(path) == Status("pbot-vm", 42, None, None, 4, 1, 1)
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no temp left
    path.write_text("{half")
    assert read_status(path) is None


def test_a_status_written_by_another_version_is_read(tmp_path: Path) -> None:
    # vm-watchdog and vm-server are upgraded apart: neither may take the other for absent.
    path = status_path(tmp_path, MACHINE)
    path.parent.mkdir()
    path.write_text(json.dumps({"machine": "pbot-vm", "pid": 42, "requests": 3}))
    assert read_status(path) == Status("pbot-vm", 42, requests=3)
    path.write_text(json.dumps({**asdict(Status("pbot-vm", 42, reverts=2)), "newer": [1]}))
    assert read_status(path) == Status("pbot-vm", 42, reverts=2)
    path.write_text("[1, 2]")
    assert read_status(path) is None


def test_the_lock_keeps_a_second_holder_out(tmp_path: Path) -> None:
    first, second = MachineLock(tmp_path / "m.lock"), MachineLock(tmp_path / "m.lock")
    assert first.try_acquire()
    assert not second.try_acquire()
    first.release()
    assert second.try_acquire()
    # The watchdog notes when its revert ended; vm-server reads it, in the same clock.
    assert first.last_revert() == 0.0
    before = time.monotonic()
    second.note_revert()
    assert before <= first.last_revert() <= time.monotonic()
    second.close()
    first.close()


async def take_turn(pool: Pool, timeout: float) -> bool:
    """As vm-server does: a guest from the pool, then its lock."""
    state = await pool.take("nick", timeout)
    if state is None:
        return False
    if not await state.claim(asyncio.get_running_loop().time() + timeout):
        pool.release(state)
        return False
    return True


def give_back(pool: Pool, state: MachineState) -> None:
    state.release()
    pool.release(state)


def test_a_state_dir_that_cannot_be_written_does_not_stop_serving(tmp_path: Path) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")

    async def serve() -> bool:
        state = MachineState(MACHINE, HeartbeatMonitor(Machine(name="m", heart=1)), blocked)
        pool = Pool("m", [state])
        got = await take_turn(pool, 1.0)
        give_back(pool, state)
        return got

    assert asyncio.run(serve())


def test_turn_revert_and_counters_are_in_the_status(tmp_path: Path) -> None:
    path = status_path(tmp_path, MACHINE)

    async def scenario() -> list[Status | None]:
        state = MachineState(MACHINE, HeartbeatMonitor(Machine(name="m", heart=1)), tmp_path)
        pool = Pool("m", [state])
        seen = [read_status(path)]
        assert await take_turn(pool, 1.0)
        seen.append(read_status(path))
        state.timed_out()
        state.begin_revert("time-out")
        seen.append(read_status(path))
        # Another request waits while the revert holds the guest, and is told so.
        assert not await take_turn(pool, 0.1)
        assert state.reverting
        give_back(pool, state)
        seen.append(read_status(path))
        # The watchdog (another holder of the lock file) reverting: the same answer.
        watchdog = MachineLock(lock_path(tmp_path, MACHINE))
        assert watchdog.try_acquire()
        assert not await take_turn(pool, 0.2)
        assert state.reverting
        watchdog.release()
        assert await take_turn(pool, 0.2)
        assert not state.reverting
        give_back(pool, state)
        seen.append(read_status(path))
        state.close()
        return seen

    idle, serving, reverting, after, later = asyncio.run(scenario())
    pid = os.getpid()
    assert watchdogs_part(idle) == Status("pbot-vm", pid)
    assert serving is not None and serving.serving_since is not None
    assert serving.requests == 1 and serving.reverting_since is None
    assert reverting is not None and reverting.serving_since is None
    assert reverting.reverting_since is not None and reverting.reverts == 1
    assert watchdogs_part(after) == Status("pbot-vm", pid, None, None, 1, 1, 1)
    assert watchdogs_part(later) == Status("pbot-vm", pid, None, None, 2, 1, 1)


def test_the_status_tells_the_last_revert_and_the_last_hours_request_times(
        tmp_path: Path) -> None:
    path = status_path(tmp_path, MACHINE)

    async def scenario() -> list[Status | None]:
        state = MachineState(MACHINE, HeartbeatMonitor(Machine(name="m", heart=1)), tmp_path)
        pool = Pool("m", [state])
        seen = [read_status(path)]
        assert await take_turn(pool, 1.0)
        await asyncio.sleep(0.05)
        give_back(pool, state)
        seen.append(read_status(path))
        assert await take_turn(pool, 1.0)
        await asyncio.sleep(0.2)
        state.begin_revert("guest killed the program: cpu")
        seen.append(read_status(path))
        await asyncio.sleep(0.1)
        give_back(pool, state)
        seen.append(read_status(path))
        state.close()
        return seen

    before = time.time()
    first, served, reverting, reverted = asyncio.run(scenario())
    assert first is not None and before <= first.started == first.free_since <= time.time()
    assert first.guest == "127.0.0.1:5555" and first.last_beat is None
    assert (first.p50, first.p95, first.last_revert_reason) == (None, None, None)
    assert served is not None and served.p50 is not None and served.p50 == served.p95
    assert 0.05 <= served.p50 < 0.2
    assert served.free_since > first.free_since
    assert reverting is not None and reverting.reverting_since is not None
    assert reverting.last_revert_reason == "guest killed the program: cpu"
    assert reverting.last_revert_seconds is None  # under way
    # The request that ended in the revert held the guest 0.2 s: the slower of the two.
    assert reverting.p50 == served.p50 and reverting.p95 is not None and reverting.p95 >= 0.2
    assert reverted is not None and 0.1 <= (reverted.last_revert_seconds or 0) < 1
    assert reverted.last_revert_reason == "guest killed the program: cpu"
    assert (reverted.p50, reverted.p95) == (reverting.p50, reverting.p95)


def test_each_heartbeat_rewrites_the_status(tmp_path: Path) -> None:
    # A reader tells a silent guest by the age of its last beat: the file must follow beats,
    # not only requests.
    path = status_path(tmp_path, MACHINE)

    async def scenario() -> tuple[Status | None, list[float]]:
        server = await asyncio.start_server(beating_guest, "127.0.0.1", 0)
        async with server:
            heart = HeartbeatMonitor(
                Machine(name="m", heart=server.sockets[0].getsockname()[1]), 5.0)
            state = MachineState(MACHINE, heart, tmp_path)
            first = read_status(path)
            heart.start()
            beats = []
            for _ in range(3):
                await asyncio.sleep(0.25)
                status = read_status(path)
                assert status is not None and status.last_beat is not None
                beats.append(status.last_beat)
            await heart.stop()
            state.close()
        return first, beats

    first, beats = asyncio.run(scenario())
    assert first is not None and first.last_beat is None
    assert beats == sorted(set(beats)) and time.time() - beats[-1] < 0.5


def watchdogs_part(status: Status | None) -> Status | None:
    """The fields vm-watchdog reads, the others left at their defaults."""
    if status is None:
        return None
    return Status(status.machine, status.pid, status.serving_since, status.reverting_since,
                  status.requests, status.timeouts, status.reverts)


@pytest.mark.root
def test_vm_server_keeps_the_status_file(tmp_path: Path) -> None:
    with make_stack(tmp_path, PBOTVM_TIMEOUT="2", PBOTVM_HEART_STALE="7") as s:
        path = tmp_path / "state" / "machines" / f"pbot-vm.{s.serial}.json"
        idle = read_status(path)
        assert idle is not None and idle.server_running()
        assert (idle.serving_since, idle.reverting_since) == (None, None)
        served = idle.requests  # the stack's readiness check is a request
        asks = threading.Thread(target=s.ask, args=("-lang=sh sleep 1",))
        asks.start()
        busy = until(lambda: (st := read_status(path)) and st.serving_since and st, 5)
        asks.join()
        assert busy and busy.requests == served + 1
        assert s.ask("-lang=sh sleep 5").startswith("[Timed-out]")
        after = until(lambda: (st := read_status(path)) and st.reverts and
                      st.reverting_since is None and st, 15)
        assert after and (after.requests, after.timeouts, after.reverts) == (served + 2, 1, 1)
        assert after.serving_since is None
        assert json.loads(path.read_text())["machine"] == "pbot-vm"
