"""vsock or the serial line: chosen in the background once per guest boot, so no request
waits for a vsock connect that cannot succeed; not tried at all on a host where no guest can
have a vsock device.

The unreachable CID is real: on a host with /dev/vsock and no guest at CID 7 a connect hangs
until its time-out (on a host without vsock it fails at once; the tests hold either way).
Whether the host has vhost-vsock is a file the tests put there or not.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from pbotvm.config import Machine
from pbotvm.host.machines import transport
from pbotvm.host.machines.transport import GuestUnreachable, TransportChoice, exchange
from pbotvm.protocol import Request, RequestDecoder, Result, ResultDecoder, encode_result

UNREACHABLE_CID = 7  # the original's default CID; no guest has it on a test machine
QUICK = 0.3  # a request over a local socket takes milliseconds; the vsock time-out is 1 s


@pytest.fixture(autouse=True)
def vhost_vsock(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A host with vhost-vsock, where a guest can have a vsock device (remove the file for
    one without)."""
    device = tmp_path / "vhost-vsock"
    device.touch()
    monkeypatch.setattr(transport, "VHOST_VSOCK", str(device))
    return device


async def fake_guest(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answers each request with its code and its id, as guest-server would."""
    decoder = RequestDecoder()
    with contextlib.suppress(ConnectionError):
        while data := await reader.read(65536):
            for item in decoder.feed(data):
                assert isinstance(item, Request)
                writer.write(encode_result(Result(item.code, id=item.id)))
                await writer.drain()
    writer.close()


@contextlib.asynccontextmanager
async def serial_guest() -> AsyncIterator[int]:
    server = await asyncio.start_server(fake_guest, "127.0.0.1", 0)
    async with server:
        yield server.sockets[0].getsockname()[1]


async def ask(machine: Machine, choice: TransportChoice, code: str) -> tuple[str, str, float]:
    """The answer's text, the channel it came over, and the seconds it took."""
    request = Request(lang="sh", sourcefile="prog.sh", execfile="prog.sh", cmdline="sh prog.sh",
                      code=code, id=code)
    decoder = ResultDecoder(request.id)
    start = time.monotonic()
    channel = await asyncio.wait_for(exchange(machine, request, decoder, choice), 10)
    return decoder.text, channel, time.monotonic() - start


def test_no_request_waits_for_an_unreachable_cid(caplog: pytest.LogCaptureFixture) -> None:
    boot = [1]

    async def scenario() -> list[tuple[str, str, float]]:
        async with serial_guest() as port:
            machine = Machine("m", serial=port, cid=UNREACHABLE_CID)
            choice = TransportChoice("m", lambda: boot[0])
            answers = [await ask(machine, choice, f"first-{i}") for i in range(3)]
            await choice.probed(machine)  # the probe has given up by now
            answers += [await ask(machine, choice, f"decided-{i}") for i in range(3)]
            choice.start_over()  # a revert
            answers.append(await ask(machine, choice, "after-revert"))
            boot[0] += 1  # the heartbeat came back: the guest restarted
            answers.append(await ask(machine, choice, "after-restart"))
            return answers

    with caplog.at_level(logging.INFO, logger="pbotvm.transport"):
        answers = asyncio.run(scenario())
    for text, channel, seconds in answers:
        assert channel.startswith("serial 127.0.0.1:"), (text, channel)
        assert seconds < QUICK, (text, seconds)
    assert [text for text, _, _ in answers][-1] == "after-restart\n"
    # Said once per decision, with the reason in words (it used to be "unavailable ()").
    decisions = [r.getMessage() for r in caplog.records]
    assert len(decisions) == 1, decisions
    assert decisions[0].startswith("m: requests go over serial 127.0.0.1:")
    assert f"(vsock {UNREACHABLE_CID}:5555: " in decisions[0] and "()" not in decisions[0]


FakeOpen = Callable[[int, int, float], object]


def vsock_to(port: int, fails: list[bool]) -> FakeOpen:
    """A stand-in for AF_VSOCK (the machine has no guest to reach): a TCP connection to
    ``port``, or a reset while ``fails[0]`` is set."""
    async def open_vsock(cid: int, vport: int, timeout: float) -> transport.Streams:
        if fails[0]:
            raise ConnectionResetError(104, "Connection reset by peer")
        return await asyncio.open_connection("127.0.0.1", port)
    return open_vsock


def test_vsock_is_used_once_it_answers_and_given_up_at_once_when_it_fails(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    fails = [False]

    async def scenario() -> tuple[list[tuple[str, str, float]], int]:
        async with serial_guest() as serial_port, serial_guest() as vsock_port:
            monkeypatch.setattr(transport, "_open_vsock", vsock_to(vsock_port, fails))
            machine = Machine("m", serial=serial_port, cid=42)
            choice = TransportChoice("m")
            answers = [await ask(machine, choice, "while-probing")]
            await choice.probed(machine)
            answers.append(await ask(machine, choice, "probed"))
            fails[0] = True  # the guest's vsock listener went away
            answers += [await ask(machine, choice, f"fallen-back-{i}") for i in range(2)]
            return answers, serial_port

    with caplog.at_level(logging.INFO, logger="pbotvm.transport"):
        answers, serial_port = asyncio.run(scenario())
    assert [(text, channel.split()[0]) for text, channel, _ in answers] == [
        ("while-probing\n", "serial"), ("probed\n", "vsock"), ("fallen-back-0\n", "serial"),
        ("fallen-back-1\n", "serial")]
    assert all(seconds < QUICK for _, _, seconds in answers)
    assert [r.getMessage().split(" until")[0] for r in caplog.records] == [
        "m: requests go over vsock 42:5555", f"m: requests go over serial 127.0.0.1:{serial_port}"]
    assert "vsock 42:5555 failed (Connection reset by peer)" in caplog.records[-1].getMessage()


def test_a_guest_with_vsock_only_is_reached_while_the_probe_runs(
        monkeypatch: pytest.MonkeyPatch) -> None:
    async def scenario() -> tuple[str, str, float]:
        async with serial_guest() as vsock_port:
            monkeypatch.setattr(transport, "_open_vsock", vsock_to(vsock_port, [False]))
            # Nothing listens on the serial port: the request waits for the probe instead.
            return await ask(Machine("m", serial=1, cid=42), TransportChoice("m"), "vsock-only")

    text, channel, _ = asyncio.run(scenario())
    assert (text, channel) == ("vsock-only\n", "vsock 42:5555")


def test_without_vhost_vsock_the_host_never_tries_vsock(
        vhost_vsock: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """No guest of such a host has a vsock device (`pbotvm libvirt up` attaches none there):
    neither a probe after each revert nor a one-off connection's try, and one line says why."""
    vhost_vsock.unlink()
    tries: list[int] = []

    async def no_vsock(cid: int, vport: int, timeout: float) -> transport.Streams:
        tries.append(cid)
        raise TimeoutError

    async def scenario() -> list[tuple[str, str, float]]:
        async with serial_guest() as port:
            monkeypatch.setattr(transport, "_open_vsock", no_vsock)
            machine = Machine("m", serial=port, cid=UNREACHABLE_CID)
            choice = TransportChoice("m")
            answers = []
            for i in range(3):
                answers.append(await ask(machine, choice, f"request-{i}"))
                choice.start_over()  # a revert
            await asyncio.sleep(0.1)  # a probe, had one started, would have tried by now
            decoder = ResultDecoder("one-off")
            await exchange(machine, Request(lang="sh", sourcefile="prog.sh", execfile="prog.sh",
                                            cmdline="sh prog.sh", code="x", id="one-off"),
                           decoder)
            return answers

    with caplog.at_level(logging.INFO, logger="pbotvm.transport"):
        answers = asyncio.run(scenario())
    assert tries == []
    assert all(channel.startswith("serial ") for _, channel, _ in answers)
    assert [r.getMessage() for r in caplog.records] == [
        f"m: requests go over {answers[0][1]} (this host has no {vhost_vsock}: no guest here "
        "has a vsock device)"]


def test_no_guest_at_all_is_one_clear_error() -> None:
    async def scenario() -> None:
        await ask(Machine("m", serial=1, cid=0), TransportChoice("m"), "x")

    with pytest.raises(GuestUnreachable, match=r"^serial 127\.0\.0\.1:1: Connection refused$"):
        asyncio.run(scenario())
