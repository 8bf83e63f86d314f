"""vm-watchdog: its rule (pure), then against real processes that burn CPU: a plain burner
standing for the QEMU backend's VM, and the PTY VM's guest through the whole stack."""

from __future__ import annotations

import dataclasses
import json
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pbotvm.config import HostSettings
from pbotvm.host.machines.backends import guest_for
from pbotvm.host.machines.machine_state import MachineLock, Status, lock_path
from pbotvm.host.machines.qemu import VmPaths, with_vm_up_guest
from pbotvm.host.machines.watchdog import (
    Reading,
    Watchdog,
    cpu_percent,
    server_activity,
    should_revert,
)
from pbotvm.procs import tree_cpu_ticks
from tests.conftest import make_stack, until
from tests.support.stack import BIN, LocalStack
from tests.test_recovery import LIBVIRT_TEST_NODE


@pytest.mark.parametrize("previous, percent, revert", [
    (0.0, 99.0, False),  # one busy sample is not enough
    (30.0, 30.0, True),
    (30.0, 80.0, True),
    (30.0, 29.9, False),  # the second must not be lower
    (24.9, 99.0, False),  # the first must reach the threshold
    (25.0, 25.0, True),
])
def test_the_originals_rule(previous: float, percent: float, revert: bool) -> None:
    assert should_revert(previous, percent, 25.0) is revert


def test_cpu_percent() -> None:
    assert cpu_percent(Reading(10.0, 100.0, "x"), Reading(13.0, 106.0, "x")) == 50.0
    assert cpu_percent(Reading(10.0, 100.0, "x"), Reading(9.0, 106.0, "x")) == 0.0


