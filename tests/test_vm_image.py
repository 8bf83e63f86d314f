"""The image builder's and QEMU backend's pure parts, and the QMP client against a fake QEMU."""

from __future__ import annotations

import asyncio
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from pbotvm.config import HostSettings, Machine, nth_guest
from pbotvm.host import warmup
from pbotvm.host.machines import libvirt_domain, qemu
from pbotvm.host.machines.backends import guest_for, with_recorded_guests
from pbotvm.host.machines.qmp import QMP, QMPError, loadvm
from pbotvm.image import build, initramfs
from pbotvm.langspec import LANGUAGES
from pbotvm.provision import profiles
from pbotvm.provision.layout import HEART_INDEX, SERIAL_INDEX, guest_tty
from pbotvm.provision.profiles import FULL, MINIMAL
from tests.conftest import until


def test_missing_tools_names_each_tool_and_its_package() -> None:
    lines = build.missing_tools(lambda tool: None if tool in ("debootstrap", "qemu-img") else "x")
    assert lines == ["missing host tool debootstrap: apt-get install debootstrap",
                     "missing host tool qemu-img: apt-get install qemu-utils"]


@pytest.mark.parametrize("text", [
    "Types: deb\nURIs: http://mirror.example/debian/\nSuites: bookworm bookworm-updates\n"
    "Components: main\n\nTypes: deb\nURIs: http://security.example/debian-security\n"
    "Suites: bookworm-security\n",
    "# comment\ndeb [arch=amd64] http://mirror.example/debian bookworm main\n",
])
def test_mirror_from_sources(text: str) -> None:
    assert build.mirror_from_sources([text]) == "http://mirror.example/debian"


def test_mirror_from_sources_ignores_other_suites() -> None:
    assert build.mirror_from_sources(["deb http://x/debian-security bookworm-security main"]) \
        is None


def test_cache_key_follows_the_inputs(tmp_path: Path) -> None:
    (tmp_path / "guest/cfamily/include").mkdir(parents=True)
    (tmp_path / "host").mkdir()
    guest = tmp_path / "guest/server.py"
    guest.write_text("a = 1\n")
    key = build.cache_key(MINIMAL, tmp_path)
    assert build.cache_key(MINIMAL, tmp_path) == key
    assert build.cache_key(FULL, tmp_path) != key
    (tmp_path / "host/server.py").write_text("host only\n")
    assert build.cache_key(MINIMAL, tmp_path) == key  # host code is not in the image
    guest.write_text("a = 2\n")
    assert build.cache_key(MINIMAL, tmp_path) != key
    (tmp_path / "guest/cfamily/include/prelude.h").write_text("/* new */\n")
    assert build.cache_key(MINIMAL, tmp_path) != key


def test_init_script_and_qemu_agree_on_the_serial_devices(tmp_path: Path) -> None:
    script = build.init_script()
    assert f"--serial {guest_tty(SERIAL_INDEX)} --heart {guest_tty(HEART_INDEX)}" in script
    image = build.Image(tmp_path)
    argv = qemu.qemu_argv(image, qemu.VmPaths(tmp_path), Machine("m", serial=7001, heart=7002),
                          "tcg")
    joined = " ".join(argv)
    assert f"port=7001,server=on,wait=off,nodelay=on -device isa-serial,chardev=serial," \
           f"index={SERIAL_INDEX}" in joined
    assert f"port=7002,server=on,wait=off,nodelay=on -device isa-serial,chardev=heart," \
           f"index={HEART_INDEX}" in joined
    assert "-nic none" in joined and "-accel tcg" in joined


