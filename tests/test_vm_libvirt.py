"""The libvirt backend end to end, on a libvirt daemon of our own (the machine's is untouched).

The domain is defined bare, the original's device scripts (ours, in devices/) attach its
serial ports, then it boots, warms up and gets snapshot 1; vm-server reverts it through libvirt.
"""

from __future__ import annotations

import asyncio
import os
import re
import stat
import subprocess
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest

from pbotvm.config import HostSettings
from pbotvm.host import warmup
from pbotvm.host.machines import libvirt_domain as ld
from pbotvm.host.machines.devices import connect
from pbotvm.host.machines.qemu import choose_accel
from pbotvm.image.build import build
from pbotvm.provision.profiles import MINIMAL
from tests.conftest import AttachedStack
from tests.support.private_libvirtd import PrivateLibvirtd
from tests.support.stack import BIN, free_port

pytestmark = pytest.mark.vm

DEVICES = Path(__file__).resolve().parents[1] / "devices"


def script(name: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # From another directory: the original's add-all only worked from host/devices.
    return subprocess.run([str(DEVICES / name)], env=env, cwd="/", capture_output=True,
                          text=True, timeout=60, check=False)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateLibvirtd]:
    with PrivateLibvirtd(tmp_path_factory.mktemp("libvirtd")) as d:
        yield d


