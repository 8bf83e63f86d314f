"""Time-outs, reverts and heartbeat loss, each on its own stack."""

import asyncio
import os
import re
import signal
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from pbotvm import procs
from pbotvm.config import HostSettings
from pbotvm.host.machines.backends import guest_for
from pbotvm.host.machines.guest import GuestError
from pbotvm.host.server import STOP_GRACE, STOPPING
from tests.conftest import make_stack, processes_running, until
from tests.support.stack import BIN

pytestmark = [pytest.mark.root, pytest.mark.slow]


def test_timeout_reverts_and_the_next_request_is_answered(tmp_path: Path) -> None:
    with make_stack(tmp_path, PBOTVM_TIMEOUT="2", PBOTVM_HEART_STALE="7") as s:
        start = time.monotonic()
        reply = s.ask("-lang=sh echo partial; sleep 60")
        assert reply.startswith("[Timed-out]")
        assert 2 <= time.monotonic() - start < 4
        # Sent while the revert runs: it waits for the guest, it is not lost.
        assert s.ask("-lang=sh echo after") == "after"
        log = s.log("vm-server")
        assert "reverting (time-out)" in log and re.search(r"reverted to snapshot 1 in", log)
        assert "control: revert -> ok" in s.log("ptyvm")


def test_cpu_loop_killed_by_the_guest_reverts(tmp_path: Path) -> None:
    with make_stack(tmp_path, PBOTVM_TIMEOUT="30", PBOTVM_HEART_STALE="7") as s:
        reply = s.ask("-lang=sh while :; do :; done")
        assert "CPU time limit" in reply
        assert "reverting (guest killed the program: cpu time limit)" in s.log("vm-server")
        assert s.ask("-lang=sh echo fine") == "fine"


def test_late_answer_of_a_timed_out_job_never_reaches_the_next_user(tmp_path: Path) -> None:
    with make_stack(tmp_path, PBOTVM_TIMEOUT="1.5", PBOTVM_NOREVERT="1",
                    PBOTVM_HEART_STALE="7") as s:
        assert s.ask("-lang=sh sleep 2; echo LATE") == "[Timed-out]"
        # Not reverted, the guest finishes the first job and answers it first, on the next
        # request's connection: that answer carries the old id and is dropped.
        assert s.ask("-lang=sh echo mine") == "mine"
        assert "[LATE" not in s.log("vm-server")


def test_libvirt_revert_through_the_test_driver(tmp_path: Path) -> None:
    xml = tmp_path / "libvirt-test.xml"
    xml.write_text(LIBVIRT_TEST_NODE)
    with make_stack(tmp_path, PBOTVM_TIMEOUT="1.5", PBOTVM_HEART_STALE="7",
                    PBOTVM_REVERT_COMMAND="", PBOTVM_LIBVIRT_URI=f"test://{xml}") as s:
        assert s.ask("-lang=sh sleep 2").startswith("[Timed-out]")
        # The test driver reverts nothing real: the server waits for a beat after it.
        deadline = time.monotonic() + 10
        while (reply := s.ask("-lang=sh echo back")) != "back" and time.monotonic() < deadline:
            assert reply == "Virtual machine is resetting, try again soon."
        assert reply == "back"
        assert "pbot-vm: reverted to snapshot 1 in" in s.log("vm-server")


def test_failed_revert_is_logged_and_the_server_keeps_serving(tmp_path: Path) -> None:
    with make_stack(tmp_path, PBOTVM_TIMEOUT="1.5", PBOTVM_HEART_STALE="7",
                    PBOTVM_REVERT_COMMAND="sh -c 'echo no snapshot here; exit 3'") as s:
        assert s.ask("-lang=sh sleep 2").startswith("[Timed-out]")
        assert s.ask("-lang=sh echo still") == "still"
        assert "revert failed: revert command exited 3: no snapshot here" in s.log("vm-server")


