"""vm-server's metrics: outcomes and labels (pure), the exposition of a private registry, the
endpoint; then a stack with PBOTVM_METRICS, scraped while requests go through vm-client."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from pbotvm.config import HostSettings
from pbotvm.host import intake, metrics, server
from pbotvm.host.machines.machine_state import Status
from pbotvm.host.metrics import Metrics
from pbotvm.host.request.vmexec import OFFLINE, Answer, Reply
from tests.conftest import make_stack, until
from tests.support.stack import BIN, LocalStack, free_port

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(text: str) -> Samples:
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def value(found: Samples, name: str, **labels: str) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


def test_outcomes() -> None:
    assert metrics.guest_outcome(Reply("hi\n", exit=0)) == "ok"
    assert metrics.guest_outcome(Reply("hi\n")) == "ok"  # a guest that gives no status
    assert metrics.guest_outcome(Reply("Exit 3.\n", exit=3)) == "error"
    assert metrics.guest_outcome(Reply("[Killed]", killed="cpu", exit=137)) == "killed"
    assert metrics.guest_outcome(Reply("so far", timed_out=True)) == "timeout"
    assert metrics.host_outcome(Answer("usage: ...", 1)) == "refused"
    assert metrics.host_outcome(Answer("c2x: gcc ...")) == "local"
    assert metrics.intake_outcome(intake.Refused(intake.TOO_MANY)) == "busy"
    assert metrics.intake_outcome(intake.Refused(intake.TOO_MUCH)) == "busy"
    assert metrics.intake_outcome(intake.Refused(intake.TOO_LARGE)) == "refused"
    # vm-server's own answers in the guest's place.
    assert [server._outcome(Answer(text, 3)) for text in (server.BUSY, server.RESETTING,
                                                          OFFLINE)] == ["busy", "resetting",
                                                                        "offline"]


def test_labels_have_few_values() -> None:
    assert metrics.language("c2x") == "c2x" and metrics.language("python3") == "python3"
    assert metrics.language("../../etc/passwd") == metrics.language("") == "other"
    # Each reason vm-server gives (server._run, _heal_reason), and one it does not know yet.
    reasons = {"time-out": "timeout", "guest killed the program: memory": "killed",
               "connection to the guest lost mid-request": "lost",
               "no heartbeat for 31 s": "silent", "vm-server stopped mid-request": "stopping",
               "a pool's new reason": "other"}
    assert {reason: metrics.revert_reason(reason) for reason in reasons} == reasons


def test_the_exposition_of_vm_servers_own_registry() -> None:
    now = time.time()
    guests = [Status("pbot-vm", 1, guest="127.0.0.1:5555", started=now - 60, free_since=now,
                     last_beat=now - 2),
              Status("pbot-vm", 1, guest="127.0.0.1:5557", started=now - 60, free_since=now,
                     serving_since=now - 1, last_beat=now - 1),
              Status("big", 1, guest="/run/big.sock", started=now - 60, free_since=now)]
    first, second = Metrics(lambda: guests), Metrics(list)  # neither uses the global registry
    first.request_done("sh", "ok", 0.02)
    first.request_done("sh", "ok", 0.3)
    first.request_done("no such language", "refused", 0.001)
    first.request_done("other", "busy", None)  # turned away at the door: counted, not timed
    first.waited("pbot-vm", 0.2)
    first.revert_started("pbot-vm", "time-out")
    first.revert_ended("pbot-vm", 1.5)
    found = samples(generate_latest(first.registry).decode())
    assert value(found, "pbotvm_requests_total", lang="sh", outcome="ok") == 2
    assert value(found, "pbotvm_requests_total", lang="other", outcome="refused") == 1
    assert value(found, "pbotvm_requests_total", lang="other", outcome="busy") == 1
    assert value(found, "pbotvm_request_duration_seconds_count", outcome="ok") == 2
    assert value(found, "pbotvm_request_duration_seconds_bucket", outcome="ok", le="0.025") == 1
    assert value(found, "pbotvm_request_duration_seconds_count", outcome="busy") == 0
    assert value(found, "pbotvm_queue_wait_seconds_sum", machine="pbot-vm") == 0.2
    assert value(found, "pbotvm_reverts_total", machine="pbot-vm", reason="timeout") == 1
    assert value(found, "pbotvm_revert_duration_seconds_bucket", machine="pbot-vm",
                 le="2.5") == 1
    assert {state: value(found, "pbotvm_guests", machine="pbot-vm", state=state)
            for state in ("idle", "serving", "reverting", "silent")} == {
        "idle": 1, "serving": 1, "reverting": 0, "silent": 0}
    assert value(found, "pbotvm_guests", machine="big", state="silent") == 1
    assert 2 <= value(found, "pbotvm_heartbeat_age_seconds", machine="pbot-vm",
                      guest="127.0.0.1:5555") < 3
    assert 60 <= value(found, "pbotvm_heartbeat_age_seconds", machine="big",
                       guest="/run/big.sock") < 61
    assert "pbotvm_requests_total{" not in generate_latest(second.registry).decode()
    assert "pbotvm_requests" not in generate_latest(REGISTRY).decode()


def test_the_endpoint_serves_and_stops() -> None:
    port = free_port()
    endpoint = Metrics(list).serve("127.0.0.1", port)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
            assert reply.status == 200
            assert "# TYPE pbotvm_requests_total counter" in reply.read().decode()
    finally:
        endpoint.shutdown()
        endpoint.server_close()
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5)


def test_an_endpoint_off_loopback_is_warned_about(monkeypatch: pytest.MonkeyPatch,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    served: list[str] = []

    def start(port: int, addr: str, registry: object) -> tuple[None, None]:
        served.append(addr)
        return None, None

    monkeypatch.setattr(metrics, "start_http_server", start)
    with caplog.at_level(logging.INFO, "pbotvm.metrics"):
        for addr in ("127.0.0.1", "::1", "localhost", "192.0.2.7"):
            Metrics(list).serve(addr, 9100)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert served == ["127.0.0.1", "::1", "localhost", "192.0.2.7"]
    assert warnings == ["metrics on 192.0.2.7: anyone who can reach it reads the machines' "
                        "names and traffic"]


def test_a_metrics_port_vm_server_cannot_have_stops_it_with_one_line(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**os.environ, "PBOTVM_STATE_DIR": str(tmp_path), "PBOTVM_MACHINES": "",
               "PBOTVM_SERVER": str(free_port()), "PBOTVM_METRICS": str(port),
               "PBOTVM_STDIN_COMMAND": "", "XDG_CONFIG_HOME": str(tmp_path)}
        done = subprocess.run([str(BIN / "vm-server")], env=env, capture_output=True,
                              text=True, timeout=30, check=False)
    assert done.returncode == 1
    assert re.fullmatch(rf".* vm-server\[\d+\] cannot serve metrics on 127\.0\.0\.1:{port}: "
                        "Address already in use", done.stderr.splitlines()[-1])
    assert "Traceback" not in done.stderr


def test_a_request_cut_short_by_the_stop_and_one_turned_away_are_counted(
        tmp_path: Path) -> None:
    vm = server.VmServer(HostSettings.from_env({
        "HOME": str(tmp_path), "PBOTVM_STATE_DIR": str(tmp_path), "PBOTVM_STDIN_COMMAND": ""}))

    async def scenario() -> tuple[str | None, str | None]:
        with vm.intake.client() as allowance:
            too_large = asyncio.StreamReader(limit=intake.READ_CHUNK)
            too_large.feed_data(b"x" * (intake.MAX_LINE + 1))
            refused = await vm._reply(too_large, allowance, "peer")
        with vm.intake.client() as allowance:
            silent = asyncio.create_task(
                vm._reply_unless_stopped(asyncio.StreamReader(), allowance, "peer"))
            await asyncio.sleep(0.05)
            vm._stopping.set()  # the grace is over: the line never came
            return refused, await silent

    assert asyncio.run(scenario()) == (intake.TOO_LARGE, server.STOPPING)
    found = samples(generate_latest(vm.metrics.registry).decode())
    assert value(found, "pbotvm_requests_total", lang="other", outcome="refused") == 1
    assert value(found, "pbotvm_requests_total", lang="other", outcome="stopping") == 1


# --- the PTY stack, scraped -------------------------------------------------------------------

@pytest.fixture(scope="module")
def scraped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalStack, int]]:
    port = free_port()
    with make_stack(tmp_path_factory.mktemp("metrics"), PBOTVM_TIMEOUT="2",
                    PBOTVM_HEART_STALE="7", PBOTVM_METRICS=f"127.0.0.1:{port}",
                    PBOTVM_LOG_FORMAT="json") as s:
        yield s, port


def scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        return samples(reply.read().decode())


@pytest.mark.root
def test_the_counters_follow_the_requests_sent(scraped: tuple[LocalStack, int]) -> None:
    s, port = scraped
    before = scrape(port)

    def grew(after: Samples, name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    asking = threading.Thread(target=s.ask, args=("-lang=sh sleep 1",))
    asking.start()
    assert until(lambda: value(scrape(port), "pbotvm_guests", machine="pbot-vm",
                               state="serving") == 1, 5)
    asking.join()
    assert s.ask("-lang=sh echo one") == "one"
    assert s.ask("-lang=python3 print(2)") == "2"
    assert s.ask("-lang=sh exit 3") == "Exit 3."
    assert s.ask("-lang=nosuch x").startswith("Language 'nosuch' is not supported")
    assert s.ask("-lang=sh -info x") == "sh cmdline: sh prog.sh"
    assert s.ask("-lang=sh sleep 5").startswith("[Timed-out]")
    after = until(lambda: (found := scrape(port)) and value(
        found, "pbotvm_revert_duration_seconds_count", machine="pbot-vm") and found, 15)
    assert after
    assert {(lang, outcome): grew(after, "pbotvm_requests_total", lang=lang, outcome=outcome)
            for lang, outcome in [("sh", "ok"), ("python3", "ok"), ("sh", "error"),
                                  ("other", "refused"), ("other", "local"),
                                  ("sh", "timeout")]} == {
        ("sh", "ok"): 2, ("python3", "ok"): 1, ("sh", "error"): 1, ("other", "refused"): 1,
        ("other", "local"): 1, ("sh", "timeout"): 1}
    total = sum(grew(after, name, **dict(labels)) for name, labels in after
                if name == "pbotvm_requests_total")
    assert total == 7
    assert grew(after, "pbotvm_request_duration_seconds_count", outcome="ok") == 3
    assert grew(after, "pbotvm_request_duration_seconds_sum", outcome="timeout") >= 2
    # The requests that needed the guest waited for its turn; the others did not.
    assert grew(after, "pbotvm_queue_wait_seconds_count", machine="pbot-vm") == 5
    assert grew(after, "pbotvm_reverts_total", machine="pbot-vm", reason="timeout") == 1
    assert grew(after, "pbotvm_revert_duration_seconds_count", machine="pbot-vm") == 1
    back = until(lambda: (found := scrape(port)) and value(
        found, "pbotvm_guests", machine="pbot-vm", state="idle") == 1 and found, 10)
    assert back
    assert value(back, "pbotvm_heartbeat_age_seconds", machine="pbot-vm",
                 guest=f"127.0.0.1:{s.serial}") < 7


@pytest.mark.root
def test_every_daemon_of_the_stack_logs_json(scraped: tuple[LocalStack, int]) -> None:
    s, _ = scraped
    assert s.ask("-lang=sh printf 'x\\033[2J\\r\\177'") == "x<esc>[2J\r\x7f"
    daemons = set()
    for name in ("vm-server", "ptyvm"):
        log = s.logs[name].read_bytes()
        assert not set(log) - set(range(0x20, 0x7F)) - set(b"\n")  # ASCII, one event a line
        events = [json.loads(line) for line in log.decode().splitlines()]
        assert all(set(event) == {"time", "daemon", "pid", "level", "message"}
                   for event in events)
        daemons |= {event["daemon"] for event in events}
    assert daemons == {"vm-server", "ptyvm", "guest-server"}
    # The events carry what was quoted as it was (the text format shows \x0D and \x7F).
    messages = [json.loads(line)["message"] for line in s.log("vm-server").splitlines()]
    assert any(re.fullmatch(r"127\.0\.0\.1:\d+: answered in \d+ ms: \[x<esc>\[2J\r\x7f\]",
                            message) for message in messages)
    assert f"metrics on http://127.0.0.1:{scraped[1]}/metrics" in messages
