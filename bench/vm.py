"""The real guest under QEMU: boot time, serial round trip, loadvm revert, sh echo, C hello
and C through gdb; or, with --languages, each language of the full image.

    sudo .venv/bin/python -m bench.vm [--n 30] [--boots 2] [--gap SECONDS]
    sudo .venv/bin/python -m bench.vm --languages 3 [LANG...]

Builds the image if needed; boots on free ports in a temporary state dir.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path

from pbotvm import langspec
from pbotvm.config import Machine
from pbotvm.host import warmup
from pbotvm.host.machines import qemu
from pbotvm.host.machines.qmp import loadvm
from pbotvm.host.machines.transport import open_serial, send, wait_heartbeat
from pbotvm.host.request import options
from pbotvm.host.request.languages import find_language
from pbotvm.host.request.vmexec import make_request
from pbotvm.image.build import build
from pbotvm.protocol import Request
from pbotvm.provision import profiles
from pbotvm.provision.profiles import FULL, MINIMAL
from tests.support.stack import free_port

# Not a valid request (no cmdline): guest-server answers it without forking, so the time is
# the serial line plus JSON decoding both ways.
PING = b"{}\n:end:\n"


def report(name: str, samples: list[float]) -> list[float]:
    ms = sorted(s * 1000 for s in samples)
    p95 = ms[max(0, round(0.95 * len(ms)) - 1)]
    print(f"{name:<20} n={len(ms):<3} min {ms[0]:8.1f} ms  median "
          f"{statistics.median(ms):8.1f} ms  p95 {p95:8.1f} ms", flush=True)
    return samples


async def round_trips(machine: Machine, port: int, message: bytes, last_line: bytes, n: int,
                      gap: float = 0.0) -> list[float]:
    """``message`` until ``last_line`` comes back, ``n`` times: back to back, or ``gap`` s
    apart (an idle guest, as requests from IRC find it: its vCPU halted, every thread on the
    way asleep)."""
    reader, writer = await open_serial(machine.addr, port)

    async def round_trip() -> None:
        writer.write(message)
        await writer.drain()
        while (await reader.readline()).strip() != last_line:
            pass

    try:
        return await repeat(n, round_trip, gap)
    finally:
        writer.close()


async def serial_rtts(machine: Machine, n: int) -> None:
    report("serial RTT", await round_trips(machine, machine.serial, PING, b"result:end", n))
    report("  idle line (50 ms)", await round_trips(machine, machine.serial, PING,
                                                    b"result:end", n, gap=0.05))
    # upstream HEAD's health check on the heart line: a newline, then a status and `:END`.
    report("  heart-line poll", await round_trips(machine, machine.heart, b"\n", b":END", n))


async def repeat(n: int, action: Callable[[], Awaitable[object]],
                 gap: float = 0.0) -> list[float]:
    samples = []
    for _ in range(n):
        await asyncio.sleep(gap)
        start = time.perf_counter()
        await action()
        samples.append(time.perf_counter() - start)
    return samples


async def run_program(machine: Machine, lang: str, source: str, cmdline: str,
                      code: str, execfile: str | None = None) -> None:
    await run_request(machine, Request(lang=lang, sourcefile=source,
                                       execfile=execfile or source, cmdline=cmdline, code=code))


async def run_request(machine: Machine, request: Request, expect: str = "hello") -> None:
    request = replace(request, date=int(time.time()), id=str(time.monotonic_ns()))
    out = await send(machine, request, 60)
    if expect not in out:
        raise SystemExit(f"unexpected {request.lang} output {out!r}")


def channel_request(lang: str, code: str) -> Request:
    """The request the host pipeline makes of ``code`` as a channel would type it."""
    language = find_language(lang)
    assert language is not None
    parsed = options.parse_standard_options(code, language.take_custom_options)
    return make_request(language, lang, parsed,
                        language.preprocess(parsed.code, parsed.custom), stdin="")


async def bench(paths: qemu.VmPaths, machine: Machine, n: int, gap: float) -> None:
    await serial_rtts(machine, n)
    report("loadvm", await repeat(n, lambda: loadvm(paths.qmp)))
    await bench_programs(machine, n, gap)


async def bench_programs(machine: Machine, n: int, gap: float = 0.0) -> None:
    """sh echo, C hello and C through gdb straight to guest-server (no vm-server); ``gap``
    seconds between the last statement's and gdb's requests, as a channel's come (the guest
    idle, gdb started ahead of the request ready)."""
    def sh_echo() -> Awaitable[None]:
        return run_program(machine, "sh", "prog.sh", "sh prog.sh", "echo hello")

    report("sh echo", await repeat(n, sh_echo))
    # As requests from IRC find the guest: it has had time to fork the next supervisor.
    report("  idle guest (0.2 s)", await repeat(n, sh_echo, gap=0.2))
    # As channels type it: the default language (c2x), its prelude and generated main.
    snippet = channel_request("c2x", 'puts("hello");')
    hello = report("C hello", await repeat(max(3, n // 3), lambda: run_request(machine, snippet)))
    plain = report("  plain gcc", await repeat(max(3, n // 3), lambda: run_program(
        # The guest compiles with the command line, then runs ./prog.
        machine, "c11", "prog.c", "gcc prog.c -o prog",
        '#include <stdio.h>\nint main(void) { puts("hello"); }', "prog")))
    # This shared machine's speed varies by half within minutes; the ratio varies less.
    print(f"  C hello / plain gcc  {statistics.median(hello) / statistics.median(plain):.2f}",
          flush=True)
    # A last statement's value, printed by the program; what the gdb path costs when it is
    # taken: a value only gdb prints, a crash's report.
    for name, code, expect in (("C 1+1 (program)", "1+1", "no output: 1 + 1 = 2"),
                               ("C x * 2 (program)", "int x = 5; x * 2", "no output: x * 2 = 10"),
                               ("C enum (program)", "enum e { A, B } v = B; v",
                                "no output: v = B"),
                               ("C ptype (program)", "int x = 5; ptype(x);", "x = int"),
                               ("C string (program)", 'char *s = "hi"; s',
                                "no output: s = 0x"),
                               ("C pointer (program)", "int x = 5; int *p = &x; p",
                                "no output: p = (int *) 0x"),
                               ("C array (gdb)", "int a[2] = {1, 2}; a", "no output: a = {1, 2}"),
                               ("C crash (gdb)", "int *p = 0; *p = 1;",
                                "Program received signal SIGSEGV")):
        run = functools.partial(run_request, machine, channel_request("c2x", code), expect)
        report(name, await repeat(max(3, n // 3), run, gap=gap))


# The toolchain's own command on a whole program, the yardstick of a language whose snippets
# take more than a second: (language, source file, command line, code).
PLAIN = {
    "cpp": ("prog.cpp", "g++ prog.cpp -o prog",
            '#include <iostream>\nint main() { std::cout << "hello" << std::endl; }'),
    "clangpp": ("prog.cpp", "clang++ prog.cpp -o prog",
                '#include <iostream>\nint main() { std::cout << "hello" << std::endl; }'),
    "java": ("prog.java", "javac -encoding UTF-8 prog.java",
             'class prog { public static void main(String[] a) { System.out.println("hello"); } }'),
    "haskell": ("prog.hs", "ghc -o prog prog.hs", 'main = putStrLn "hello"'),
}


async def bench_languages(paths: qemu.VmPaths, machine: Machine, rounds: int,
                          names: list[str]) -> None:
    """Each language's hello as a channel sends it: the first answer after a revert and the
    one after it, then the plain toolchain's; the order reverses from round to round, as
    this machine's speed drifts."""
    samples: dict[str, list[list[float]]] = {name: [[], [], []] for name in names}
    for number in range(rounds):
        for name in names if number % 2 == 0 else names[::-1]:
            spec = langspec.find(name)
            assert spec is not None
            await loadvm(paths.qmp)
            await wait_heartbeat(machine, 30)
            snippet = functools.partial(run_request, machine, channel_request(name, spec.hello))
            for first_or_second in samples[name][:2]:
                first_or_second.extend(await repeat(1, snippet))
            if name in PLAIN:
                toolchain = functools.partial(run_program, machine, name, *PLAIN[name], "prog")
                samples[name][2].extend(await repeat(1, toolchain))
    for name, (first, second, plain) in samples.items():
        yardstick = f"  plain {statistics.median(plain):6.2f} s" if plain else ""
        print(f"{name:<11} first {statistics.median(first):6.2f} s  second "
              f"{statistics.median(second):6.2f} s{yardstick}  (medians of {rounds})",
              flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=30)
    parser.add_argument("--boots", type=int, default=2)
    parser.add_argument("--gap", type=float, default=0.0,
                        help="seconds between the C value and gdb requests")
    parser.add_argument("--languages", type=int, metavar="ROUNDS",
                        help="time each language of the full image instead")
    parser.add_argument("names", nargs="*", help="with --languages: these languages only")
    args = parser.parse_args()
    if args.languages:
        image = build(FULL)
        names = args.names or [spec.name for spec in profiles.languages(FULL.packages)]
        with tempfile.TemporaryDirectory() as tmp:
            paths = qemu.VmPaths(Path(tmp))
            machine = Machine(name="bench", serial=free_port(), heart=free_port(), cid=0)
            asyncio.run(qemu.up(image, paths, machine, os.environ,
                                warmup.for_image(image, print)))
            try:
                asyncio.run(bench_languages(paths, machine, args.languages, names))
            finally:
                qemu.down(paths)
        return
    image = build(MINIMAL)
    boots: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        paths = qemu.VmPaths(Path(tmp))
        machine = Machine(name="bench", serial=free_port(), heart=free_port(), cid=0)
        for boot in range(args.boots):
            info = asyncio.run(qemu.up(image, paths, machine, os.environ,
                                       warmup.for_image(image, print)))
            boots.append(info.boot_seconds)
            print(f"boot {boot + 1}: {info.accel}, first heartbeat {info.boot_seconds} s, "
                  f"warm-up {info.warmup_seconds} s, savevm {info.savevm_seconds} s", flush=True)
            try:
                if boot == args.boots - 1:
                    asyncio.run(bench(paths, machine, args.n, args.gap))
            finally:
                qemu.down(paths)
    report("boot to heartbeat", boots)


if __name__ == "__main__":
    main()
