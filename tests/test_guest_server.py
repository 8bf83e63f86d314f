"""guest-server as a process on real PTYs, driven through the master side."""

import asyncio
import contextlib
import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pbotvm.guest import server, vsock
from pbotvm.guest.runner import RunSettings
from pbotvm.procs import running
from pbotvm.protocol import END_2023, Framing, ProtocolError, Request, Result, encode_request
from tests.conftest import until

GUEST_SERVER = str(Path(sys.executable).with_name("guest-server"))


class Guest:
    def __init__(self, log: Path, *args: str, via_env: bool = False,
                 session_leader: bool = False) -> None:
        self.serial, serial_slave = os.openpty()
        self.heart, heart_slave = os.openpty()
        # Kept open so the masters never see a hang-up while the guest (re)opens the slaves.
        self._slaves = [serial_slave, heart_slave]
        self.log = log
        self.started = time.monotonic()
        devices = {"PBOTVM_GUEST_SERIAL": os.ttyname(serial_slave),
                   "PBOTVM_GUEST_HEART": os.ttyname(heart_slave)}
        argv = [GUEST_SERVER, "--no-set-clock", *(args or ["--no-vsock"])]
        if not via_env:
            argv += ["--serial", devices["PBOTVM_GUEST_SERIAL"],
                     "--heart", devices["PBOTVM_GUEST_HEART"]]
        self.proc = subprocess.Popen(argv, env={**os.environ, **devices} if via_env else None,
                                     stdin=subprocess.DEVNULL, stderr=log.open("wb"),
                                     start_new_session=session_leader)
        self._lines = bytearray()

    def close(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(5)
        for fd in (self.serial, self.heart, *self._slaves):
            os.close(fd)

    def beat(self, timeout: float) -> float:
        """Wait for the next heartbeat line; returns when it came (seconds since start)."""
        while select.select([self.heart], [], [], 0)[0]:
            os.read(self.heart, 4096)  # earlier beats
        got = _read(self.heart, timeout)
        assert got.replace(b"\r", b"") == b"\n", got
        return time.monotonic() - self.started

    def log_with(self, text: str, timeout: float = 5) -> str:
        """The log once it has ``text`` (some lines are written after the reply, by design)."""
        until(lambda: text in self.log.read_text(), timeout)
        return self.log.read_text()

    def send(self, *requests: Request, framing: Framing = Framing.V2023) -> None:
        data = b"".join(b"".join(encode_request(r, framing)) for r in requests)
        self.write(data)

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.serial, view):]

    def results(self, n: int, timeout: float = 10) -> list[dict]:
        """The next ``n`` replies (``result:`` JSON, checked to end with ``result:end``)."""
        deadline = time.monotonic() + timeout
        replies: list[dict] = []
        while len(replies) < n:
            while b"\n" not in self._lines:
                self._lines += _read(self.serial, deadline - time.monotonic())
            line, _, rest = bytes(self._lines).partition(b"\n")
            self._lines[:] = rest
            if line == b"result:end":
                continue
            assert line.startswith(b"result:"), line
            replies.append(json.loads(line[len(b"result:"):]))
        return replies


def _read(fd: int, timeout: float) -> bytes:
    ready, _, _ = select.select([fd], [], [], max(timeout, 0))
    assert ready, "timed out"
    return os.read(fd, 1 << 20)


def sh(code: str, rid: str, lang: str = "sh") -> Request:
    return Request(lang=lang, sourcefile="prog.sh", execfile="prog.sh", cmdline="sh prog.sh",
                   code=code, id=rid)


@pytest.fixture(scope="module")
def guest(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Guest]:
    g = Guest(tmp_path_factory.mktemp("guest") / "guest.log")
    g.beat(5)
    yield g
    g.close()


@pytest.mark.root
def test_first_heartbeat_is_prompt(tmp_path: Path) -> None:
    g = Guest(tmp_path / "guest.log")
    try:
        assert g.beat(5) < 3
    finally:
        g.close()


@pytest.mark.root
@pytest.mark.parametrize("framing", [Framing.V2023, Framing.HEAD])
def test_request_is_answered_with_its_id(guest: Guest, framing: Framing) -> None:
    guest.send(sh("echo hello", f"id-{framing}"), framing=framing)
    [reply] = guest.results(1)
    assert reply == {"result": "hello\n", "id": f"id-{framing}", "exit": 0}


@pytest.mark.root
def test_back_to_back_requests_are_answered_in_order(guest: Guest) -> None:
    guest.send(sh("sleep 0.3; echo one", "1"), sh("echo two", "2"), framing=Framing.HEAD)
    guest.send(sh("echo three", "3"), sh("echo four", "4"))
    replies = guest.results(4)
    assert [(r["id"], r["result"]) for r in replies] == [
        ("1", "one\n"), ("2", "two\n"), ("3", "three\n"), ("4", "four\n")]


