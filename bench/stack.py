"""Latency of the whole pipeline on the local PTY stack, measured as PBot sees it: one
`vm-client` process per request; and what entering a request's box costs the guest.

    sudo .venv/bin/python -m bench.stack [--n 50] [--gap SECONDS]

--gap puts that much time between the C requests, as a channel's come: the guest is idle
then, and gdb started ahead of a request (``gdb_ahead``) is ready when it comes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import socket
import statistics
import struct
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pbotvm.guest import box, cgroup, supervisor
from pbotvm.guest.server import run_settings
from pbotvm.guest.settings import GuestSettings
from tests.support.stack import LocalStack

SH = "-lang=sh echo hello"
C_HELLO = '-lang=c11 #include <stdio.h>\nint main(void) { puts("hello"); }'
# As channels type it: the default language, the prelude, a generated main.
C_SNIPPET = 'puts("hello");'
# The same program again through the edit step: the channel's last code (echo hello).
SH_EDIT = "-lang=sh run"
# A last statement's value, which the program prints itself when it can; and what the gdb
# path costs when it is taken: a value only gdb prints, a crash's report ({n} counts the
# requests: an answer the channel just had is answered "Same output.").
C_GDB = [("C 1+1, by the program (sequential)", "1+1", "no output: 1 + 1 = 2"),
         ("C x * 2, by the program (sequential)", "int x = {n}; x * 2", "no output: x * 2 ="),
         ("C enum, by the program (sequential)", "enum e { A, B } v = {n} % 2; v",
          "no output: v = "),
         ("C ptype, by the program (sequential)", "long x = {n}; ptype(x);", "x = long"),
         ("C string, by the program (sequential)", 'char *s = "{n}"; s', "no output: s = 0x"),
         ("C pointer, by the program (sequential)", "int x = {n}; int *p = &x; p",
          "no output: p = (int *) 0x"),
         ("C array, gdb (sequential)", "int a[2] = {{n}, 2}; a", "no output: a = {"),
         ("C crash, gdb (sequential)", "int *p = 0; *p = {n};",
          "Program received signal SIGSEGV")]


def timed(stack: LocalStack, code: str, expect: str = "hello") -> float:
    line = json.dumps({"nick": "bench", "channel": "#bench", "code": code})
    start = time.perf_counter()
    reply = stack.client(line).stdout.strip()
    elapsed = time.perf_counter() - start
    if expect not in reply:
        raise SystemExit(f"unexpected reply {reply!r} for {code!r}")
    return elapsed


def timed_raw(stack: LocalStack, code: str) -> float:
    """The same request on a socket from this process: the server side without vm-client."""
    line = json.dumps({"nick": "bench", "channel": "#bench", "code": code}).encode() + b"\n"
    start = time.perf_counter()
    with socket.create_connection(("127.0.0.1", stack.server)) as sock:
        sock.sendall(line)
        reply = b"".join(iter(lambda: sock.recv(65536), b""))
    elapsed = time.perf_counter() - start
    if reply != b"hello\n":
        raise SystemExit(f"unexpected reply {reply!r} for {code!r}")
    return elapsed


def box_setup(n: int) -> list[float]:
    """What each supervisor spends entering its request's box, in a spare before its request
    comes (so on a request's path only when requests come faster than spares are made)."""
    settings = run_settings(GuestSettings.from_env())  # logs what the box has here
    samples = []
    for _ in range(n):
        read_end, write_end = os.pipe()
        pid = box.fork() if settings.box else os.fork()  # as the server forks a supervisor
        if pid == 0:
            start = time.perf_counter()
            entered = supervisor.enter_box(settings)
            os.write(write_end, struct.pack("d", time.perf_counter() - start if entered else -1))
            os._exit(0)
        os.close(write_end)
        with os.fdopen(read_end, "rb") as result:
            (seconds,) = struct.unpack("d", result.read())
        os.waitpid(pid, 0)
        if settings.cgroups is not None:
            asyncio.run(cgroup.remove(settings.cgroups, pid))
        if seconds < 0:
            raise SystemExit("the box could not be entered (see the log line above)")
        samples.append(seconds)
    return samples


def report(name: str, samples: list[float], wall: float) -> None:
    ms = sorted(s * 1000 for s in samples)
    p95 = ms[max(0, round(0.95 * len(ms)) - 1)]
    print(f"{name:<26} n={len(ms):<3} min {ms[0]:7.1f} ms  median {statistics.median(ms):7.1f} ms"
          f"  p95 {p95:7.1f} ms  throughput {len(ms) / wall:6.1f} req/s")


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=50)
    parser.add_argument("--gap", type=float, default=0.0,
                        help="seconds between the C requests (default: back to back)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, LocalStack(
            Path(tmp), env={"PBOTVM_STDIN_COMMAND": ""}) as stack:
        for name, code, expect in (
                ("sh echo (sequential)", SH, "hello"),
                ("sh run, edit (sequential)", SH_EDIT, "hello"),
                ("C hello (sequential)", C_HELLO, "hello"),
                ("C snippet (sequential)", C_SNIPPET, "hello"), *C_GDB):
            timed(stack, code.replace("{n}", "-1"), expect)  # warm-up
            gap = args.gap if name.startswith("C") else 0.0
            start = time.perf_counter()
            samples = []
            for n in range(args.n):
                time.sleep(gap)
                samples.append(timed(stack, code.replace("{n}", str(n)), expect))
            report(name, samples, time.perf_counter() - start - gap * args.n)
        start = time.perf_counter()
        samples = [timed_raw(stack, SH) for _ in range(args.n)]
        report("sh echo (no vm-client)", samples, time.perf_counter() - start)
        start = time.perf_counter()
        with ThreadPoolExecutor(8) as pool:
            samples = [s for chunk in pool.map(
                lambda _: [timed(stack, SH) for _ in range(5)], range(8)) for s in chunk]
        report("sh echo (8 x 5 conc.)", samples, time.perf_counter() - start)
        start = time.perf_counter()
        for _ in range(20):
            stack.client("--help")
        print(f"{'vm-client start-up':<22} {(time.perf_counter() - start) / 20 * 1000:7.1f} ms "
              "(--help, no network)")
    samples = box_setup(args.n)
    print(f"{'box set-up (in spares)':<22} n={len(samples):<3} median "
          f"{statistics.median(samples) * 1000:7.2f} ms (off the request's path)")


if __name__ == "__main__":
    main()
