"""The heartbeat monitor against both kinds of guest: 2023 (beats) and HEAD (answers polls)."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from pbotvm.config import Machine
from pbotvm.host.machines.heartbeat import HeartbeatMonitor
from pbotvm.protocol import Framing


async def beating_guest(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """2023: a line every so often, whatever the host writes."""
    with contextlib.suppress(ConnectionError):
        while True:
            writer.write(b"\n")
            await writer.drain()
            await asyncio.sleep(0.1)


async def polled_guest(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """HEAD: the tty echoes the poll, then the answer ends with :END."""
    with contextlib.suppress(ConnectionError):
        while await reader.readline():
            writer.write(b"\r\nprocs memory\r\n 1 0 123\r\n:END\r\n")
            await writer.drain()


async def answering_guest(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Ours between two beats: silent, but it answers a poll at once."""
    with contextlib.suppress(ConnectionError):
        while await reader.readline():
            writer.write(b"load 0.10 0.20 0.30, memory available 900 MiB\n:END\n")
            await writer.drain()


async def alive(guest: object, poll: bool) -> bool:
    server = await asyncio.start_server(guest, "127.0.0.1", 0)  # type: ignore[arg-type]
    async with server:
        monitor = HeartbeatMonitor(Machine(
            name="t", heart=server.sockets[0].getsockname()[1],
            framing=Framing.HEAD if poll else Framing.V2023), 5.0)
        monitor.start()
        try:
            await asyncio.sleep(0.5)
            return monitor.alive()
        finally:
            await monitor.stop()


def test_a_2023_guest_beats_by_itself() -> None:
    assert asyncio.run(alive(beating_guest, poll=False))


def test_a_2023_machine_is_asked_once_on_connecting_not_left_until_the_next_beat() -> None:
    # The first request after vm-server started was "resetting" for up to 5 s.
    assert asyncio.run(alive(answering_guest, poll=False))


def test_a_head_guest_is_polled_and_counts_only_its_end_line() -> None:
    assert asyncio.run(alive(polled_guest, poll=True))
    # Blank lines (beats or the tty echoing our poll) are no answer.
    assert not asyncio.run(alive(beating_guest, poll=True))


@pytest.mark.root
def test_a_head_framed_machine_is_watched_by_polls_end_to_end(tmp_path) -> None:
    from tests.conftest import make_stack

    # Our guest beats and answers polls; with HEAD framing vm-server counts only the answers.
    with make_stack(tmp_path, PBOTVM_FRAMING="head") as s:
        assert s.ask("-lang=sh echo via head") == "via head"
        assert "connected to heartbeat" in s.log("vm-server")
