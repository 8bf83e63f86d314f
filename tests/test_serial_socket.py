"""The serial devices on Unix sockets: only root can connect, where on the original's TCP
ports any local user who connects first had the guest's line (QEMU serves one client), and
vm-server, locked out, reverted the machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from pbotvm.config import HostSettings, Machine
from pbotvm.host.machines import qemu
from pbotvm.host.machines.heartbeat import HeartbeatMonitor
from pbotvm.host.machines.transport import exchange
from pbotvm.protocol import Request, RequestDecoder, Result, ResultDecoder, encode_result
from pbotvm.provision.layout import HEART_INDEX, SERIAL_INDEX
from tests.support.stack import free_port


def test_machines_file_and_environment_name_the_sockets(tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    path.write_text(json.dumps({"machines": {
        "a": {"serial": 1111},
        "b": {"serial-socket": "/run/b/serial.sock", "heart-socket": "/run/b/heart.sock"}},
        "default-machine": "a"}))
    settings = HostSettings.from_env({
        "HOME": str(tmp_path), "PBOTVM_MACHINES": str(path),
        "PBOTVM_SERIAL_SOCKET": "/run/a/serial.sock", "PBOTVM_HEART_SOCKET": "/run/a/heart.sock"})
    a, b = settings.machines.resolve("a"), settings.machines.resolve("b")
    assert (a.serial_socket, a.heart_socket) == ("/run/a/serial.sock", "/run/a/heart.sock")
    assert (b.serial_socket, b.heart_socket) == ("/run/b/serial.sock", "/run/b/heart.sock")
    # Unset: the original's TCP ports.
    plain = HostSettings.from_env({"HOME": str(tmp_path)}).machines.resolve()
    assert (plain.serial_socket, plain.heart_socket) == ("", "")


async def answer_one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    decoder = RequestDecoder()
    while not (items := decoder.feed(await reader.read(65536))):
        pass
    request = items[0]
    assert isinstance(request, Request)
    writer.write(encode_result(Result(f"over the socket: {request.code}", id=request.id)))
    await writer.drain()
    writer.close()


def test_requests_and_heartbeats_over_unix_sockets(tmp_path: Path) -> None:
    serial, heart = tmp_path / "serial.sock", tmp_path / "heart.sock"
    machine = Machine("m", serial_socket=str(serial), heart_socket=str(heart), cid=0)

    async def beat(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"\n")
        await writer.drain()
        await asyncio.sleep(0.3)
        writer.close()  # as QEMU does when it restarts

    async def scenario() -> tuple[str, str, int]:
        async with await asyncio.start_unix_server(answer_one, serial), \
                await asyncio.start_unix_server(beat, heart):
            request = Request(lang="sh", sourcefile="prog.sh", execfile="prog.sh",
                              cmdline="sh prog.sh", code="hi", id="u1")
            decoder = ResultDecoder("u1")
            channel = await exchange(machine, request, decoder)
            monitor = HeartbeatMonitor(machine, 5.0)
            monitor.start()
            try:
                assert await monitor.beat_after(0, 5)
                # Each new connection's first beat counts as the guest coming (back).
                assert await monitor.beat_after(monitor.last_beat, 5)
            finally:
                await monitor.stop()
            return decoder.text, channel, monitor.arrivals

    text, channel, arrivals = asyncio.run(scenario())
    assert (text, channel) == ("over the socket: hi\n", f"serial {serial}")
    assert arrivals == 2


# --- what QEMU makes of it ---------------------------------------------------------------------

SQUATTER = """
import socket, sys
family, address = (socket.AF_UNIX, sys.argv[1]) if sys.argv[1].startswith("/") else \\
    (socket.AF_INET, ("127.0.0.1", int(sys.argv[1])))
try:
    socket.socket(family).connect(address)
except OSError as e:
    print(type(e).__name__)
else:
    print("connected")
"""


def squat(target: str) -> str:
    """What a local user (nobody) gets who tries to connect first."""
    return subprocess.run(["/usr/bin/python3", "-c", SQUATTER, target], user="nobody",
                          capture_output=True, text=True, timeout=10, check=True).stdout.strip()


@pytest.fixture
def paused_qemu() -> Iterator[Machine]:
    """QEMU with our serial chardevs (data on a Unix socket, heartbeat on TCP for contrast) and
    its QMP socket, paused before it runs anything: the devices exist, no guest is needed."""
    if shutil.which(qemu.QEMU) is None or os.geteuid() != 0:
        pytest.skip(f"needs {qemu.QEMU} and root")
    # A directory anyone may enter, so that the socket's own mode is all that keeps them out.
    state = Path(tempfile.mkdtemp(prefix="pbotvm-sock-"))
    state.chmod(0o755)
    paths = qemu.VmPaths(state)
    machine = Machine("m", serial_socket=str(paths.serial_socket), heart=free_port(), cid=0)
    argv = [qemu.QEMU, "-nodefaults", "-no-user-config", "-display", "none", "-S",
            *qemu.accel_args("tcg"),
            *qemu.serial_args("serial", SERIAL_INDEX, machine.addr, machine.serial,
                              machine.serial_socket),
            *qemu.serial_args("heart", HEART_INDEX, machine.addr, machine.heart),
            "-qmp", f"unix:{paths.qmp},server=on,wait=off",
            "-pidfile", str(paths.pidfile), "-daemonize"]
    pid = qemu.launch(argv, paths, machine)
    try:
        yield machine
    finally:
        qemu.stop(paths, pid)
        with contextlib.suppress(OSError):
            shutil.rmtree(state)


@pytest.mark.root
@pytest.mark.root
def test_only_root_can_take_the_qemu_serial_socket(paused_qemu: Machine) -> None:
    machine = paused_qemu
    info = os.stat(machine.serial_socket)
    assert stat.S_ISSOCK(info.st_mode) and (info.st_uid, stat.S_IMODE(info.st_mode)) == (0, 0o600)
    # A local user takes the TCP port first (so the check itself works) but not the socket.
    assert squat(str(machine.heart)) == "connected"
    assert squat(machine.serial_socket) == "PermissionError"
    # QEMU's monitor too (-daemonize made it 0750 with its own umask).
    qmp = qemu.VmPaths(Path(machine.serial_socket).parent).qmp
    assert stat.S_IMODE(os.stat(qmp).st_mode) == 0o600

    async def root_connects() -> None:
        _, writer = await asyncio.open_unix_connection(machine.serial_socket)
        writer.close()

    asyncio.run(root_connects())
