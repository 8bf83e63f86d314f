"""A machine's runtime state: the status file vm-server keeps and the lock it shares with
vm-watchdog; in-process, then through the PTY stack."""

from __future__ import annotations

import asyncio
import json
import os
import re
import threading
import time
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
        state = MachineState(MACHINE, HeartbeatMonitor("m", "127.0.0.1", 1), blocked)
        pool = Pool("m", [state])
        got = await take_turn(pool, 1.0)
        give_back(pool, state)
        return got

    assert asyncio.run(serve())


def test_turn_revert_and_counters_are_in_the_status(tmp_path: Path) -> None:
    path = status_path(tmp_path, MACHINE)

    async def scenario() -> list[Status | None]:
        state = MachineState(MACHINE, HeartbeatMonitor("m", "127.0.0.1", 1), tmp_path)
        pool = Pool("m", [state])
        seen = [read_status(path)]
        assert await take_turn(pool, 1.0)
        seen.append(read_status(path))
        state.timed_out()
        state.begin_revert()
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
    assert idle == Status("pbot-vm", pid)
    assert serving is not None and serving.serving_since is not None
    assert serving.requests == 1 and serving.reverting_since is None
    assert reverting is not None and reverting.serving_since is None
    assert reverting.reverting_since is not None and reverting.reverts == 1
    assert after == Status("pbot-vm", pid, None, None, 1, 1, 1)
    assert later == Status("pbot-vm", pid, None, None, 2, 1, 1)


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
