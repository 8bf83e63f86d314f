"""The PTY VM's TCP bridge must behave like QEMU's socket chardev."""

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from pbotvm.host.machines.ptyvm import Bridge, Pty
from tests.conftest import processes_running, until
from tests.support.stack import free_port


async def read_slave(pty: Pty, n: int) -> bytes:
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, os.read, pty.slave, n)


def test_bridge_semantics() -> None:
    async def scenario() -> None:
        pty = Pty()
        bridge = Bridge(pty, "127.0.0.1", free_port())
        task = asyncio.create_task(bridge.run())
        await asyncio.sleep(0.05)

        # Output with nobody connected is dropped.
        os.write(pty.slave, b"lost\n")
        await asyncio.sleep(0.05)

        r1, w1 = await asyncio.open_connection("127.0.0.1", bridge.port)
        w1.write(b"to guest\n")
        await w1.drain()
        assert await asyncio.wait_for(read_slave(pty, 100), 2) == b"to guest\n"
        os.write(pty.slave, b"to host\n")
        assert await asyncio.wait_for(r1.readline(), 2) == b"to host\n"

        # A second client waits (TCP connect succeeds, nothing is read) until the first leaves.
        r2, w2 = await asyncio.open_connection("127.0.0.1", bridge.port)
        w2.write(b"second\n")
        await w2.drain()
        os.write(pty.slave, b"for first\n")
        assert await asyncio.wait_for(r1.readline(), 2) == b"for first\n"
        w1.close()
        assert await asyncio.wait_for(read_slave(pty, 100), 2) == b"second\n"
        os.write(pty.slave, b"for second\n")
        assert await asyncio.wait_for(r2.readline(), 2) == b"for second\n"
        w2.close()
        task.cancel()

    asyncio.run(scenario())


def test_bridge_passes_a_megabyte_both_ways() -> None:
    async def scenario() -> None:
        pty = Pty()
        bridge = Bridge(pty, "127.0.0.1", free_port())
        task = asyncio.create_task(bridge.run())
        await asyncio.sleep(0.05)
        _reader, writer = await asyncio.open_connection("127.0.0.1", bridge.port)
        payload = os.urandom(1 << 20)
        writer.write(payload)
        got = bytearray()
        while len(got) < len(payload):
            got += await asyncio.wait_for(read_slave(pty, 65536), 5)
        assert bytes(got) == payload
        writer.close()
        task.cancel()

    asyncio.run(scenario())


CONTROLLING_TTY_OF_THE_GUEST = """
import os, sys, time
from pbotvm.host.machines.ptyvm import start_keeper
os.setsid()
master, slave = os.openpty()
os.close(os.open(os.ttyname(slave), os.O_RDWR))  # a session leader's first tty: its terminal
assert os.open("/dev/tty", os.O_RDWR) >= 0
keeper = start_keeper(["sh", "-c", "cut -d' ' -f7 /proc/self/stat > " + sys.argv[1]])
os.waitpid(keeper, 0)
"""


def test_the_guest_never_has_the_operators_terminal(tmp_path: Path) -> None:
    # Programs of a PTY VM started from a root shell could type commands into it (TIOCSTI).
    out = tmp_path / "tty_nr"
    subprocess.run([sys.executable, "-c", CONTROLLING_TTY_OF_THE_GUEST, str(out)], check=True,
                   timeout=30)
    assert out.read_text() == "0\n"  # no controlling terminal


def test_the_guest_dies_with_the_pty_vm_even_by_sigkill(tmp_path: Path) -> None:
    parent = subprocess.Popen([sys.executable, "-c", (
        "import time; from pbotvm.host.machines.ptyvm import start_keeper\n"
        "start_keeper(['sleep', '4321.5']); time.sleep(60)")])
    try:
        assert until(lambda: processes_running("sleep", "4321.5"), 10)
    finally:
        parent.kill()
        parent.wait()
    assert until(lambda: not processes_running("sleep", "4321.5"), 5)