@pytest.mark.root
def test_bad_input_gets_answers_and_the_server_keeps_serving(guest: Guest) -> None:
    guest.write(b"\x00\xffgarbage" + END_2023)
    guest.write(b'{"lang": "sh", "code": ' + END_2023)
    guest.write(b"[1, 2, 3]" + END_2023)
    guest.write(b'{"code": "echo no cmdline"}' + END_2023)
    big = sh("echo " + "x" * 1_000_000 + " | wc -c", "big")
    guest.send(big, framing=Framing.HEAD)
    guest.send(sh("echo still here", "after"))
    replies = guest.results(6, timeout=30)
    texts = [r["result"] for r in replies]
    assert texts[0].startswith("Failed to decode request: request is not UTF-8")
    assert texts[1].startswith("Failed to decode request: request is not JSON")
    assert texts[2] == "Failed to decode request: request is not a JSON object\n"
    assert texts[3] == "Failed to decode request: request has no 'cmdline'\n"
    assert all(t.count("\n") == 1 and "id" not in r for t, r in zip(texts[:4], replies[:4],
                                                                   strict=True))
    assert (replies[4]["id"], texts[4]) == ("big", "1000001\n")
    assert (replies[5]["id"], texts[5]) == ("after", "still here\n")
    assert guest.proc.poll() is None


@pytest.mark.root
def test_a_half_frame_is_dropped_and_the_next_request_answered(guest: Guest) -> None:
    half = b'{"lang":"sh","cmdline":"sh prog.sh","code":"echo injected'
    # Our host's next request, at once: its frame start resynchronises the decoder.
    guest.write(half)
    guest.send(sh("echo ours", "ours"), framing=Framing.HEAD)
    # The original's vm-exec sends no frame start: the pause before it does.
    guest.write(half)
    time.sleep(1.3)
    original = json.dumps(sh("echo theirs", "theirs").to_json(), separators=(",", ":"))
    guest.write(original.encode() + END_2023)
    assert [(r.get("id"), r["result"]) for r in guest.results(2)] == [
        ("ours", "ours\n"), ("theirs", "theirs\n")]
    assert guest.log_with("partial frame dropped after an idle gap").count(
        "partial frame dropped") == 2


@pytest.mark.root
def test_unknown_language_runs_like_sh(guest: Guest) -> None:
    guest.send(sh("echo $((6 * 7))", "k", lang="klingon"))
    assert guest.results(1)[0]["result"] == "42\n"


@pytest.mark.root
def test_limits_reach_the_reply(guest: Guest) -> None:
    guest.send(sh("head -c 3000000 /dev/zero > f; echo done", "f"))
    [reply] = guest.results(1)
    # sh is bash, as on the original's reference guests: bash reports the signal.
    assert re.fullmatch(r"prog\.sh: line 1: +\d+ File size limit exceeded *head -c 3000000 "
                        r"/dev/zero > f\n done\n", reply["result"])


@pytest.mark.root
def test_log_has_one_line_per_request_event(guest: Guest) -> None:
    guest.send(sh("exit 3", "logged"))
    guest.results(1)
    log = guest.log_with("serial: request logged lang=sh finished in")
    assert "serial: request logged lang=sh started" in log
    assert "serial: request logged lang=sh finished in" in log and "exit=3 killed=None" in log


@pytest.mark.root
@pytest.mark.slow
def test_heart_beats_while_a_request_runs(guest: Guest) -> None:
    guest.send(sh("sleep 6; echo slept", "slow"))
    first = guest.beat(7)
    second = guest.beat(7)
    assert 4 < second - first < 6.5
    assert guest.results(1)[0]["result"] == "slept\n"


@pytest.mark.root
@pytest.mark.slow
def test_serial_hang_up_does_not_stop_the_heart(tmp_path: Path) -> None:
    g = Guest(tmp_path / "guest.log")
    try:
        g.beat(5)
        os.close(g._slaves.pop(0))
        os.close(g.serial)  # the serial device now fails every read
        g.serial = os.open("/dev/null", os.O_RDONLY)
        g.beat(7)
        g.beat(7)
        assert g.proc.poll() is None
        assert "reopening" in g.log.read_text()
    finally:
        g.close()


@pytest.mark.root
def test_vsock_connection_gets_one_answer() -> None:
    lines = server.Lines(serial="/nonexistent", heart="/nonexistent", vport=None,
                         set_clock=False)
    guest = server.GuestServer(lines, RunSettings())

    async def scenario() -> bytes:
        ours, theirs = socket.socketpair()
        task = asyncio.create_task(vsock.handle(theirs, guest.answer, "test"))
        loop = asyncio.get_running_loop()
        ours.setblocking(False)
        for piece in encode_request(sh("echo via vsock", "v")):
            await loop.sock_sendall(ours, piece)
        reply = b""
        while chunk := await asyncio.wait_for(loop.sock_recv(ours, 65536), 10):
            reply += chunk
        await task
        ours.close()
        return reply

    reply = asyncio.run(scenario())
    assert reply == b'result:{"result":"via vsock\\n","id":"v","exit":0}\nresult:end\n'


def test_the_host_is_cid_2_as_a_guest_sees_it() -> None:
    assert vsock.from_host((socket.VMADDR_CID_HOST, 1234))
    assert not vsock.from_host((1, 1234))  # VMADDR_CID_LOCAL, loopback
    assert not vsock.from_host((7, 1234))  # the guest's own CID


