"""The PTY VM's TCP bridge must behave like QEMU's socket chardev."""

import asyncio
import os

from pbotvm.host.ptyvm import Bridge, Pty
from pbotvm.host.stack import free_port


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