def status(**kw: object) -> Status:
    return dataclasses.replace(Status("m", 7), **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("before, after, busy", [
    (None, None, None),  # no vm-server: nothing it could have done
    (status(), status(), None),
    (status(requests=3), status(requests=3, timeouts=0), None),
    (status(), status(serving_since=95.0), "vm-server is serving a request (for 5.0 s)"),
    (status(), status(reverting_since=99.0), "vm-server is reverting it (for 1.0 s)"),
    (status(serving_since=90.0), status(requests=1), "vm-server was busy with it"),
    (status(requests=3), status(requests=5),
     "vm-server served 2 request(s) and made 0 revert(s)"),
    (status(requests=3, reverts=1), status(requests=3, reverts=2),
     "vm-server served 0 request(s) and made 1 revert(s)"),
    (status(), dataclasses.replace(status(), pid=8), "vm-server restarted"),
    (None, status(), "vm-server started"),
    (status(), None, None),  # it stopped: the machine is nobody's
])
def test_what_vm_server_did(before: Status | None, after: Status | None,
                            busy: str | None) -> None:
    assert server_activity(before, after, 100.0) == busy


def stat(ppid: int, state: str, ticks: tuple[int, int, int, int]) -> list[bytes]:
    """/proc/PID/stat fields after the command name."""
    return [state.encode(), str(ppid).encode(), *[b"0"] * 9, *[str(t).encode() for t in ticks]]


def test_the_tree_counts_every_process_below_the_root_and_its_reaped_children() -> None:
    table = {
        1: stat(0, "S", (1000, 1000, 0, 0)),  # init: not ours
        10: stat(1, "S", (5, 1, 100, 20)),  # the VM (100 + 20: guest-servers it reaped)
        11: stat(10, "S", (30, 3, 0, 0)),  # guest-server
        12: stat(11, "R", (400, 0, 0, 0)),  # a program
        13: stat(12, "Z", (50, 0, 0, 0)),  # ended, not reaped yet: still counted
        20: stat(1, "R", (999, 0, 0, 0)),
    }
    assert tree_cpu_ticks(table, 10) == 126 + 33 + 400 + 50
    assert tree_cpu_ticks(table, 99) is None


# --- real processes ---------------------------------------------------------------------------

BURN = "while True: pass"


@pytest.fixture
def burner() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen([sys.executable, "-c", BURN])
    yield proc
    proc.kill()
    proc.wait()


def qemu_stand_in(tmp_path: Path, pid: int) -> dict[str, str]:
    """The state of ``pbotvm vm up`` with ``pid`` as QEMU, and a revert command that stops
    it (what a snapshot revert does to a runaway guest) and says so."""
    paths = VmPaths(tmp_path / "state" / "qemu")
    paths.state_dir.mkdir(parents=True)
    paths.info.write_text(json.dumps({
        "pid": pid, "accel": "tcg", "addr": "127.0.0.1", "serial": 1, "heart": 2,
        "qmp": str(paths.qmp), "image": "x", "boot_seconds": 0, "warmup_seconds": 0,
        "savevm_seconds": 0}))
    revert = ("import os, sys; os.kill(int(sys.argv[1]), 9); "
              "open(sys.argv[2], 'a').write(os.environ['PBOTVM_MACHINE'] + ' reverted\\n')")
    return {"HOME": str(tmp_path), "PBOTVM_STATE_DIR": str(tmp_path / "state"),
            "PBOTVM_REVERT_COMMAND": shlex.join([sys.executable, "-c", revert, str(pid),
                                                 str(tmp_path / "reverts")])}


def watch(tmp_path: Path, env: dict[str, str]) -> Watchdog:
    """As vm-watchdog's main: the machine on the lines `vm up` recorded, and its backend."""
    settings, _ = with_vm_up_guest(HostSettings.from_env(env), env)
    return Watchdog(settings, guest_for(settings, settings.machines.resolve(), "auto", env))


def ticks_until(watchdog: Watchdog, word: str, limit: int, interval: float = 0.4) -> list[str]:
    lines: list[str] = []
    for _ in range(limit):
        time.sleep(interval)
        lines += watchdog.tick()
        if word in lines[-1]:
            break
    return lines


def test_a_busy_vm_nobody_uses_is_reverted(tmp_path: Path,
                                           burner: subprocess.Popen[bytes]) -> None:
    watchdog = watch(tmp_path, qemu_stand_in(tmp_path, burner.pid))
    lines = ticks_until(watchdog, "reverted", 12)
    assert lines[0] == f"first sample of QEMU pid {burner.pid}"
    assert re.fullmatch(r"cpu \d+\.\d% over 0\.\d s \(sample before 0\.0%, threshold 25%\): "
                        r"no action", lines[1])
    assert re.fullmatch(r"cpu \d+\.\d% over 0\.\d s after \d+\.\d% \(threshold 25%\): "
                        r"reverting", lines[-2]), lines
    assert re.fullmatch(r"reverted to snapshot 1 in \d\.\d\d s", lines[-1])
    assert (tmp_path / "reverts").read_text() == "pbot-vm reverted\n"
    burner.wait(5)
    assert watchdog.tick() == ["nothing to watch: no QEMU is running"]


def test_an_idle_vm_is_left_alone(tmp_path: Path) -> None:
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        watchdog = watch(tmp_path, qemu_stand_in(tmp_path, sleeper.pid))
        lines = ticks_until(watchdog, "reverting", 4, interval=0.3)
        assert len(lines) == 4 and all(x.endswith("no action") for x in lines[1:]), lines
    finally:
        sleeper.kill()
        sleeper.wait()


def test_no_revert_while_vm_server_holds_the_machine(tmp_path: Path,
                                                     burner: subprocess.Popen[bytes]) -> None:
    env = qemu_stand_in(tmp_path, burner.pid)
    watchdog = watch(tmp_path, env)
    server = MachineLock(lock_path(tmp_path / "state", watchdog.machine))
    assert server.try_acquire()  # as vm-server does while it serves
    lines = ticks_until(watchdog, "not reverting", 12)
    assert lines[-1].endswith("but vm-server has just taken the machine: not reverting"), lines
    assert not (tmp_path / "reverts").exists()
    server.close()


def test_libvirt_domain_statistics_and_revert(tmp_path: Path) -> None:
    # libvirt's test driver: its CPU counter runs with the clock (a guest at 100 %), and its
    # snapshot revert is libvirt's real code path.
    xml = tmp_path / "node.xml"
    xml.write_text(LIBVIRT_TEST_NODE)
    settings = HostSettings.from_env({"HOME": str(tmp_path), "PBOTVM_LIBVIRT_URI":
                                      f"test://{xml}", "PBOTVM_STATE_DIR": str(tmp_path)})
    machine = settings.machines.resolve()
    watchdog = Watchdog(settings, guest_for(settings, machine, "libvirt"))
    lines = ticks_until(watchdog, "reverted", 6, interval=0.2)
    assert lines[0] == f"first sample of libvirt test://{xml} domain pbot-vm"
    assert re.fullmatch(r"reverted to snapshot 1 in \d\.\d\d s", lines[-1]), lines
    missing = dataclasses.replace(machine, domain="nope")
    watchdog = Watchdog(settings, guest_for(settings, missing, "libvirt"))
    assert watchdog.tick() == [f"nothing to watch: libvirt test://{xml}, domain nope: "
                               "Domain not found"]


# --- the PTY stack, with vm-watchdog as a process ----------------------------------------------

def start_watchdog(s: LocalStack) -> None:
    s.start_process("vm-watchdog", [str(BIN / "vm-watchdog"), "--interval", "0.5",
                                    "--source", "pty"])


def decisions(s: LocalStack) -> list[str]:
    return re.findall(r"vm-watchdog\[\d+\] pbot-vm: (.*)", s.log("vm-watchdog"))


@pytest.mark.root
@pytest.mark.slow
def test_a_guest_left_burning_after_a_time_out_is_reverted(tmp_path: Path) -> None:
    # vm-server gives up after 2 s and does not revert (as when its revert failed): the
    # guest keeps burning CPU until its own 8 s limit, with nobody served.
    with make_stack(tmp_path, PBOTVM_TIMEOUT="2", PBOTVM_NOREVERT="1",
                    PBOTVM_HEART_STALE="7") as s:
        start_watchdog(s)
        assert until(lambda: decisions(s), 10)
        assert s.ask("-lang=sh while :; do :; done").startswith("[Timed-out]")
        assert until(lambda: "control: revert -> ok" in s.log("ptyvm"), 10), decisions(s)
        lines = decisions(s)
        assert any(re.search(r"not counted: vm-server is serving a request", x) for x in lines)
        assert any(re.search(r"after \d+\.\d% \(threshold 25%\): reverting", x) for x in lines)
        assert until(lambda: any(x.startswith("reverted to snapshot 1 in") for x in decisions(s)),
                     10)
        assert "reverting" not in s.log("vm-server")
        assert s.ask("-lang=sh echo back") == "back"


@pytest.mark.root
@pytest.mark.slow
def test_a_cpu_bound_request_is_vm_servers_business(tmp_path: Path) -> None:
    with make_stack(tmp_path, PBOTVM_TIMEOUT="30", PBOTVM_HEART_STALE="7") as s:
        start_watchdog(s)
        assert until(lambda: decisions(s), 10)
        burn = "import time\nt = time.time()\nwhile time.time() - t < 4: pass\nprint('done')"
        assert s.ask(f"-lang=python3 {burn}") == "done"
        time.sleep(1.5)  # samples after it
        lines = decisions(s)
        busy = [x for x in lines if "not counted: vm-server is serving a request" in x]
        assert len(busy) >= 6, lines
        assert sum(float(x.split("%")[0].split()[1]) > 25 for x in busy) >= 4, busy  # it burned
        assert not any(x.endswith("reverting") for x in lines), lines
        assert "control: revert" not in s.log("ptyvm")


@pytest.mark.root
@pytest.mark.slow
def test_each_guest_of_a_pool_is_watched_and_only_the_burning_one_reverted(
        tmp_path: Path) -> None:
    stack = LocalStack(tmp_path, env={"PBOTVM_STDIN_COMMAND": "", "PBOTVM_TIMEOUT": "2",
                                      "PBOTVM_NOREVERT": "1", "PBOTVM_HEART_STALE": "7"},
                       guests=2)
    with stack as s:
        start_watchdog(s)
        assert until(lambda: {"pbot-vm/0", "pbot-vm/1"} <= set(re.findall(
            r"(pbot-vm/\d): first sample", s.log("vm-watchdog"))), 10), s.log("vm-watchdog")
        assert s.ask("-lang=sh while :; do :; done").startswith("[Timed-out]")
        reverted = until(lambda: re.findall(r"(pbot-vm/\d): reverted to snapshot 1 in",
                                            s.log("vm-watchdog")), 15)
        assert reverted and len(set(reverted)) == 1, s.log("vm-watchdog")
        idle = ({"pbot-vm/0", "pbot-vm/1"} - set(reverted)).pop()
        assert re.search(rf"{idle}: cpu [0-9.]+% over .*: no action", s.log("vm-watchdog"))
        assert "reverting" not in s.log("vm-server")
        assert s.ask("-lang=sh echo back") == "back"