def test_the_vm_state_and_socket_directories_are_root_s_alone(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        paths = qemu.VmPaths(tmp_path / "state" / "qemu")
        qemu.fresh_state_dir(paths)
        qemu.socket_dirs(Machine("m", serial_socket=str(tmp_path / "run/a/serial.sock"),
                                 heart_socket=str(tmp_path / "run/a/heart.sock")))
    finally:
        os.umask(old)
    for directory in ("state", "state/qemu", "run", "run/a"):
        assert stat.S_IMODE((tmp_path / directory).stat().st_mode) == 0o700, directory


def test_choose_accel_honours_the_environment(tmp_path: Path) -> None:
    assert qemu.choose_accel(tmp_path / "vmlinuz", {"PBOTVM_ACCEL": "tcg"}) == ("tcg", None)
    with pytest.raises(qemu.QemuError):
        qemu.choose_accel(tmp_path / "vmlinuz", {"PBOTVM_ACCEL": "hvf"})


def test_the_warm_up_runs_the_image_languages_only_and_says_which_once() -> None:
    """The minimal image has 8 of the 33 languages: a warm-up of the 25 others only answered,
    line after line, that they are not installed."""
    minimal = profiles.languages(MINIMAL.packages)
    names = [spec.name for spec in minimal]
    assert names == ["bash", "c11", "c2x", "c89", "c99", "perl", "python3", "sh"]
    # Then C code that gdb evaluates (the warm-up's check of the gdb path).
    assert [request.lang for request in warmup.image_warmups(minimal)] == [*names, "c2x"]
    assert warmup.warmup_line("minimal", minimal) == (
        "warming up the minimal image's languages: bash, c11, c2x, c89, c99, perl, python3, sh "
        "(the other 25 are not in it)")
    # Every language Debian packages, each its own program or C dialect.
    full = profiles.languages(FULL.packages)
    assert {spec.name for spec in full} == {spec.name for spec in LANGUAGES} - {
        "freebasic", "qbasic", "tendra"}
    assert [request.lang for request in warmup.image_warmups(full)] == [
        *(spec.name for spec in full), "c2x"]


# What QEMU 7.2 printed on a host whose /dev/kvm is a paravirtual KVM, then it aborted.
MSR_ABORT = ("qemu-system-x86_64: error: failed to set MSR 0x10a to 0x69\n"
             "qemu-system-x86_64: ../../target/i386/kvm/kvm.c:3183: kvm_buf_set_msrs: "
             "Assertion `ret == cpu->kvm_msr_buf->nmsrs' failed.\n")


@pytest.mark.parametrize(("console", "stderr", "exited", "why"), [
    (b"[    0.000000] Linux version 6.1.0-50-amd64 ...", "", True, None),
    (b"", MSR_ABORT, True,
     "QEMU aborts under KVM (failed to set MSR 0x10a to 0x69): this host's /dev/kvm is a "
     "paravirtual or nested KVM that cannot run the guest"),
    (b"", "qemu-system-x86_64: something else\nqemu-system-x86_64: the last word\n", True,
     "QEMU failed under KVM: qemu-system-x86_64: the last word"),
    (b"", "", False,
     "the guest's kernel printed nothing under KVM within 3 s (a nested or paravirtual KVM "
     "that cannot run it)"),
], ids=["works", "msr", "other-failure", "silent"])
def test_why_kvm_cannot_run_the_guest_is_one_line(console: bytes, stderr: str, exited: bool,
                                                   why: str | None) -> None:
    assert qemu.kvm_refusal(console, stderr, exited, timeout=3) == why


def test_without_kvm_up_says_why_and_how_to_skip_the_check(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(qemu, "kvm_unusable", lambda kernel: "this host has no /dev/kvm")
    assert qemu.choose_accel(tmp_path / "vmlinuz", {}) == (
        "tcg", "not using KVM: this host has no /dev/kvm; TCG is 10 to 20 times slower "
               "(PBOTVM_ACCEL=tcg skips this check)")
    monkeypatch.setattr(qemu, "kvm_unusable", lambda kernel: None)
    assert qemu.choose_accel(tmp_path / "vmlinuz", {}) == ("kvm", None)


def recorded_vm(state: Path, **info: Any) -> None:
    """The vm.json of a guest that `pbotvm vm up` started with the state directory ``state``."""
    qemu.fresh_state_dir(qemu.VmPaths(state / "qemu"))
    recorded = {"pid": 1, "accel": "tcg", "addr": "127.0.0.1", "serial": 5555, "heart": 5556,
                "qmp": str(state / "qemu/qmp.sock"), "image": "/i", "boot_seconds": 1.0,
                "warmup_seconds": 1.0, "savevm_seconds": 1.0,
                "serial_socket": str(state / "qemu/serial.sock"),
                "heart_socket": str(state / "qemu/heart.sock"), **info}
    (state / "qemu/vm.json").write_text(json.dumps(recorded))


def test_vm_server_finds_the_guest_vm_up_started_in_its_state_directory(
        tmp_path: Path) -> None:
    state = tmp_path / "state"
    env = {"XDG_CONFIG_HOME": str(tmp_path), "PBOTVM_STATE_DIR": str(state)}
    plain = HostSettings.from_env(env)
    assert qemu.with_vm_up_guest(plain, env) == (plain, None)  # no guest started there
    recorded_vm(state)
    settings, line = qemu.with_vm_up_guest(plain, env)
    machine = settings.machines.resolve()
    assert (machine.name, machine.serial_socket, machine.heart_socket, machine.cid) == (
        "pbot-vm", f"{state}/qemu/serial.sock", f"{state}/qemu/heart.sock", 0)
    assert line == (f"pbot-vm: the guest `pbotvm vm up` started ({state}/qemu/vm.json): serial "
                    f"{state}/qemu/serial.sock, heart {state}/qemu/heart.sock, no vsock")
    # Its backend is the QEMU one: reverted with QMP, not by a command.
    assert settings.revert_command is None
    assert guest_for(settings, machine, env=env).describe() == "QEMU pid 1"
    # The revert command the operator gave stays; TCP lines (`vm up --tcp`) are found too.
    recorded_vm(state, serial=7001, heart=7002, serial_socket="", heart_socket="")
    told = HostSettings.from_env({**env, "PBOTVM_REVERT_COMMAND": "my-revert"})
    settings, line = qemu.with_vm_up_guest(told, env)
    machine = settings.machines.resolve()
    assert (machine.serial, machine.heart, machine.serial_socket, settings.revert_command) == (
        7001, 7002, "", ["my-revert"])
    assert line is not None and line.endswith("serial 127.0.0.1:7001, heart 127.0.0.1:7002, "
                                              "no vsock")


@pytest.mark.parametrize(("told", "machines_file"), [
    ({"PBOTVM_SERIAL_SOCKET": "/run/mine/serial.sock"}, None),
    ({"PBOTVM_HEART_SOCKET": "/run/mine/heart.sock"}, None),
    ({"PBOTVM_SERIAL": "7777"}, None), ({"PBOTVM_HEART": "7778"}, None),
    ({"PBOTVM_MACHINES": "{tmp}/machines.json"}, "machines.json"),
    ({}, "pbotvm/vm-exec.json"),  # where a machines file is looked for by default
], ids=["serial-socket", "heart-socket", "serial", "heart", "machines", "default-machines"])
def test_where_the_operator_says_the_lines_are_wins(tmp_path: Path, told: dict[str, str],
                                                   machines_file: str | None) -> None:
    state = tmp_path / "state"
    recorded_vm(state)
    if machines_file is not None:
        (tmp_path / machines_file).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / machines_file).write_text('{"machines": {"pbot-vm": {"serial": 6000}}}')
    env = {"XDG_CONFIG_HOME": str(tmp_path), "PBOTVM_STATE_DIR": str(state),
           **{name: value.format(tmp=tmp_path) for name, value in told.items()}}
    settings = HostSettings.from_env(env)
    assert qemu.with_vm_up_guest(settings, env) == (settings, None)


MODULES_DEP = """\
kernel/fs/ext4/ext4.ko: kernel/lib/crc16.ko kernel/fs/mbcache.ko kernel/fs/jbd2/jbd2.ko
kernel/fs/jbd2/jbd2.ko:
kernel/fs/mbcache.ko:
kernel/lib/crc16.ko:
kernel/drivers/virtio/virtio.ko:
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio_ring.ko \
kernel/drivers/virtio/virtio.ko
kernel/crypto/crc32c_generic.ko.xz:
"""


def test_load_order_puts_dependencies_first_and_skips_builtins() -> None:
    table = initramfs.parse_modules_dep(MODULES_DEP)
    order = initramfs.load_order(["virtio_blk", "crc32c_generic", "ext4"], table, {"virtio"})
    assert order == ["virtio_ring", "virtio_blk", "crc32c_generic", "crc16", "mbcache", "jbd2",
                     "ext4"]
    with pytest.raises(initramfs.InitramfsError):
        initramfs.load_order(["virtio_pci"], table, set())


def test_cpio_newc_layout() -> None:
    entries = [initramfs.Entry("init", stat.S_IFREG | 0o755, b"#!/bin/sh\n"),
               initramfs.Entry("dev/console", stat.S_IFCHR | 0o600, rdev=(5, 1))]
    data = b"".join(initramfs.cpio_newc(entries))
    assert data.startswith(b"070701") and len(data) % 4 == 0
    header = data[:110]
    assert int(header[14:22], 16) == stat.S_IFREG | 0o755
    assert int(header[54:62], 16) == len(b"#!/bin/sh\n")
    assert data[110:115] == b"init\0"
    assert b"dev/console\0" in data and data.rstrip(b"\0").endswith(b"TRAILER!!!")


async def fake_qmp(path: Path, replies: dict[str, dict[str, Any]]) -> asyncio.Server:
    """A QMP server answering each command from ``replies``, with an event in between."""
    async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b'{"QMP": {"version": {}, "capabilities": []}}\r\n')
        while line := await reader.readline():
            msg = json.loads(line)
            key = msg["execute"]
            if key == "human-monitor-command":
                key = msg["arguments"]["command-line"]
            writer.write(b'{"event": "RESUME", "timestamp": {}}\r\n')
            reply = replies.get(key, {"error": {"class": "GenericError", "desc": "no " + key}})
            writer.write(json.dumps({**reply, "id": msg["id"]}).encode() + b"\r\n")
        writer.close()
    return await asyncio.start_unix_server(session, str(path))