def test_without_a_revert_command_the_recorded_pty_vm_is_reverted(tmp_path: Path) -> None:
    # vm-server finds the PTY VM `pbotvm pty run` recorded for the machine's lines, and
    # reverts it through its control socket.
    with make_stack(tmp_path, PBOTVM_TIMEOUT="1.5", PBOTVM_HEART_STALE="7",
                    PBOTVM_REVERT_COMMAND="") as s:
        assert s.ask("-lang=sh sleep 2").startswith("[Timed-out]")
        s.wait_answer("-lang=sh echo still", "still", 20)
        assert re.search(r"reverted to snapshot 1 in [0-9.]+ s \(PTY VM pid \d+: "
                         r"guest-server restarted\)", s.log("vm-server"))


def test_a_libvirt_domain_that_is_not_there_cannot_be_reverted(tmp_path: Path) -> None:
    settings = HostSettings.from_env({"HOME": str(tmp_path), "PBOTVM_STATE_DIR": str(tmp_path),
                                      "PBOTVM_LIBVIRT_URI": "test:///default"})
    guest = guest_for(settings, settings.machines.resolve(), "libvirt")
    with pytest.raises(GuestError, match="libvirt test:///default, domain pbot-vm: Domain "
                                         "not found"):
        asyncio.run(guest.revert())


def test_heartbeat_loss_and_return(tmp_path: Path) -> None:
    with make_stack(tmp_path, PBOTVM_TIMEOUT="3", PBOTVM_HEART_STALE="6") as s:
        assert s.control_command("down").startswith("ok")
        time.sleep(7)
        assert s.ask("-lang=sh echo x") == "Virtual machine is resetting, try again soon."
        assert s.control_command("up").startswith("ok")
        deadline = time.monotonic() + 10
        while (reply := s.ask("-lang=sh echo back")) != "back" and time.monotonic() < deadline:
            time.sleep(0.3)
        assert reply == "back"


def test_a_guest_silent_for_two_margins_is_reverted_by_the_next_request(tmp_path: Path) -> None:
    with make_stack(tmp_path, PBOTVM_TIMEOUT="3", PBOTVM_HEART_STALE="3") as s:
        assert s.control_command("down").startswith("ok")  # as if QEMU had died
        time.sleep(6.5)
        assert s.ask("-lang=sh echo x") == "Virtual machine is resetting, try again soon."
        # No `up`: the revert brings the guest back.
        deadline = time.monotonic() + 15
        while (reply := s.ask("-lang=sh echo back")) != "back" and time.monotonic() < deadline:
            time.sleep(0.3)
        assert reply == "back"
        log = s.log("vm-server")
        assert len(re.findall(r"pbot-vm: reverting \(no heartbeat for \d+ s\)", log)) == 1


def test_guest_unreachable_says_offline(tmp_path: Path) -> None:
    with make_stack(tmp_path, PBOTVM_TIMEOUT="3", PBOTVM_HEART_STALE="6") as s:
        s.stop_process("ptyvm")
        reply = s.ask("-lang=sh echo x")
        assert reply in ("Virtual machine is offline.",
                         "Virtual machine is resetting, try again soon.")


def test_sigterm_lets_the_request_in_flight_finish_and_answers_the_rest(
        tmp_path: Path) -> None:
    with make_stack(tmp_path, PBOTVM_TIMEOUT="30", PBOTVM_HEART_STALE="7") as s:
        server = s.pid("vm-server")
        with ThreadPoolExecutor(2) as pool:
            first = pool.submit(s.ask, "-lang=sh sleep 1.5; echo first done")
            assert until(lambda: processes_running("sleep", "1.5"), 10)
            # Waits for the machine, then runs past the grace.
            second = pool.submit(s.ask, "-lang=sh sleep 23.5; echo second")
            time.sleep(0.3)
            os.kill(server, signal.SIGTERM)
            stopped = time.monotonic()
            assert first.result() == "first done"
            assert second.result() == STOPPING  # was 0 bytes
            assert STOP_GRACE - 0.5 < time.monotonic() - stopped < STOP_GRACE + 3
        assert until(lambda: not procs.running(server), 20)
        assert s.client("-lang=sh echo x").stdout.startswith("Fatal error: Connection refused")
        log = s.log("vm-server")
        assert "reverting (vm-server stopped mid-request)" in log
        assert re.search(r"reverted to snapshot 1 in", log)
        assert not processes_running("sleep", "23.5")  # the cut-short program went with it
        s.start_process("vm-server", [str(BIN / "vm-server")])
        s.wait_ready(20)
        assert s.ask("-lang=sh echo next") == "next"


