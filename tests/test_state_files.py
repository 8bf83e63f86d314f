"""vm-server's and vm-watchdog's files under the state directory: 0600, the directories they
make 0700, whatever the umask; in-process, then through the PTY stack against user vm."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pbotvm.config import Machine
from pbotvm.host import state_files
from pbotvm.host.machines.machine_state import (
    MachineLock,
    Status,
    lock_path,
    status_path,
    write_status,
)
from pbotvm.host.request.edit.grammar import HistoryChange
from pbotvm.host.request.edit.store import HistoryStore
from tests.conftest import make_stack

MACHINE = Machine(name="pbot-vm", serial=5555)


@pytest.fixture
def umask_0() -> Iterator[None]:
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def modes(root: Path) -> dict[str, int]:
    return {str(path.relative_to(root)): path.stat().st_mode & 0o7777
            for path in [root, *root.rglob("*")]}


def test_the_history_store_is_private(tmp_path: Path, umask_0: None) -> None:
    store = HistoryStore.open(tmp_path / "state")
    with store.transaction():
        store.apply("sh", HistoryChange("#c", 0, ("echo secret",)))
    # While it is open: SQLite's -wal and -shm beside it.
    assert modes(tmp_path / "state") == {
        ".": 0o700, "history.sqlite3": 0o600, "history.sqlite3-wal": 0o600,
        "history.sqlite3-shm": 0o600, "history.sqlite3.init": 0o600}
    store.close()


def test_the_machines_status_and_lock_are_private(tmp_path: Path, umask_0: None) -> None:
    state = tmp_path / "state"
    write_status(status_path(state, MACHINE), Status("pbot-vm", 1))
    lock = MachineLock(lock_path(state, MACHINE))
    assert lock.try_acquire()
    lock.close()
    assert modes(state) == {".": 0o700, "machines": 0o700, "machines/pbot-vm.5555.json": 0o600,
                            "machines/pbot-vm.5555.lock": 0o600}


def test_a_file_made_before_is_made_private_and_a_directory_left_as_it_is(
        tmp_path: Path) -> None:
    machines = tmp_path / "machines"
    machines.mkdir(mode=0o755)
    machines.chmod(0o755)
    path = lock_path(tmp_path, MACHINE)
    path.write_text("")
    path.chmod(0o644)
    lock = MachineLock(path)
    assert lock.try_acquire()
    lock.close()
    assert modes(machines) == {".": 0o755, "pbot-vm.5555.lock": 0o600}
    first = HistoryStore.open(tmp_path)
    first.close()
    (tmp_path / "history.sqlite3").chmod(0o644)
    HistoryStore.open(tmp_path).close()
    assert modes(tmp_path)["history.sqlite3"] == 0o600


def test_an_odd_umask_does_not_make_a_directory_or_file_unusable(tmp_path: Path) -> None:
    old = os.umask(0o277)
    try:
        state_files.make_dir(tmp_path / "a" / "b")
        os.close(state_files.open_file(tmp_path / "a" / "b" / "f", os.O_WRONLY))
    finally:
        os.umask(old)
    assert modes(tmp_path / "a") == {".": 0o700, "b": 0o700, "b/f": 0o600}


# Run as user vm: each path opened and its lock taken, or refused; held a while.
ATTACK = """import fcntl, sys, time
held = []
for path in sys.argv[1:]:
    try:
        held.append(open(path, "rb"))
    except PermissionError:
        print("refused", flush=True)
        continue
    fcntl.flock(held[-1], fcntl.LOCK_EX | fcntl.LOCK_NB)
    print("held", flush=True)
time.sleep(3)
"""


@pytest.mark.root
def test_user_vm_can_neither_hold_the_lock_nor_read_the_history() -> None:
    # The lock file was 0644: user vm on the host took it read-only and vm-server answered
    # "resetting" while it held it. The state directory is the operator's, open to all; what
    # vm-server makes in it must not be.
    workdir = Path(tempfile.mkdtemp(prefix="pbotvm-state-files-", dir="/tmp"))
    workdir.chmod(0o755)
    state = workdir / "state"
    state.mkdir(mode=0o755)
    stack = make_stack(workdir, PBOTVM_TIMEOUT="5", PBOTVM_HEART_STALE="7")
    old = os.umask(0)
    try:
        stack.start()
    finally:
        os.umask(old)
    try:
        assert stack.ask("-lang=sh echo hi") == "hi"  # a history entry
        made = modes(state)
        assert made.pop(".") == 0o755
        assert {name for name, mode in made.items()
                if mode != (0o700 if (state / name).is_dir() else 0o600)} == set()
        lock = lock_path(state, Machine("pbot-vm", serial=stack.serial))
        assert {"machines", f"machines/{lock.name}", "history.sqlite3"} <= set(made)
        attack = subprocess.Popen(["/usr/bin/python3", "-c", ATTACK, str(lock),
                                   str(state / "history.sqlite3")],
                                  user="vm", stdout=subprocess.PIPE, text=True)
        try:
            assert attack.stdout is not None
            assert [attack.stdout.readline(), attack.stdout.readline()] == ["refused\n"] * 2
            start = time.monotonic()
            assert stack.ask("-lang=sh echo meanwhile") == "meanwhile"
            assert time.monotonic() - start < 1
        finally:
            attack.kill()
            attack.wait()
    finally:
        stack.stop()
        shutil.rmtree(workdir)
