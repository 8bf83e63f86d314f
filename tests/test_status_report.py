"""`pbotvm status`: a guest's state read from its status, the report a person reads, and the
command against a running stack."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from pbotvm.host.machines.machine_state import Status, write_status
from pbotvm.host.status_report import heartbeat_age, running, state_of, table
from tests.support.stack import BIN, LocalStack

NOW = 1_800_000_000.0
PID = os.getpid()


def guest(**fields: object) -> Status:
    base: dict[str, object] = {"machine": "pbot-vm", "pid": PID, "guest": "127.0.0.1:5555",
                               "started": NOW - 3600, "free_since": NOW - 192,
                               "last_beat": NOW - 2, "stale_after": 12.0}
    return Status(**{**base, **fields})  # type: ignore[arg-type]


def test_a_guests_state_and_since_when() -> None:
    assert state_of(guest(), NOW) == ("idle", NOW - 192)
    assert state_of(guest(serving_since=NOW - 1), NOW) == ("serving", NOW - 1)
    # A revert holds the guest whatever its heartbeat says.
    assert state_of(guest(reverting_since=NOW - 3, last_beat=NOW - 60),
                    NOW) == ("reverting", NOW - 3)
    assert state_of(guest(last_beat=NOW - 13), NOW) == ("silent", NOW - 13)
    assert state_of(guest(last_beat=None), NOW) == ("silent", NOW - 3600)
    assert heartbeat_age(guest(), NOW) == 2
    assert heartbeat_age(guest(last_beat=None), NOW) == 3600


def test_the_report_has_a_row_per_guest_under_its_machine() -> None:
    statuses = [
        guest(requests=1234, timeouts=3, reverts=4, last_revert_reason="time-out",
              last_revert_seconds=0.31, p50=0.0312, p95=1.5),
        guest(machine="big", guest="/run/pbotvm/big.sock", serving_since=NOW - 7200,
              requests=7, last_revert_reason="guest killed the program: cpu"),
        guest(machine="big", guest="/run/pbotvm/big-2.sock", last_beat=None,
              started=NOW - 90000),
    ]
    clock = time.strftime("%H:%M:%S", time.localtime(NOW - 192))
    serving = time.strftime("%H:%M:%S", time.localtime(NOW - 7200))
    silent = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(NOW - 90000))
    if time.localtime(NOW - 7200)[:3] != time.localtime(NOW)[:3]:
        serving = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(NOW - 7200))
    lines = table(statuses, NOW).split("\n")
    assert [line.split() for line in lines] == [
        ["big", "(vm-server", "pid", str(PID) + ")"],
        ["GUEST", "STATE", "SINCE", "REQUESTS", "TIME-OUTS", "REVERTS", "LAST", "REVERT", "P50",
         "P95"],
        ["/run/pbotvm/big-2.sock", "silent", *silent.split(), "(1d01h)", "0", "0", "0", "-", "-",
         "-"],
        ["/run/pbotvm/big.sock", "serving", *serving.split(), "(2h00m)", "7", "0", "0",
         "guest", "killed", "the", "program:", "cpu", "(under", "way)", "-", "-"],
        ["pbot-vm", "(vm-server", "pid", str(PID) + ")"],
        ["GUEST", "STATE", "SINCE", "REQUESTS", "TIME-OUTS", "REVERTS", "LAST", "REVERT", "P50",
         "P95"],
        ["127.0.0.1:5555", "idle", clock, "(3m12s)", "1234", "3", "4", "time-out", "(310", "ms)",
         "31", "ms", "1.50", "s"],
    ]
    # One set of columns for every machine.
    assert lines[-1].index("idle") == lines[2].index("silent") == lines[1].index("STATE")


def test_what_the_guest_said_cannot_drive_the_terminal() -> None:
    # The reason of a revert quotes the limit the guest named.
    report = table([guest(last_revert_reason="guest killed the program: \x1b[2Jx\r")], NOW)
    assert "\x1b" not in report and "\r" not in report
    assert "guest killed the program: \\x1B[2Jx\\x0D (under way)" in report


def test_only_running_vm_servers_are_listed(tmp_path: Path) -> None:
    assert running(tmp_path) == []  # no machines directory yet
    machines = tmp_path / "machines"
    write_status(machines / "pbot-vm.5555.json", guest())
    # Left by a vm-server that is gone (no pid is over 2**22).
    write_status(machines / "old.5557.json", guest(machine="old", pid=2**22 + 1))
    (machines / "pbot-vm.5555.lock").write_text("")
    (machines / "half.json").write_text("{")
    assert running(tmp_path) == [guest()]


def test_without_a_vm_server_status_says_so_and_exits_1(tmp_path: Path) -> None:
    done = subprocess.run([str(BIN / "pbotvm"), "status"], capture_output=True, text=True,
                          env={**os.environ, "PBOTVM_STATE_DIR": str(tmp_path)}, check=False)
    assert (done.returncode, done.stdout, done.stderr) == (
        1, f"no vm-server runs with the state directory {tmp_path}\n", "")


@pytest.mark.root
def test_status_against_a_running_stack(stack: LocalStack) -> None:
    assert stack.ask("-lang=sh echo counted") == "counted"
    done = subprocess.run([str(BIN / "pbotvm"), "status"], capture_output=True, text=True,
                          env=stack.env, check=True)
    header, columns, row = done.stdout.splitlines()
    assert header == f"pbot-vm (vm-server pid {stack.pid('vm-server')})"
    assert columns.split()[:3] == ["GUEST", "STATE", "SINCE"]
    cells = row.split()
    assert cells[:2] == [f"127.0.0.1:{stack.serial}", "idle"]
    requests = int(cells[4])
    assert requests >= 2  # the stack's readiness check and ours
    assert row.endswith(("ms", " s"))  # the p95 of the last hour
