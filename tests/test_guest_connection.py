"""The pipeline when the guest's end of the serial connection goes away mid-request."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Awaitable, Callable

import pytest

from pbotvm.config import HostSettings
from pbotvm.host.request.vmexec import OFFLINE, Answer, Execution

Guest = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def ask_a_guest_that_resets() -> Answer:
    async def guest(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b":end:\n")
        # What a QEMU killed while a request is on the line looks like: a reset.
        writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                                   struct.pack("ii", 1, 0))
        writer.transport.abort()

    return await ask(guest)


async def ask(guest: Guest) -> Answer:
    server = await asyncio.start_server(guest, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        settings = HostSettings.from_env({"PBOTVM_SERIAL": str(port), "PBOTVM_CID": "0",
                                          "PBOTVM_STDIN_COMMAND": ""})
        execution = Execution(settings)
        prepared = await execution.prepare("-lang=sh echo hi")
        assert not isinstance(prepared, Answer)
        reply = await execution.send(prepared)
        assert isinstance(reply, Answer)  # never a guest's reply to finish
        return reply


def test_a_reset_by_the_guest_is_answered_as_offline() -> None:
    # Not a ConnectionError escaping to vm-server, where it passed for the client leaving and
    # the user got no answer at all.
    answer = asyncio.run(ask_a_guest_that_resets())
    assert answer.text == OFFLINE and answer.lost


@pytest.mark.parametrize("sent", [b"", b'result:{"result":"half of it","id":"x"}\n'])
def test_a_guest_that_closes_before_result_end_is_offline(sent: bytes) -> None:
    # The PTY VM killed mid-request: the user got an empty line (or half an answer).
    async def guest(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b":end:\n")
        writer.write(sent)
        await writer.drain()
        writer.close()

    answer = asyncio.run(ask(guest))
    assert (answer.text, answer.status, answer.lost) == (OFFLINE, 3, True)