def test_vsock_serves_the_host_alone(caplog: pytest.LogCaptureFixture) -> None:
    """A peer other than the host (CID 2), such as a program of the guest on vsock loopback,
    is closed unanswered; a TCP peer stands in for it (CI hosts have no vsock loopback)."""
    asked: list[Request | ProtocolError] = []

    async def answer(item: Request | ProtocolError, via: str) -> Result:
        asked.append(item)
        return Result(text="served\n")

    async def scenario() -> bytes:
        with socket.create_server(("127.0.0.1", 0)) as listener:
            listener.setblocking(False)
            serving = asyncio.create_task(vsock.serve(listener, answer))
            reader, writer = await asyncio.open_connection(*listener.getsockname())
            try:
                for piece in encode_request(sh("echo sneaked in", "x")):
                    writer.write(piece)
                await writer.drain()
                return await asyncio.wait_for(reader.read(), 10)
            except ConnectionResetError:  # closed with the request unread
                return b""
            finally:
                writer.close()
                serving.cancel()

    assert asyncio.run(scenario()) == b""
    assert asked == []
    assert "vsock 127.0.0.1:" in caplog.text
    assert "refused: only the host (CID 2) may send requests" in caplog.text


@pytest.mark.root
def test_vsock_that_cannot_listen_is_one_log_line(tmp_path: Path) -> None:
    """The port is taken (or the kernel has no vsock): the serial line still serves."""
    port = 40000 + os.getpid() % 20000
    holder = None
    with contextlib.suppress(AttributeError, OSError):
        holder = socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)
        holder.bind((socket.VMADDR_CID_ANY, port))
    g = Guest(tmp_path / "guest.log", "--vsock", "--vport", str(port), via_env=True)
    try:
        g.beat(5)
        g.send(sh("echo serial only", "s"))
        assert g.results(1)[0]["result"] == "serial only\n"
        assert [line for line in g.log.read_text().splitlines()
                if "vsock" in line and "serial line only" in line]
    finally:
        g.close()
        if holder is not None:
            holder.close()


@pytest.mark.root
def test_health_check_of_upstream_head_is_answered(guest: Guest) -> None:
    guest.beat(10)  # the line is open
    os.write(guest.heart, b"\n")  # what HEAD's `vm-exec -health` sends
    got = b""
    deadline = time.monotonic() + 5
    while b":END\r\n" not in got and time.monotonic() < deadline:
        got += _read(guest.heart, 1)
    lines = [line for line in got.split(b"\r\n") if line.strip()]
    assert lines[-1] == b":END" and lines[-2].startswith(b"guest-server alive; load ")


def test_health_text() -> None:
    from pbotvm.guest.serial_line import health_text

    text = health_text("0.50 0.25 0.10 1/90 4242\n", "MemTotal: 1 kB\nMemAvailable:  836608 kB\n")
    assert text == b"guest-server alive; load 0.50 0.25 0.10; memory available 817 MiB\r\n:END\r\n"
    assert health_text("", "").startswith(b"guest-server alive; load unknown; memory available "
                                          b"unknown\r\n")


def _children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _new_child(pid: int, old: set[int], timeout: float = 5) -> int:
    """The one child of ``pid``, once the ``old`` ones are gone."""
    def new_child() -> int | None:
        children = _children(pid)
        return children[0] if len(children) == 1 and children[0] not in old else None

    child = until(new_child, timeout)
    assert child is not None, _children(pid)
    return child


@pytest.mark.root
def test_each_request_runs_in_a_supervisor_forked_before_it_came(tmp_path: Path) -> None:
    g = Guest(tmp_path / "guest.log")
    try:
        g.beat(5)
        used: set[int] = set()
        for rid in ("first", "second"):
            spare = _new_child(g.proc.pid, used)  # idle, waiting for the request
            # The program runs in the PID namespace the spare was born the first process of.
            box = os.readlink(f"/proc/{spare}/ns/pid")
            assert box != os.readlink(f"/proc/{g.proc.pid}/ns/pid")
            g.send(sh("readlink /proc/self/ns/pid", rid))
            assert g.results(1) == [{"result": f"{box}\n", "id": rid, "exit": 0}]
            used.add(spare)
        last = _new_child(g.proc.pid, used)
    finally:
        g.close()
    # The server's end of the spare's request pipe closed with it: the spare exits too.
    assert until(lambda: not running(last), 5)


@pytest.mark.root
def test_opening_its_ttys_gives_it_no_controlling_terminal(tmp_path: Path) -> None:
    """As a session leader without one (as under an init), a tty opened without O_NOCTTY
    would become guest-server's controlling terminal, and its programs could type into it."""
    g = Guest(tmp_path / "guest.log", session_leader=True)
    try:
        g.beat(5)  # both ttys are open
        g.send(sh("echo hi", "r"))
        assert g.results(1)[0]["result"] == "hi\n"
        with open(f"/proc/{g.proc.pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
        assert (int(fields[3]), int(fields[4])) == (g.proc.pid, 0)  # session, tty_nr
    finally:
        g.close()
