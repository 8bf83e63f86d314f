"""vm-server's metrics for Prometheus, served on an HTTP endpoint of their own when
``PBOTVM_METRICS`` says where: requests by language and outcome, their latency, the wait for
a machine's turn, reverts by reason and their duration, guests by state, each guest's
heartbeat age.

``prometheus_client`` writes the exposition format (and OpenMetrics, gzip, when a scraper asks),
keeps the histograms' buckets and serves the endpoint from a thread of its own; the registry is
vm-server's alone, not the library's global one. vm-server tells this module when a request
ends, when one had waited for its turn and when a revert starts and ends; the guests' gauges
are read at scrape time from the status each guest's state last wrote (``status_report``
reads it as ``pbotvm status`` does): an immutable object, so the endpoint's thread never
reads what the event loop is changing.

Every label has few values: ``lang`` a name of the language table or ``other``, ``outcome``
one of ``OUTCOMES``, ``reason`` one of ``REVERT_REASONS``' labels or ``other``, ``state`` one
of ``status_report.STATES``; ``machine`` and ``guest`` come from the machines file.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Callable, Iterable
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from pbotvm import langspec
from pbotvm.host import intake
from pbotvm.host.machines.machine_state import Status
from pbotvm.host.request.vmexec import Answer, Reply
from pbotvm.host.status_report import STATES, heartbeat_age, state_of

log = logging.getLogger("pbotvm.metrics")

OTHER = "other"
LANGUAGES = frozenset(spec.name for spec in langspec.LANGUAGES)
# What became of a request.
OUTCOMES = (
    "ok",  # the guest ran it: exit status 0
    "error",  # the guest ran it: another exit status (a failed compile too)
    "killed",  # the guest stopped it at a limit (CPU, memory, its own clock): reverted
    "timeout",  # PBOTVM_TIMEOUT ran out while the guest ran it: reverted
    "offline",  # the guest could not be reached, or the connection broke mid-request
    "resetting",  # not sent: the machine was reverting, or its guest silent
    "busy",  # not sent: no turn within PBOTVM_TIMEOUT, or vm-server holds too much (intake)
    "refused",  # answered on the host, an error: bad input (a line over 16 MiB too), usage...
    "local",  # answered on the host: -info, an edit command's reply (show, diff, undo...)
    "stopping",  # vm-server stopped before it was answered
)
# vm-server's reasons for a revert, by how they start, and their labels.
REVERT_REASONS = {
    "time-out": "timeout",
    "guest killed the program": "killed",
    "connection to the guest lost": "lost",
    "no heartbeat": "silent",
    "vm-server stopped": "stopping",
}
# Seconds: a local answer takes milliseconds, a guest's up to PBOTVM_TIMEOUT (10 s), a
# paste's upload 10 s more.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60)
REVERT_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 30, 60)


def language(name: str) -> str:
    return name if name in LANGUAGES else OTHER


def guest_outcome(reply: Reply) -> str:
    """The outcome of a request the guest ran (or was running at the time-out)."""
    if reply.timed_out:
        return "timeout"
    if reply.killed:
        return "killed"
    return "error" if reply.exit else "ok"


def host_outcome(answer: Answer) -> str:
    """The outcome of a request the host answered before it needed a guest."""
    return "refused" if answer.status else "local"


def intake_outcome(refusal: intake.Refused) -> str:
    """The outcome of a request turned away before its line was read."""
    return "refused" if str(refusal) == intake.TOO_LARGE else "busy"


def revert_reason(reason: str) -> str:
    return next((label for start, label in REVERT_REASONS.items() if reason.startswith(start)),
                OTHER)


class Metrics:
    """vm-server's metrics; ``guests`` gives each guest's last status at scrape time."""

    def __init__(self, guests: Callable[[], Iterable[Status]]) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        self._requests = Counter("pbotvm_requests", "Requests answered, by language and outcome",
                                 ["lang", "outcome"], registry=registry)
        self._latency = Histogram("pbotvm_request_duration_seconds",
                                  "Seconds from a request's line to its answer, by outcome",
                                  ["outcome"], buckets=LATENCY_BUCKETS, registry=registry)
        self._waits = Histogram("pbotvm_queue_wait_seconds",
                                "Seconds a request waited for its machine's turn",
                                ["machine"], buckets=LATENCY_BUCKETS, registry=registry)
        self._reverts = Counter("pbotvm_reverts", "Reverts started, by reason",
                                ["machine", "reason"], registry=registry)
        self._revert_seconds = Histogram(
            "pbotvm_revert_duration_seconds",
            "Seconds from a revert's start until the guest beat again (or the wait gave up)",
            ["machine"], buckets=REVERT_BUCKETS, registry=registry)
        registry.register(_Guests(guests))

    def request_done(self, lang: str, outcome: str, seconds: float | None) -> None:
        """A request was answered; ``seconds`` None: it was turned away before its line was
        read (counted, not timed)."""
        self._requests.labels(language(lang), outcome).inc()
        if seconds is not None:
            self._latency.labels(outcome).observe(seconds)

    def waited(self, machine: str, seconds: float) -> None:
        self._waits.labels(machine).observe(seconds)

    def revert_started(self, machine: str, reason: str) -> None:
        self._reverts.labels(machine, revert_reason(reason)).inc()

    def revert_ended(self, machine: str, seconds: float) -> None:
        self._revert_seconds.labels(machine).observe(seconds)

    def serve(self, addr: str, port: int) -> WSGIServer:
        """Serve ``/metrics`` on ``addr:port`` from a thread; the server, to ``shutdown``.
        OSError when the address cannot be had."""
        if addr != "localhost" and not _loopback(addr):
            log.warning("metrics on %s: anyone who can reach it reads the machines' names and "
                        "traffic", addr)
        server, _ = start_http_server(port, addr, registry=self.registry)
        log.info("metrics on http://%s/metrics", f"[{addr}]:{port}" if ":" in addr
                 else f"{addr}:{port}")
        return server


def _loopback(addr: str) -> bool:
    try:
        return ipaddress.ip_address(addr).is_loopback
    except ValueError:
        return False


class _Guests(Collector):
    """Guests by state and their heartbeat ages, as their last statuses say now."""

    def __init__(self, statuses: Callable[[], Iterable[Status]]) -> None:
        self._statuses = statuses

    def collect(self) -> Iterable[Metric]:
        now = time.time()
        guests = GaugeMetricFamily(
            "pbotvm_guests", "Guests by state (silent: no heartbeat within PBOTVM_HEART_STALE)",
            labels=["machine", "state"])
        ages = GaugeMetricFamily(
            "pbotvm_heartbeat_age_seconds",
            "Seconds since the guest's last heartbeat (since vm-server began to watch it)",
            labels=["machine", "guest"])
        counts: dict[str, dict[str, int]] = {}
        for status in self._statuses():
            state, _ = state_of(status, now)
            counts.setdefault(status.machine, dict.fromkeys(STATES, 0))[state] += 1
            ages.add_metric([status.machine, status.guest], heartbeat_age(status, now))
        for machine, by_state in counts.items():
            for state, count in by_state.items():
                guests.add_metric([machine, state], count)
        return [guests, ages]