def test_the_first_request_after_vm_server_starts_is_answered_at_once(tmp_path: Path) -> None:
    with make_stack(tmp_path, PBOTVM_TIMEOUT="10", PBOTVM_HEART_STALE="7") as s:
        s.stop_process("vm-server")
        s.start_process("vm-server", [str(BIN / "vm-server")])
        assert until(lambda: accepts(s.server), 15)
        start = time.monotonic()
        # It was "resetting" until the guest's next beat, up to 5 s later.
        assert s.ask("-lang=sh echo first") == "first"
        assert time.monotonic() - start < 1.5


def accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def test_the_pty_vm_killed_mid_request_is_offline_and_leaves_nothing_running(
        tmp_path: Path) -> None:
    with make_stack(tmp_path, PBOTVM_TIMEOUT="5", PBOTVM_HEART_STALE="7") as s:
        with ThreadPoolExecutor(1) as pool:
            reply = pool.submit(s.ask, "-lang=sh sleep 31.5")
            assert until(lambda: processes_running("sleep", "31.5"), 10)
            os.kill(s.pid("ptyvm"), signal.SIGKILL)
            assert reply.result() == "Virtual machine is offline."  # was an empty line
        # The orphaned program ran on for up to 60 s.
        assert until(lambda: not processes_running("sleep", "31.5"), 5)
        assert "connection to the guest closed mid-request" in s.log("vm-server")
        s.start_vm()
        # The old guest's last beat is still fresh: a request may reach the new PTY VM before
        # its guest reads, time out and revert it.
        s.wait_answer("-lang=sh echo back", "back", 30)


def test_a_revert_reaps_what_it_killed(tmp_path: Path) -> None:
    forks = ("-lang=python3 import os, time\\n"
             "for i in range(30):\\n"
             "    if os.fork() == 0:\\n"
             "        os.setsid(); time.sleep(100)\\n"
             "time.sleep(100)")
    with make_stack(tmp_path, PBOTVM_TIMEOUT="2", PBOTVM_HEART_STALE="7") as s:
        assert s.ask(forks).startswith("[Timed-out]")
        # Served after the revert is done.
        s.wait_answer("-lang=sh echo back", "back", 20)

        def zombies() -> list[int]:
            table = procs.stat_table()
            below = set(procs.descendants(s.pid("ptyvm"))) | {s.pid("ptyvm")}
            return [pid for pid, fields in table.items()
                    if fields[0] == b"Z" and int(fields[1]) in below]

        # The guest replies before it reaps that request's supervisor, so a zombie may live
        # for a moment; the killed tree's zombies stayed until the next revert.
        assert until(lambda: zombies() == [], 5), zombies()


LIBVIRT_TEST_NODE = """<node>
  <domain type='test' xmlns:test='http://libvirt.org/schemas/domain/test/1.0'>
    <name>pbot-vm</name>
    <memory>65536</memory>
    <os><type>hvm</type></os>
    <test:domainsnapshot>
      <name>1</name>
      <state>running</state>
      <creationTime>1700000000</creationTime>
      <active>1</active>
      <domain type='test'><name>pbot-vm</name><memory>65536</memory><os><type>hvm</type></os>
      </domain>
    </test:domainsnapshot>
  </domain>
</node>
"""
