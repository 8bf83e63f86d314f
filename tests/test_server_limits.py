"""vm-server under load and abuse, through vm-client on the PTY stack: what it holds is
bounded, every answer reaches its own client, and a frame without the request's id on the
serial line never becomes anyone's answer."""

from __future__ import annotations

import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from pbotvm.host.intake import MAX_CLIENTS, TOO_MANY, TOO_MUCH
from tests.conftest import make_stack, processes_running, until
from tests.support.stack import LocalStack

pytestmark = [pytest.mark.root, pytest.mark.slow]

MB = 1024 * 1024


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with make_stack(tmp_path_factory.mktemp("limits"), PBOTVM_TIMEOUT="30",
                    PBOTVM_HEART_STALE="7") as s:
        yield s


def test_a_frame_without_the_request_id_never_becomes_the_answer(stack: LocalStack) -> None:
    found = re.search(r"PTY VM: serial (\S+) on", stack.log("ptyvm"))
    assert found
    with ThreadPoolExecutor(1) as pool:
        reply = pool.submit(stack.ask, "-lang=sh sleep 1.37; echo mine")
        assert until(lambda: processes_running("sleep", "1.37"), 10)
        # Put on the guest's side of the serial line while the request waits for its answer.
        fd = os.open(found[1], os.O_WRONLY | os.O_NOCTTY)
        try:
            os.write(fd, b'result:{"result":"INJECTED"}\nresult:end\n')
        finally:
            os.close(fd)
        assert reply.result() == "mine"  # was "INJECTED"
    assert stack.ask("-lang=sh echo next") == "next"
    assert "dropped 1 result(s) not for request" in stack.log("vm-server")


def test_over_the_connection_limit_a_client_gets_a_busy_line(stack: LocalStack) -> None:
    idle = [socket.create_connection(("127.0.0.1", stack.server)) for _ in range(MAX_CLIENTS)]
    try:
        time.sleep(1)  # all accepted; each holds its place for 5 s
        assert stack.ask("-lang=sh echo x") == TOO_MANY
    finally:
        for conn in idle:
            conn.close()
    assert until(lambda: stack.ask("-lang=sh echo after") == "after", 10)


def rss(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    found = re.search(r"^VmRSS:\s+(\d+) kB", status, re.M)
    assert found
    return int(found[1]) * 1024


def send_partial_line(port: int, size: int) -> bytes:
    """``size`` bytes without a newline; what vm-server answered (b"" when it only closed)."""
    got = b""
    with socket.create_connection(("127.0.0.1", port)) as conn:
        conn.settimeout(30)
        try:
            for _ in range(size // MB):
                conn.sendall(b"x" * MB)
        except OSError:
            pass  # refused: it stopped reading
        try:
            while chunk := conn.recv(65536):
                got += chunk
        except OSError:
            pass
    return got


def test_partial_lines_from_many_clients_cannot_exhaust_its_memory(stack: LocalStack) -> None:
    pid = stack.pid("vm-server")
    before = rss(pid)
    peak = before
    flooding = True

    def sample() -> None:
        nonlocal peak
        while flooding:
            peak = max(peak, rss(pid))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        with ThreadPoolExecutor(40) as pool:
            replies = list(pool.map(lambda _: send_partial_line(stack.server, 15 * MB),
                                    range(40)))
    finally:
        flooding = False
        sampler.join()
    # 40 x 15 MB took it from 24 MB to 582 MB; now it holds at most 32 MiB of lines.
    assert peak - before < 100 * MB, (before, peak)
    refused = replies.count(TOO_MUCH.encode() + b"\n")
    assert refused >= 30 and replies.count(b"") == 40 - refused, replies
    assert stack.ask("-lang=sh echo still here") == "still here"


def test_fifty_clients_ten_requests_each(stack: LocalStack) -> None:
    def client(n: int) -> list[tuple[str, str]]:
        return [(f"client {n} request {i}",
                 stack.ask(f"-lang=sh echo client {n} request {i}", channel=f"#load{n}"))
                for i in range(10)]

    with ThreadPoolExecutor(50) as pool:
        results = [pair for answers in pool.map(client, range(50)) for pair in answers]
    assert len(results) == 500
    assert [got for want, got in results if got != want] == []
