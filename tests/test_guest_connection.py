"""The pipeline when the guest's end of the serial connection goes away mid-request."""

from __future__ import annotations

import asyncio
import socket
import struct

from pbotvm.config import HostSettings
from pbotvm.host.vmexec import OFFLINE, Answer, Execution


async def ask_a_guest_that_resets() -> Answer:
    async def guest(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b":end:\n")
        # What a QEMU killed while a request is on the line looks like: a reset.
        writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                                   struct.pack("ii", 1, 0))
        writer.transport.abort()

    server = await asyncio.start_server(guest, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        settings = HostSettings.from_env({"PBOTVM_SERIAL": str(port), "PBOTVM_CID": "0",
                                          "PBOTVM_STDIN_COMMAND": ""})
        execution = Execution(settings)
        prepared = await execution.prepare("-lang=sh echo hi")
        assert not isinstance(prepared, Answer)
        return await execution.send(prepared)


def test_a_reset_by_the_guest_is_answered_as_offline() -> None:
    # Not a ConnectionError escaping to vm-server, where it passed for the client leaving and
    # the user got no answer at all.
    assert asyncio.run(ask_a_guest_that_resets()).text == OFFLINE