def test_qmp_client(tmp_path: Path) -> None:
    sock = tmp_path / "qmp.sock"

    async def main() -> None:
        server = await fake_qmp(sock, {
            "qmp_capabilities": {"return": {}}, "query-status": {"return": {"running": True}},
            "loadvm 1": {"return": ""}, "loadvm 2": {"return": "Error: no snapshot 2\r\n"}})
        async with server:
            async with await QMP.connect(sock) as qmp:
                assert await qmp.execute("query-status") == {"running": True}
                with pytest.raises(QMPError, match="no quit"):
                    await qmp.execute("quit")
            assert await loadvm(sock) < 1
            with pytest.raises(QMPError, match="loadvm 2: Error: no snapshot 2"):
                await loadvm(sock, "2")

    asyncio.run(main())


def test_qmp_connect_error_names_the_socket(tmp_path: Path) -> None:
    with pytest.raises(QMPError, match=r"missing\.sock"):
        asyncio.run(QMP.connect(tmp_path / "missing.sock", timeout=1))


def test_a_zombie_qemu_counts_as_dead() -> None:
    import subprocess

    proc = subprocess.Popen(["sleep", "30"])
    assert qemu.pid_alive(proc.pid)
    proc.kill()
    assert until(lambda: not qemu.pid_alive(proc.pid), 5)  # killed, not yet reaped: a zombie
    proc.wait()