@pytest.fixture(scope="module")
def domain(daemon: PrivateLibvirtd,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    state = tmp_path_factory.mktemp("state")
    env = {**os.environ, "PBOTVM_LIBVIRT_URI": daemon.uri, "PBOTVM_DOMAIN": "pbot-vm-test",
           "PBOTVM_SERIAL": str(free_port()), "PBOTVM_HEART": str(free_port()),
           "PBOTVM_CID": "0", "PBOTVM_STATE_DIR": str(state), "PBOTVM_TIMEOUT": "5",
           "PBOTVM_STDIN_COMMAND": ""}
    env.pop("PBOTVM_MACHINES", None)
    settings = HostSettings.from_env(env)
    machine = settings.machines.resolve()
    paths = ld.DomainPaths(state / "libvirt")
    image = build(MINIMAL)
    conn = connect(daemon.uri)
    try:
        accel, _ = choose_accel(image.kernel, env)
        dom, paths = ld.define(conn, machine, image, paths, accel)
        added = script("add-serials", env)
        assert added.returncode == 0, added.stderr
        assert added.stdout.splitlines() == [
            f"pbot-vm-test: serial port 2 (TCP {machine.serial}): added",
            f"pbot-vm-test: serial port 3 (TCP {machine.heart}): added"]
        info = asyncio.run(ld.start(dom, settings, machine, paths,
                                    warmup.for_image(image, print)))
        print(f"\nlibvirt domain: first heartbeat {info.boot_seconds} s, warm-up "
              f"{info.warmup_seconds} s, snapshot {info.snapshot_seconds} s")
        yield env
    finally:
        conn.close()
        down = subprocess.run([str(BIN / "pbotvm"), "libvirt", "down"], env=env,
                              capture_output=True, text=True, check=False)
        assert down.stdout.strip() == "removed", down.stderr


@pytest.fixture(scope="module")
def stack(domain: dict[str, str], tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[AttachedStack]:
    with AttachedStack(tmp_path_factory.mktemp("stack"), int(domain["PBOTVM_SERIAL"]),
                       int(domain["PBOTVM_HEART"]), domain, revert_command=None) as s:
        yield s


def test_device_scripts_are_idempotent(domain: dict[str, str]) -> None:
    again = script("add-all", {**domain, "PBOTVM_CID": "42"})
    assert again.returncode == 0, again.stderr
    lines = again.stdout.splitlines()
    assert lines[:2] == [f"pbot-vm-test: serial port 2 (TCP {domain['PBOTVM_SERIAL']}): "
                         "already there",
                         f"pbot-vm-test: serial port 3 (TCP {domain['PBOTVM_HEART']}): "
                         "already there"]
    assert lines[2] == "pbot-vm-test: vsock (CID 42): added"
    moved = script("add-vsock", {**domain, "PBOTVM_CID": "43"})
    assert moved.stdout.strip() == "pbot-vm-test: vsock (CID 43): replaced"
    conn = connect(domain["PBOTVM_LIBVIRT_URI"])
    try:
        import libvirt

        config = ET.fromstring(conn.lookupByName("pbot-vm-test").XMLDesc(
            libvirt.VIR_DOMAIN_XML_INACTIVE))
        vsocks = config.findall("devices/vsock")
        assert [v.find("cid").get("address") for v in vsocks] == ["43"]  # type: ignore[union-attr]
        assert len(config.findall("devices/serial")) == 3  # the console and our two
        # No vhost-vsock on CI machines: take it out again so the domain can restart.
        conn.lookupByName("pbot-vm-test").detachDeviceFlags(
            ET.tostring(vsocks[0], encoding="unicode"), libvirt.VIR_DOMAIN_AFFECT_CONFIG)
    finally:
        conn.close()


def test_device_script_errors_are_one_line(domain: dict[str, str]) -> None:
    missing = script("add-serials", {**domain, "PBOTVM_DOMAIN": "no-such-domain"})
    assert missing.returncode == 1
    assert missing.stderr.strip().splitlines() == [
        f"Error: libvirt {domain['PBOTVM_LIBVIRT_URI']}, domain no-such-domain: "
        "Domain not found: no domain with matching name 'no-such-domain'"]
    bad_cid = script("add-vsock", {**domain, "PBOTVM_CID": "2"})
    assert bad_cid.returncode == 1 and "is not a guest CID" in bad_cid.stderr


@pytest.mark.parametrize(("code", "expected"), [
    ("-lang=sh echo hi from libvirt", "hi from libvirt"),
    ("-lang=python3 print(6 * 7)", "42"),
])
def test_vm_client(stack: AttachedStack, code: str, expected: str) -> None:
    assert stack.ask(code) == expected


def test_time_out_reverts_with_loadvm_through_libvirt(stack: AttachedStack) -> None:
    stack.ask("-lang=sh touch /var/tmp/before-timeout")
    start = time.monotonic()
    assert stack.ask("-lang=sh sleep 60").startswith("[Timed-out]")
    replied = time.monotonic()
    back = stack.wait_answer("-lang=sh ls /var/tmp; echo next", "next", 60)
    log = stack.log("vm-server")
    assert re.search(r"reverted to snapshot 1 in [0-9.]+ s \(libvirt \S+ domain pbot-vm-test: "
                     r"loadvm\)", log), log
    took = re.findall(r"reverted to snapshot 1 in ([0-9.]+)", log)
    print(f"\nlibvirt loadvm: time-out reply after {replied - start:.1f} s, revert "
          f"{took[-1]} s, next good answer {back:.2f} s later")


def test_snapshot_revert_restarts_qemu_and_the_guest_is_clean(stack: AttachedStack) -> None:
    stack.ask("-lang=sh touch /var/tmp/before-revert")
    start = time.monotonic()
    done = subprocess.run([str(BIN / "pbotvm"), "libvirt", "revert", "--slow"], env=stack.env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.stdout.startswith("reverted with snapshot-revert in"), done.stderr
    back = stack.wait_answer("-lang=sh ls /var/tmp; echo clean", "clean", 60)
    print(f"\nlibvirt snapshot-revert: {done.stdout.strip()}; answering again "
          f"{time.monotonic() - start:.2f} s after it began ({back:.2f} s after the revert)")


def test_a_destroyed_domain_is_brought_back(stack: AttachedStack) -> None:
    conn = connect(stack.env["PBOTVM_LIBVIRT_URI"])
    try:
        conn.lookupByName("pbot-vm-test").destroy()  # as if QEMU had been killed
    finally:
        conn.close()
    # Silent for two heartbeat margins: the next request reverts, and libvirt's revert (the
    # monitor is gone with QEMU) starts the domain again in its snapshot.
    back = stack.wait_answer("-lang=sh echo back", "back", 90)
    log = stack.log("vm-server")
    assert re.search(r"reverting \(no heartbeat for \d+ s\)", log)
    assert "the domain is not running" in log, log
    assert re.search(r"reverted to snapshot 1 in [0-9.]+ s \(libvirt \S+ domain pbot-vm-test: "
                     r"snapshot-revert\)", log), log
    print(f"\nlibvirt domain destroyed: answering again {back:.1f} s later")


def test_up_and_down_on_a_daemon_as_debian_ships_it(
        tmp_path_factory: pytest.TempPathFactory) -> None:
    """QEMU runs as libvirt-qemu, which cannot enter /root (nor pytest's 0700 directories):
    `pbotvm libvirt up` stops with one line while libvirt's images directory is closed to it,
    then puts the domain's files there once it is open, boots, answers, and `down` removes
    them. The serial lines are Unix sockets, which libvirt makes for its QEMU user. The
    commands run in the daemon's mount namespace, where its /var is."""
    build(MINIMAL)  # cached: the commands below find it
    state = tmp_path_factory.mktemp("stock-state")
    with PrivateLibvirtd(tmp_path_factory.mktemp("stock-libvirtd"), stock=True) as daemon:
        env = {**os.environ, "PBOTVM_LIBVIRT_URI": daemon.uri, "PBOTVM_DOMAIN": "pbot-vm-stock",
               "PBOTVM_SERIAL": str(free_port()), "PBOTVM_HEART": str(free_port()),
               "PBOTVM_CID": "0", "PBOTVM_STATE_DIR": str(state), "PBOTVM_ACCEL": "tcg",
               "PBOTVM_SERIAL_SOCKET": str(state / "sockets/serial.sock"),
               "PBOTVM_HEART_SOCKET": str(state / "sockets/heart.sock")}
        env.pop("PBOTVM_MACHINES", None)

        def pbotvm(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(daemon.in_namespace([str(BIN / "pbotvm"), *args]), env=env,
                                  capture_output=True, text=True, timeout=900, check=False)

        images = daemon.root / "var/lib/libvirt/images"
        images.chmod(0o700)
        refused = pbotvm("libvirt", "up")
        assert refused.returncode == 1
        assert refused.stderr.splitlines()[-1].startswith(
            "Error: libvirt runs QEMU as libvirt-qemu (uid 64055), which cannot read the "
            "domain's files (/var/lib/libvirt/images is drwx------ root:root): let it into "), \
            refused.stderr
        conn = connect(daemon.uri)
        try:
            assert conn.listDefinedDomains() == [] and conn.listDomainsID() == []
        finally:
            conn.close()

        images.chmod(0o711)  # as Debian's package makes it
        start = time.monotonic()
        up = pbotvm("libvirt", "up")
        assert up.returncode == 0, up.stderr
        assert ("the domain's files are in /var/lib/libvirt/images/pbotvm-pbot-vm-stock, where "
                "libvirt's QEMU can read them") in up.stderr
        files = images / "pbotvm-pbot-vm-stock"
        qemu_pid = int((daemon.root / "run/libvirt/qemu/pbot-vm-stock.pid").read_text())
        uid = next(line.split()[1] for line in Path(f"/proc/{qemu_pid}/status").read_text()
                   .splitlines() if line.startswith("Uid:"))
        assert uid == "64055"
        sockets = state / "sockets"
        assert stat.S_IMODE(sockets.stat().st_mode) == 0o700
        serial = (sockets / "serial.sock").stat()
        assert (serial.st_uid, stat.S_IMODE(serial.st_mode) & 0o002) == (64055, 0)
        print(f"\nstock libvirt: up in {time.monotonic() - start:.0f} s ({up.stdout.strip()})")
        with AttachedStack(tmp_path_factory.mktemp("stock-stack"), int(env["PBOTVM_SERIAL"]),
                           int(env["PBOTVM_HEART"]), env, revert_command=None) as s:
            assert s.ask("-lang=sh echo hi from a stock libvirt") == "hi from a stock libvirt"
        down = pbotvm("libvirt", "down")
        assert down.stdout.strip() == "removed", down.stderr
        assert not files.exists()
