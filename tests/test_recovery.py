"""Time-outs, reverts and heartbeat loss, each on its own stack."""

import re
import time
from pathlib import Path

import pytest

from tests.conftest import make_stack

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


def test_failed_libvirt_revert_is_logged_and_the_server_keeps_serving(tmp_path: Path) -> None:
    with make_stack(tmp_path, PBOTVM_TIMEOUT="1.5", PBOTVM_HEART_STALE="7",
                    PBOTVM_REVERT_COMMAND="", PBOTVM_LIBVIRT_URI="test:///default") as s:
        assert s.ask("-lang=sh sleep 2").startswith("[Timed-out]")
        assert s.ask("-lang=sh echo still") == "still"
        assert ("revert failed: libvirt test:///default, domain pbot-vm: Domain not found"
                in s.log("vm-server"))


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
