"""A guest's lines through libvirt's remote connection (console streams over ``qemu+ssh://``)
against a local guest's Unix-socket lines: a request's round trip and ``sh echo``.

    sudo .venv/bin/python -m bench.remote [--n 30] [--gap SECONDS]

Runs two libvirt daemons of its own (private mount namespaces) and an sshd on loopback in
front of the second, boots one TCG guest on each from the cached minimal image, then
measures the two alternately, each sample a request as vm-server sends it (a connection of
its own, the reply read to its end line).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import statistics
import tempfile
from dataclasses import replace
from pathlib import Path

from bench.vm import PING, repeat, report, run_program
from pbotvm.config import HostSettings, Machine
from pbotvm.host import warmup
from pbotvm.host.machines import libvirt_domain as ld
from pbotvm.host.machines.libvirt_remote import RemoteGuest
from pbotvm.host.machines.transport import connect
from pbotvm.image.build import build
from pbotvm.provision.profiles import MINIMAL
from tests.support.private_libvirtd import PrivateLibvirtd
from tests.support.sshd import Sshd


async def ping(machine: Machine) -> None:
    """A request's round trip without a program: a connection as vm-server opens one, PING,
    the reply to its end line."""
    reader, writer, _ = await connect(machine)
    try:
        writer.write(PING)
        await writer.drain()
        while (line := await reader.readline()).strip() != b"result:end":
            if not line:
                raise SystemExit(f"{machine.name}: the line closed")
    finally:
        writer.close()


async def measure(machines: dict[str, Machine], n: int, gap: float) -> None:
    rounds: dict[str, dict[str, list[float]]] = {name: {"round trip": [], "sh echo": []}
                                                for name in machines}
    for _ in range(n):  # alternated, so that the machine's drift hits both alike
        for name, machine in machines.items():
            rounds[name]["round trip"] += await repeat(1, functools.partial(ping, machine), gap)
            rounds[name]["sh echo"] += await repeat(1, functools.partial(
                run_program, machine, "sh", "prog.sh", "sh prog.sh", "echo hello"), gap)
    for what in ("round trip", "sh echo"):
        for name in machines:
            report(f"{what} ({name})", rounds[name][what])
        local, remote = (statistics.median(rounds[name][what]) for name in machines)
        print(f"  {what}: stream / unix socket {remote / local:.2f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=30)
    parser.add_argument("--gap", type=float, default=0.2)
    args = parser.parse_args()
    image = build(MINIMAL)
    with tempfile.TemporaryDirectory() as tmp, \
            PrivateLibvirtd(Path(tmp) / "local") as local, \
            PrivateLibvirtd(Path(tmp) / "remote") as remote, Sshd(Path(tmp) / "sshd") as sshd:
        env = {**os.environ, "PBOTVM_LIBVIRT_URI": local.uri, "PBOTVM_CID": "0",
               "PBOTVM_ACCEL": "tcg", "PBOTVM_STATE_DIR": tmp,
               "PBOTVM_SERIAL_SOCKET": f"{tmp}/lines/serial.sock",
               "PBOTVM_HEART_SOCKET": f"{tmp}/lines/heart.sock"}
        env.pop("PBOTVM_MACHINES", None)
        settings = HostSettings.from_env(env)
        here = settings.machines.resolve()
        there = replace(here, name="remote", domain="pbot-vm-remote",
                        uri=sshd.uri(remote.sock / "libvirt-sock"))

        async def up() -> None:
            await asyncio.gather(
                ld.up(image, settings, here, ld.DomainPaths(Path(tmp) / "lv"), env,
                      warmup.for_image(image, print)),
                RemoteGuest(there, settings, env).up(image, warmup.for_image(image, print),
                                                     print))
            await measure({"unix socket": here, "libvirt stream": there}, args.n, args.gap)

        asyncio.run(up())


if __name__ == "__main__":
    main()
