"""Which machines exist, and which guest a revert touches: a name typed in a channel must never
cost another machine's users a revert. Through vm-client on the PTY stack."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from pbotvm import cli
from pbotvm.host.request.vmexec import OFFLINE
from tests.conftest import make_stack, until
from tests.support.stack import LocalStack, free_port

STALE = 6.0  # PBOTVM_HEART_STALE: our guest beats every 5 s


class SilentGuest:
    """A machine whose guest beats but never answers: every request to it times out."""

    def __init__(self) -> None:
        self.serial_listener = socket.create_server(("127.0.0.1", 0))
        self.heart_listener = socket.create_server(("127.0.0.1", 0))
        self.serial = self.serial_listener.getsockname()[1]
        self.heart = self.heart_listener.getsockname()[1]
        for target in (self._swallow, self._beat):
            threading.Thread(target=target, daemon=True).start()

    def _swallow(self) -> None:
        while True:
            conn, _ = self.serial_listener.accept()
            with conn:
                while conn.recv(65536):
                    pass

    def _beat(self) -> None:
        while True:
            conn, _ = self.heart_listener.accept()
            with conn:
                try:
                    while True:
                        conn.sendall(b"\n")
                        time.sleep(0.2)
                except OSError:
                    pass


@pytest.fixture(scope="module")
def other() -> SilentGuest:
    return SilentGuest()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, other: SilentGuest) -> Iterator[LocalStack]:
    tmp = tmp_path_factory.mktemp("machines")
    s = make_stack(tmp, PBOTVM_TIMEOUT="1.5", PBOTVM_HEART_STALE=str(STALE))
    machines = tmp / "machines.json"
    machines.write_text(json.dumps({
        "machines": {
            "pbot-vm": {"serial": s.serial, "heart": s.heart, "cid": 0},
            "other": {"serial": other.serial, "heart": other.heart, "cid": 0},
            # Configured, but nothing runs there.
            "ghost": {"serial": free_port(), "heart": free_port(), "cid": 0},
        },
        "aliases": {"main": "pbot-vm", "other": "other", "ghost": "ghost"},
        "default-machine": "main",
    }))
    s.env["PBOTVM_MACHINES"] = str(machines)
    with s:
        yield s


@pytest.mark.root
@pytest.mark.slow
def test_a_revert_for_one_machine_never_reverts_another(stack: LocalStack,
                                                        other: SilentGuest) -> None:
    assert stack.ask("-vm=other -lang=sh echo x") == "[Timed-out]"
    # vm-server reverts "other" with the one revert command it has: the PTY VM's.
    failed = "other: revert failed: revert command exited 1: error: this PTY VM's serial port"
    assert until(lambda: failed in stack.log("vm-server"), 10)
    assert f"is {stack.serial}, not {other.serial}: it is another machine" in \
        stack.log("vm-server")
    assert stack.ask("-lang=sh echo untouched") == "untouched"
    log = stack.log("ptyvm")
    assert "control: revert -> ok" not in log and log.count("guest-server started") == 1


@pytest.mark.root
@pytest.mark.slow
def test_self_healing_never_reverts_a_machine_never_heard(stack: LocalStack) -> None:
    assert stack.ask("-vm=ghost -lang=sh echo x") == OFFLINE
    time.sleep(2 * STALE + 0.5)  # silent for two margins: a machine once heard is reverted
    assert stack.ask("-vm=ghost -lang=sh echo x") == OFFLINE
    assert "ghost: reverting" not in stack.log("vm-server")
    assert stack.ask("-lang=sh echo main is fine") == "main is fine"


@pytest.mark.root
@pytest.mark.slow
def test_pty_ctl_acts_only_for_its_own_serial_port(stack: LocalStack) -> None:
    runner = CliRunner()
    control = ["pty", "ctl", "--control", str(stack.control)]
    refused = runner.invoke(cli.main, [*control, "revert"],
                            env={"PBOTVM_MACHINE_SERIAL": str(stack.serial + 1)})
    assert refused.exit_code == 1
    assert refused.output == (f"error: this PTY VM's serial port is {stack.serial}, not "
                              f"{stack.serial + 1}: it is another machine\n")
    done = runner.invoke(cli.main, [*control, "--machine-serial", str(stack.serial), "revert"])
    assert done.exit_code == 0 and done.output.startswith("ok ")
    stack.wait_answer("-lang=sh echo back", "back", 15)


@pytest.mark.root
@pytest.mark.slow
def test_without_a_machines_file_a_made_up_machine_is_unknown(tmp_path: Path) -> None:
    # The original's built-in list named a test machine: -vm=test reached a guest nobody ran,
    # which vm-server then "healed" every minute by reverting the real one.
    with make_stack(tmp_path, PBOTVM_MACHINES="", XDG_CONFIG_HOME=str(tmp_path / "none"),
                    PBOTVM_CID="0") as s:
        assert s.ask("-vm=test -lang=sh echo x") == (
            "Unknown machine 'test'; available machines are: fedora-amd64")
        assert s.ask("-vm=fedora-amd64 -lang=sh echo default") == "default"
        assert "reverting" not in s.log("vm-server")


def revert_for(state: Path, serial: str, **vm: object) -> tuple[int, str]:
    """`pbotvm vm revert` asked by machine ``serial`` of the VM in ``state`` (its vm.json:
    port 5555 plus ``vm``): the exit code and the output."""
    (state / "qemu").mkdir()
    (state / "qemu" / "vm.json").write_text(json.dumps({
        "pid": 0, "accel": "tcg", "addr": "127.0.0.1", "serial": 5555, "heart": 5556,
        "qmp": str(state / "qemu" / "qmp.sock"), "image": "x", "boot_seconds": 1.0,
        "warmup_seconds": 1.0, "savevm_seconds": 1.0, **vm}))
    result = CliRunner().invoke(cli.main, ["vm", "revert"], env={
        "PBOTVM_STATE_DIR": str(state), "PBOTVM_MACHINES": "",
        "XDG_CONFIG_HOME": str(state), "PBOTVM_MACHINE_SERIAL": serial})
    return result.exit_code, result.output


def test_vm_revert_refuses_a_vm_serving_another_machine(tmp_path: Path) -> None:
    assert revert_for(tmp_path, "7777") == (
        1, f"Error: the VM in {tmp_path / 'qemu'} serves serial 5555, not 7777: not reverting "
           "it\n")


def test_vm_revert_tells_machines_on_sockets_apart(tmp_path: Path) -> None:
    # Two VMs on Unix sockets may share the default port number: the socket decides.
    assert revert_for(tmp_path, "/run/b/serial.sock", serial_socket="/run/a/serial.sock",
                      heart_socket="/run/a/heart.sock") == (
        1, f"Error: the VM in {tmp_path / 'qemu'} serves serial /run/a/serial.sock, not "
           "/run/b/serial.sock: not reverting it\n")
