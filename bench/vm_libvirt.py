"""The libvirt backend: boot, serial round trip, both reverts, sh echo and C hello.

    sudo .venv/bin/python -m bench.vm_libvirt [--n 20]

Runs its own libvirt daemon (private mount namespace; the machine's libvirt is untouched)
and a domain on free ports, from the cached minimal image (built if needed).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path

from bench.vm import bench_programs, free_port, report, serial_rtts
from pbotvm.config import HostSettings
from pbotvm.host import warmup
from pbotvm.host.machines import libvirt_domain as ld
from pbotvm.image.build import build
from pbotvm.provision.profiles import MINIMAL
from tests.support.private_libvirtd import PrivateLibvirtd


def reverts(uri: str, domain: str, n: int, fast: bool) -> list[float]:
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        how = ld.revert(uri, domain, "1", fast=fast)
        samples.append(time.perf_counter() - start)
        if how != ("loadvm" if fast else "snapshot-revert"):
            raise SystemExit(f"expected a {'fast' if fast else 'slow'} revert, got {how}")
    return samples


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=20)
    args = parser.parse_args()
    image = build(MINIMAL)
    with tempfile.TemporaryDirectory() as tmp, PrivateLibvirtd(Path(tmp) / "libvirtd") as daemon:
        env = {**os.environ, "PBOTVM_LIBVIRT_URI": daemon.uri, "PBOTVM_CID": "0",
               "PBOTVM_SERIAL": str(free_port()), "PBOTVM_HEART": str(free_port()),
               "PBOTVM_STATE_DIR": tmp}
        env.pop("PBOTVM_MACHINES", None)
        settings = HostSettings.from_env(env)
        machine = settings.machines.resolve()
        info = asyncio.run(ld.up(image, settings, machine, ld.DomainPaths(Path(tmp) / "lv"),
                                 env, warmup.for_image(image, print)))
        print(f"libvirt domain: first heartbeat {info.boot_seconds} s, warm-up "
              f"{info.warmup_seconds} s, snapshot {info.snapshot_seconds} s", flush=True)
        asyncio.run(serial_rtts(machine, args.n))
        report("revert (loadvm)", reverts(daemon.uri, machine.domain, args.n, fast=True))
        report("revert (libvirt)", reverts(daemon.uri, machine.domain, max(3, args.n // 4),
                                           fast=False))
        asyncio.run(bench_programs(machine, args.n))


if __name__ == "__main__":
    main()
