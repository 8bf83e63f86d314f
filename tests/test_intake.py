"""vm-server's bounds on what it holds of its clients' lines (no processes)."""

from __future__ import annotations

import asyncio

import pytest

from pbotvm.host.intake import TOO_LARGE, TOO_MANY, TOO_MUCH, Intake, Refused, read_line


def read(data: list[bytes], intake: Intake, max_line: int = 1000) -> bytes:
    async def scenario() -> bytes:
        reader = asyncio.StreamReader()
        for piece in data:
            reader.feed_data(piece)
        reader.feed_eof()
        with intake.client() as allowance:
            return await read_line(reader, allowance, max_line)

    return asyncio.run(scenario())


@pytest.mark.parametrize(("data", "line"), [
    ([b"one\n", b"two\n"], b"one"),
    ([b"\n \r\n\t\n", b"after blanks\r\n"], b"after blanks\r"),
    ([b"no newline"], b"no newline"),
    ([b"split ", b"over ", b"pieces\nrest"], b"split over pieces"),
    ([b"  \n"], b""),
    ([], b""),
])
def test_the_first_line_that_is_not_blank(data: list[bytes], line: bytes) -> None:
    intake = Intake()
    assert read(data, intake) == line
    assert (intake.clients, intake.held) == (0, 0)  # all given back


@pytest.mark.parametrize("data", [[b"x" * 1001], [b"x" * 600, b"x" * 600 + b"\n"],
                                  [b"x" * 1001 + b"\n"]])
def test_a_line_over_the_limit_is_refused(data: list[bytes]) -> None:
    with pytest.raises(Refused, match=TOO_LARGE.replace("(", r"\(").replace(")", r"\)")):
        read(data, Intake())


def test_bytes_held_by_all_clients_are_bounded() -> None:
    intake = Intake(max_bytes=100)
    with intake.client() as first:
        first.take(60)
        assert read([b"x" * 39 + b"\n"], intake) == b"x" * 39  # exactly what is left
        with pytest.raises(Refused, match="too much request data"):
            read([b"y" * 30, b"y" * 10 + b"\n"], intake)
        assert intake.held == 60
        with pytest.raises(Refused):
            first.take(41)
        assert intake.held == first.held == 0  # a refused client gives back what it held
    assert intake.held == 0
    assert str(Refused(TOO_MUCH)) == TOO_MUCH


def test_connections_are_bounded() -> None:
    intake = Intake(max_clients=2)
    with intake.client(), intake.client():
        with pytest.raises(Refused) as e, intake.client():
            pass
        assert str(e.value) == TOO_MANY and intake.clients == 2
    with intake.client():
        assert intake.clients == 1
