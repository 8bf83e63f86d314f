"""The daemons' log lines: one per event, whatever a client or a program put into it."""

from __future__ import annotations

import datetime
import json
import logging
import os
import subprocess
import sys

import pytest

from pbotvm.logs import JsonFormatter, OneLineFormatter, escape_controls
from tests.support.stack import BIN, LocalStack


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


QUOTED = "a\rforged\n\x1b[2J\0\x7f\x9b\tok é \udc80 \\x41"


def test_a_json_line_is_ascii_and_carries_the_text_as_it_was() -> None:
    record = logging.LogRecord("x", logging.WARNING, __file__, 1, "read [%s]", (QUOTED,), None)
    line = JsonFormatter("vm-server").format(record)
    # Nothing in the line a terminal obeys or a shipper splits on: json.dumps escapes C0,
    # DEL, C1 and all that is not ASCII (not with ensure_ascii=False, which leaves DEL and C1).
    assert line.isascii() and line.isprintable()
    event = json.loads(line)
    assert event == {"time": event["time"], "daemon": "vm-server", "pid": os.getpid(),
                     "level": "warning", "message": f"read [{QUOTED}]"}
    assert event["time"].startswith(time_of(record))


def time_of(record: logging.LogRecord) -> str:
    return datetime.datetime.fromtimestamp(record.created).astimezone().strftime(
        "%Y-%m-%dT%H:%M:%S.")


def test_a_json_line_holds_its_traceback() -> None:
    try:
        raise ValueError("ours\x1b")
    except ValueError as e:
        failed = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), (
            type(e), e, e.__traceback__))
    line = JsonFormatter("guest-server").format(failed)
    assert "\n" not in line and line.isascii() and line.isprintable()
    event = json.loads(line)
    assert event["message"] == "failed" and event["level"] == "error"
    assert event["traceback"].startswith("Traceback (most recent call last):\n")
    assert event["traceback"].endswith("ValueError: ours\x1b")


@pytest.mark.parametrize("daemon, argv", [
    ("vm-server", [str(BIN / "vm-server")]),
    ("vm-server-worker", [sys.executable, "-m", "pbotvm.host.workers"]),
    ("vm-watchdog", [str(BIN / "vm-watchdog")]),
    ("guest-server", [str(BIN / "guest-server")]),
    ("ptyvm", [str(BIN / "pbotvm"), "pty", "run"]),
])
def test_every_daemon_refuses_a_log_format_it_does_not_know(daemon: str,
                                                            argv: list[str]) -> None:
    done = subprocess.run(argv, env={**os.environ, "PBOTVM_LOG_FORMAT": "xml"},
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30,
                          check=False)
    assert (done.returncode, done.stdout, done.stderr) == (
        1, "", f"{daemon}: PBOTVM_LOG_FORMAT='xml': use one of text, json\n")


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
