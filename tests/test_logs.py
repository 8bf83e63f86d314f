"""The daemons' log lines: one per event, whatever a client or a program put into it."""

from __future__ import annotations

import logging

import pytest

from pbotvm.logs import OneLineFormatter, escape_controls
from tests.support.stack import LocalStack


def test_control_characters_are_escaped() -> None:
    assert escape_controls("a\rb\nc\x1b[2J\0\x7f\x9b\tok é \\x41") == (
        "a\\x0Db\\x0Ac\\x1B[2J\\x00\\x7F\\x9B\\x09ok é \\x41")


def test_the_formatter_escapes_the_line_and_keeps_a_traceback() -> None:
    formatter = OneLineFormatter("%(name)s %(message)s")
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "read [%s]", ("a\rforged",), None)
    assert formatter.format(record) == "x read [a\\x0Dforged]"
    try:
        raise ValueError("ours")
    except ValueError as e:
        failed = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed\n", (), (
            type(e), e, e.__traceback__))
    first, *traceback = formatter.format(failed).split("\n")
    assert first == "x failed\\x0A" and traceback[-1] == "ValueError: ours"


@pytest.mark.root
def test_nothing_a_client_or_program_sends_breaks_a_vm_server_line(stack: LocalStack) -> None:
    # A program's \r went into the "answered" line as is: in a terminal the rest of the line
    # replaced its start, a forged line of the program's choice.
    forged = "2024-01-01 00:00:00.000 vm-server[1] FORGED"
    assert stack.ask(f"-lang=sh printf 'x\\r{forged}'") == f"x\r{forged}"
    assert stack.client("-lang=sh", "echo", "\x1b[2Jhi").stdout == "<esc>[2Jhi\n"
    log = stack.logs["vm-server"].read_bytes()
    assert f"x\\x0D{forged}".encode() in log
    assert b"\\x1B[2Jhi" in log
    assert not set(log) & {*range(0x20), 0x7F} - set(b"\n")
