"""What a pool of guests buys, measured through vm-client as PBot sends requests:

- throughput of `-lang=sh echo` with 1, 2 and 4 PTY guests (and 1 and 2 QEMU guests with
  --qemu), 8 clients asking at once; and of `sleep 0.2; echo`, which keeps a guest waiting
  rather than this machine's CPUs busy;
- a revert storm: one request in ten runs into the time-out (3 s) while the others ask; the
  others' p95 against their p95 without the storm, with 1 guest and with 2;
- 20 clients x 20 requests with unique outputs, one guest killed midway: answers lost or
  crossed.

    sudo .venv/bin/python -m bench.pool [--seconds 20] [--qemu]
"""

from __future__ import annotations

import argparse
import functools
import os
import signal
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from pbotvm.host.machines.qemu import LINE_SETTINGS
from tests.support.stack import BIN, LocalStack

ENV = {"PBOTVM_STDIN_COMMAND": "", "PBOTVM_HEART_STALE": "7"}
T = TypeVar("T")


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1] if len(values) > 1 else values[0]


def cpu_times() -> tuple[int, int]:
    """(busy, all) jiffies of this machine's CPUs together, from /proc/stat."""
    fields = [int(n) for n in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:8]]
    return sum(fields) - fields[3] - fields[4], sum(fields)  # idle and iowait are not busy


def throughput(stack: LocalStack, *, seconds: float, clients: int = 8, wait: str = "",
               busy: list[float] | None = None) -> float:
    """Answers per second, ``clients`` asking one after another for ``seconds``; ``wait`` is
    a command each request runs first (``sleep 0.2``: a request the guest waits on, not one
    this machine's CPUs are busy with). ``busy`` gets the share of the CPUs' time that was
    busy meanwhile (1.0: every core all the time), which tells whether the guests or the
    machine were the limit."""
    deadline = time.monotonic() + seconds
    done = [0] * clients
    first = f"{wait}; " if wait else ""

    def client(k: int) -> None:
        n = 0
        while time.monotonic() < deadline:
            assert stack.ask(f"-lang=sh {first}echo {k}.{n}", nick=f"c{k}") == f"{k}.{n}"
            n += 1
        done[k] = n

    start, (busy_before, all_before) = time.monotonic(), cpu_times()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, range(clients)))
    rate = sum(done) / (time.monotonic() - start)
    busy_after, all_after = cpu_times()
    if busy is not None:
        busy.append((busy_after - busy_before) / max(1, all_after - all_before))
    return rate


def storm(stack: LocalStack, *, seconds: float,
          stormy: bool) -> tuple[float, float, int, int]:
    """The p95 and the slowest of ordinary requests (8 clients), how many were answered busy,
    and how many there were, while (if ``stormy``) a ninth client's requests time out one
    after another."""
    stop = threading.Event()
    times: list[float] = []
    busy = [0]

    def ordinary(k: int) -> None:
        while not stop.is_set():
            start = time.monotonic()
            if stack.ask(f"-lang=sh echo {k}", nick=f"c{k}") != str(k):
                busy[0] += 1
            times.append(time.monotonic() - start)

    def stormer() -> None:
        while not stop.is_set():
            stack.ask("-lang=sh sleep 60", nick="storm")

    with ThreadPoolExecutor(9) as pool:
        for k in range(8):
            pool.submit(ordinary, k)
        if stormy:
            pool.submit(stormer)
        time.sleep(seconds)
        stop.set()
    return p95(times), max(times), busy[0], len(times)


def kill_one(stack: LocalStack) -> tuple[int, int]:
    """(answers lost or wrong, answers in all) of 20 clients x 20 requests, guest 1 killed
    after a second."""
    def client(k: int) -> list[bool]:
        return [stack.ask(f"-lang=sh echo c{k}r{r}", nick=f"c{k}") == f"c{k}r{r}"
                for r in range(20)]

    with ThreadPoolExecutor(20) as pool:
        answers = [pool.submit(client, k) for k in range(20)]
        time.sleep(1)
        os.kill(stack.pid("ptyvm-1"), signal.SIGKILL)
        right = [ok for future in answers for ok in future.result()]
    return right.count(False), len(right)


def measured(guests: int, measure: Callable[[LocalStack], T], **env: str) -> T:
    """``measure`` on a stack of ``guests`` PTY VMs, once every guest has answered."""
    with tempfile.TemporaryDirectory() as tmp, LocalStack(
            Path(tmp), guests=guests, env={**ENV, "PBOTVM_TIMEOUT": "10", **env}) as stack:
        for _ in range(guests * 2):
            stack.ask("-lang=sh echo warm")
        return measure(stack)


def qemu_throughput(guests: int, seconds: float) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "PBOTVM_STATE_DIR": f"{tmp}/state", "XDG_CONFIG_HOME": tmp}
        for told in (*LINE_SETTINGS, "PBOTVM_MACHINES", "PBOTVM_REVERT_COMMAND"):
            env.pop(told, None)
        subprocess.run([str(BIN / "pbotvm"), "vm", "up", "--guests", str(guests)], env=env,
                       check=True, capture_output=True)
        try:
            stack = LocalStack(Path(tmp) / "server", env={
                **ENV, "PBOTVM_STATE_DIR": f"{tmp}/state", "XDG_CONFIG_HOME": tmp,
                "PBOTVM_TIMEOUT": "30"})
            stack.start_vm = lambda: None  # type: ignore[method-assign]
            for told in (*LINE_SETTINGS, "PBOTVM_MACHINES", "PBOTVM_REVERT_COMMAND"):
                stack.env.pop(told, None)
            with stack:
                return throughput(stack, seconds=seconds, clients=4)
        finally:
            subprocess.run([str(BIN / "pbotvm"), "vm", "down"], env=env, check=False,
                           capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--qemu", action="store_true", help="also 1 and 2 QEMU guests (TCG)")
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}", flush=True)
    for wait in ("", "sleep 0.2"):
        base = 0.0
        for guests in (1, 2, 4):
            busy: list[float] = []
            rate = measured(guests, functools.partial(throughput, seconds=args.seconds,
                                                      wait=wait, busy=busy))
            base = base or rate
            print(f"sh {wait + '; ' if wait else ''}echo, {guests} PTY guest(s), 8 clients: "
                  f"{rate:.1f} answers/s ({rate / base:.2f}x one guest), CPUs "
                  f"{busy[0]:.0%} busy", flush=True)
    for guests in (1, 2):
        (quiet, quiet_max, _, _), (stormy, stormy_max, refused, asked) = (
            measured(guests, functools.partial(storm, seconds=args.seconds, stormy=stormy),
                     PBOTVM_TIMEOUT="3")
            for stormy in (False, True))
        print(f"revert storm, {guests} PTY guest(s): p95 of the others {stormy * 1000:.0f} ms "
              f"against {quiet * 1000:.0f} ms without it ({stormy / quiet:.2f}x), slowest "
              f"{stormy_max:.1f} s against {quiet_max:.1f} s, {refused} of {asked} answered "
              "busy", flush=True)
    lost, answers = measured(2, kill_one)
    print(f"20 clients x 20 requests, one of 2 PTY guests killed: {lost} of {answers} answers "
          "lost or crossed", flush=True)
    if args.qemu:
        one = qemu_throughput(1, args.seconds)
        two = qemu_throughput(2, args.seconds)
        print(f"sh echo, QEMU guests (TCG), 4 clients: 1 guest {one:.1f} answers/s, "
              f"2 guests {two:.1f} answers/s ({two / one:.2f}x)", flush=True)


if __name__ == "__main__":
    main()