def test_vm_server_finds_the_pool_vm_up_started(tmp_path: Path) -> None:
    state = tmp_path / "state"
    env = {"XDG_CONFIG_HOME": str(tmp_path), "PBOTVM_STATE_DIR": str(state)}
    recorded_vm(state)
    second = qemu.guest_paths(state, 1)
    qemu.fresh_state_dir(second)
    second.info.write_text(json.dumps({
        "pid": 2, "accel": "tcg", "addr": "127.0.0.1", "serial": 5557, "heart": 5558,
        "qmp": str(second.qmp), "image": "/i", "boot_seconds": 1.0, "warmup_seconds": 1.0,
        "savevm_seconds": 1.0, "serial_socket": str(second.serial_socket),
        "heart_socket": str(second.heart_socket)}))
    settings, line = with_recorded_guests(HostSettings.from_env(env), env)
    machine = settings.machines.resolve()
    assert [(guest.name, guest.serial_socket) for guest in machine.members()] == [
        ("pbot-vm/0", f"{state}/qemu/serial.sock"), ("pbot-vm/1", f"{state}/qemu/1/serial.sock")]
    assert line is not None and line.startswith("pbot-vm: the 2 guests `pbotvm vm up` started")
    # Each found by its lines, reverted as QEMU's own.
    assert [guest_for(settings, guest, env=env).describe() for guest in machine.members()] == [
        "QEMU pid 1", "QEMU pid 2"]


def test_vm_server_finds_the_pool_libvirt_up_started(tmp_path: Path) -> None:
    state = tmp_path / "state"
    env = {"XDG_CONFIG_HOME": str(tmp_path), "PBOTVM_STATE_DIR": str(state)}
    plain = HostSettings.from_env(env)
    machine = plain.machines.resolve()
    pool = [nth_guest(machine, index) for index in range(3)]
    libvirt_domain.record_pool(state, pool)
    assert stat.S_IMODE((state / "libvirt" / libvirt_domain.POOL_RECORD).stat().st_mode) == 0o600
    assert libvirt_domain.recorded_pool(state) == pool
    settings, line = with_recorded_guests(plain, env)
    assert settings.machines.resolve().members() == tuple(pool)
    assert line == ("pbot-vm: the 3 domains `pbotvm libvirt up` started: pbot-vm, pbot-vm-1, "
                    "pbot-vm-2")
    assert [(guest.serial, guest.heart, guest.cid) for guest in pool] == [
        (5555, 5556, 7), (5557, 5558, 8), (5559, 5560, 9)]
    libvirt_domain.record_pool(state, [])
    assert with_recorded_guests(plain, env) == (plain, None)
