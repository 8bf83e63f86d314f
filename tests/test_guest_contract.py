"""The one machine interface (``machines.guest``), the same contract for every backend: the
PTY stand-in always, QEMU and libvirt with the real guest (``vm``)."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pbotvm.config import HostSettings, Machine
from pbotvm.host import warmup
from pbotvm.host.machines.backends import guest_for
from pbotvm.host.machines.guest import Guest, GuestError, timed_revert
from pbotvm.host.machines.qemu import VmPaths, with_sockets
from pbotvm.host.machines.transport import send, wait_heartbeat
from pbotvm.image.build import Image, build, missing_tools
from pbotvm.protocol import Request
from pbotvm.provision.profiles import MINIMAL
from tests.support.private_libvirtd import PrivateLibvirtd
from tests.support.stack import free_port


def echo(text: str) -> Request:
    return Request(lang="sh", sourcefile="prog.sh", execfile="prog.sh", cmdline="sh prog.sh",
                   code=f"echo {text}", input="", id=f"contract-{text}")


def ask(machine: Machine, text: str) -> str:
    """The guest's answer, without the newlines that end it."""
    return asyncio.run(send(machine, echo(text), 60)).rstrip("\n")


async def no_warming(_: Machine) -> None:
    pass


def keeps_the_contract(guest: Guest, image: Image | None, warm: bool) -> None:
    said: list[str] = []
    step = warmup.for_image(image, said.append) if warm and image else no_warming
    summary = asyncio.run(guest.up(image, step, said.append))
    try:
        assert summary and "\n" not in summary
        assert guest.running()
        with pytest.raises(GuestError, match="running"):
            asyncio.run(guest.up(image, step, said.append))  # one guest on these lines
        assert ask(guest.lines, "before") == "before"  # its lines reach it
        busy = guest.cpu_seconds()
        assert busy > 0
        for slow in (False, True):
            how, seconds = asyncio.run(timed_revert(guest, slow=slow))
            assert how and seconds < 60
            asyncio.run(wait_heartbeat(guest.lines, 60))
            assert ask(guest.lines, f"after-{slow}") == f"after-{slow}"
        assert guest.cpu_seconds() >= 0
        assert guest.describe()
    finally:
        assert guest.down()
    assert not guest.running()
    with pytest.raises(GuestError):
        guest.cpu_seconds()
    assert not guest.down()


def settings_for(state: Path, **env: str) -> tuple[HostSettings, dict[str, str]]:
    full = {**os.environ, "PBOTVM_STATE_DIR": str(state), "PBOTVM_CID": "0",
            "PBOTVM_SERIAL": str(free_port()), "PBOTVM_HEART": str(free_port()), **env}
    for name in ("PBOTVM_MACHINES", "PBOTVM_REVERT_COMMAND"):
        full.pop(name, None)
    return HostSettings.from_env(full), full


@pytest.mark.root
def test_the_pty_stand_in(tmp_path: Path) -> None:
    settings, env = settings_for(tmp_path / "state")
    guest = guest_for(settings, settings.machines.resolve(), "pty", env)
    keeps_the_contract(guest, None, warm=False)


@pytest.fixture(scope="module")
def image() -> Image:
    if missing := missing_tools():
        pytest.skip("; ".join(missing))
    return build(MINIMAL)


@pytest.mark.vm
def test_qemu(tmp_path: Path, image: Image) -> None:
    settings, env = settings_for(tmp_path / "state")
    machine = with_sockets(settings.machines.resolve(), VmPaths(tmp_path / "state" / "qemu"))
    keeps_the_contract(guest_for(settings, machine, "qemu", env), image, warm=True)


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[PrivateLibvirtd]:
    with PrivateLibvirtd(tmp_path / "libvirtd") as d:
        yield d


@pytest.mark.vm
def test_libvirt(tmp_path: Path, image: Image, daemon: PrivateLibvirtd) -> None:
    settings, env = settings_for(tmp_path / "state", PBOTVM_LIBVIRT_URI=daemon.uri,
                                 PBOTVM_DOMAIN="pbot-vm-contract")
    machine = dataclasses.replace(settings.machines.resolve(), domain="pbot-vm-contract")
    start = time.monotonic()
    keeps_the_contract(guest_for(settings, machine, "libvirt", env), image, warm=True)
    print(f"\nlibvirt contract in {time.monotonic() - start:.0f} s")
