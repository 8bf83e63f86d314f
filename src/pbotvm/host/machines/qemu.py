"""The QEMU backend: boot the guest image, warm it up, snapshot it; revert with ``loadvm``.

``vm up`` boots the cached image on a fresh qcow2 overlay (the snapshot lives in the overlay,
the cached image stays clean), waits for the first heartbeat, runs each language once so
toolchains are in the page cache, then ``savevm 1``. vm-server reverts with
``PBOTVM_REVERT_COMMAND="pbotvm vm revert"`` (QMP ``loadvm``, ~0.2 s).

The serial devices are served on Unix sockets in the state directory, root's and mode 0600,
unless the machine asks for the original's TCP ports: on a TCP port, any local user who
connects first has the guest's line, and QEMU serves one client at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from pbotvm import procs
from pbotvm.config import ACCEL, DEFAULT_MACHINE, ConfigError, HostSettings, Machine, machines_path
from pbotvm.host import state_files
from pbotvm.host.machines.guest import (
    Guest,
    GuestError,
    Say,
    Warm,
    WarmUpFailed,
    process_tree_seconds,
)
from pbotvm.host.machines.qmp import QMP, QMPError, loadvm, snapshot
from pbotvm.host.machines.transport import wait_heartbeat
from pbotvm.image.build import Image
from pbotvm.provision.layout import CONSOLE, HEART_INDEX, SERIAL_INDEX

QEMU = "qemu-system-x86_64"
SNAPSHOT = "1"
KVM_PROBE_TIMEOUT = 3.0  # a working KVM prints the kernel banner in well under a second
BOOT_TIMEOUT = 180.0  # TCG boots in ~11 s on 2 cores; allow for a loaded CI machine
KERNEL_ARGS = f"console={CONSOLE} panic=1 quiet"


class QemuError(GuestError):
    """The message is shown to the operator as is."""


@dataclass(frozen=True)
class VmPaths:
    """Everything a running VM keeps in its state directory."""

    state_dir: Path

    @property
    def overlay(self) -> Path:
        return self.state_dir / "disk.qcow2"

    @property
    def qmp(self) -> Path:
        return self.state_dir / "qmp.sock"

    @property
    def pidfile(self) -> Path:
        return self.state_dir / "qemu.pid"

    @property
    def console(self) -> Path:
        return self.state_dir / "console.log"

    @property
    def info(self) -> Path:
        return self.state_dir / "vm.json"

    @property
    def serial_socket(self) -> Path:
        return self.state_dir / "serial.sock"

    @property
    def heart_socket(self) -> Path:
        return self.state_dir / "heart.sock"


@dataclass(frozen=True)
class VmInfo:
    """What ``vm up`` records for ``status``, ``revert`` and ``down``."""

    pid: int
    accel: str
    addr: str
    serial: int
    heart: int
    qmp: str
    image: str
    boot_seconds: float
    warmup_seconds: float
    savevm_seconds: float
    serial_socket: str = ""
    heart_socket: str = ""

    @property
    def serial_where(self) -> str:
        return self.serial_socket or f"{self.addr}:{self.serial}"

    @property
    def heart_where(self) -> str:
        return self.heart_socket or f"{self.addr}:{self.heart}"


def with_sockets(machine: Machine, paths: VmPaths) -> Machine:
    """The machine with its serial devices on Unix sockets: those it names, else the state
    directory's."""
    return replace(machine, serial_socket=machine.serial_socket or str(paths.serial_socket),
                   heart_socket=machine.heart_socket or str(paths.heart_socket))


def socket_dirs(machine: Machine) -> list[Path]:
    """The machine's serial sockets, their directories made (root's alone) where missing."""
    sockets = [Path(path) for path in (machine.serial_socket, machine.heart_socket) if path]
    for path in sockets:
        state_files.make_dir(path.parent)
    return sockets


def serial_args(name: str, index: int, addr: str, port: int, socket: str = "") -> list[str]:
    if socket:
        chardev = f"socket,id={name},path={socket.replace(',', ',,')},server=on,wait=off"
    else:
        # nodelay: the UART sends a byte at a time; without it each reply waits ~40 ms for ACKs.
        chardev = f"socket,id={name},host={addr},port={port},server=on,wait=off,nodelay=on"
    return ["-chardev", chardev, "-device", f"isa-serial,chardev={name},index={index}"]


def accel_args(accel: str) -> list[str]:
    return ["-accel", "kvm", "-cpu", "host"] if accel == "kvm" else ["-accel", "tcg", "-cpu", "max"]


def qemu_argv(image: Image, paths: VmPaths, machine: Machine, accel: str,
              memory_mib: int = 1024) -> list[str]:
    return [
        QEMU, "-name", "pbot-vm", "-nodefaults", "-no-user-config", "-display", "none",
        *accel_args(accel), "-m", str(memory_mib), "-smp", "1",
        "-kernel", str(image.kernel), "-initrd", str(image.initrd), "-append", KERNEL_ARGS,
        # panic=1 plus -no-reboot: a guest that cannot boot makes QEMU exit instead of looping.
        "-no-reboot",
        "-drive", f"file={paths.overlay},if=virtio,format=qcow2",
        # append: a restart after a crash must not wipe the log that shows what happened.
        "-chardev", f"file,id=console,path={paths.console},append=on",
        "-serial", "chardev:console",
        *serial_args("serial", SERIAL_INDEX, machine.addr, machine.serial,
                     machine.serial_socket),
        *serial_args("heart", HEART_INDEX, machine.addr, machine.heart, machine.heart_socket),
        "-qmp", f"unix:{paths.qmp},server=on,wait=off",
        "-nic", "none",  # networking off
        "-pidfile", str(paths.pidfile), "-daemonize",
    ]


# QEMU's words when the host's KVM refuses a model-specific register of the CPU QEMU asks for
# (a paravirtual or nested KVM, e.g. MSR 0x10a, the CPU's vulnerability report): it aborts.
_MSR_REFUSED = re.compile(r"failed to set MSR 0x[0-9a-fA-F]+(?: to 0x[0-9a-fA-F]+)?")


def kvm_refusal(console: bytes, stderr: str, exited: bool,
                timeout: float = KVM_PROBE_TIMEOUT) -> str | None:
    """Why the KVM probe's QEMU did not boot the kernel, in a few words; None when it did.
    ``exited``: QEMU ended by itself within ``timeout`` (else it was killed)."""
    if b"Linux version" in console:
        return None
    if refused := _MSR_REFUSED.search(stderr):
        return (f"QEMU aborts under KVM ({refused[0]}): this host's /dev/kvm is a paravirtual "
                "or nested KVM that cannot run the guest")
    if exited:
        last = stderr.strip().splitlines()[-1:]
        return f"QEMU failed under KVM: {last[0]}" if last else "QEMU exited under KVM"
    return (f"the guest's kernel printed nothing under KVM within {timeout:g} s (a nested or "
            "paravirtual KVM that cannot run it)")


def kvm_unusable(kernel: Path, timeout: float = KVM_PROBE_TIMEOUT) -> str | None:
    """Why KVM cannot run the guest on this host; None when it can. Boots the kernel under KVM
    briefly and looks for its banner on the console.

    /dev/kvm can exist and still be unable to run a stock kernel (nested, paravirtual KVM):
    QEMU then aborts, or starts while the guest hangs silently; only running it tells.
    """
    if not os.path.exists("/dev/kvm"):
        return "this host has no /dev/kvm"
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "/dev/kvm is not open to this user (root's, and the kvm group's)"
    argv = [QEMU, "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
            *accel_args("kvm"), "-m", "256", "-nic", "none", "-serial", "stdio",
            "-kernel", str(kernel), "-append", f"console={CONSOLE} panic=-1"]
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        out, err = proc.communicate(timeout=timeout)
        exited = True
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        exited = False
    return kvm_refusal(out, err.decode(errors="replace"), exited, timeout)


def choose_accel(kernel: Path, env: Mapping[str, str]) -> tuple[str, str | None]:
    """``PBOTVM_ACCEL`` (kvm or tcg) if set, else KVM when it really runs a kernel; and, when
    the probe found KVM unusable, the operator's line saying why."""
    try:
        wanted = ACCEL.read(env)
    except ConfigError as e:
        raise QemuError(str(e)) from None
    if wanted:
        return wanted, None
    why = kvm_unusable(kernel)
    if why is None:
        return "kvm", None
    return "tcg", (f"not using KVM: {why}; TCG is 10 to 20 times slower (PBOTVM_ACCEL=tcg "
                   "skips this check)")


def vm_from_env(env: Mapping[str, str]) -> tuple[VmPaths, Machine]:
    """The state dir and the default machine (its ports) as vm-server sees them."""
    settings = HostSettings.from_env(env)
    return VmPaths(settings.state_dir / "qemu"), settings.machines.resolve()


def pid_alive(pid: int) -> bool:
    """Whether the process runs; a zombie (a killed QEMU its parent has not reaped) does not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return procs.running(pid)


def read_info(paths: VmPaths) -> VmInfo | None:
    try:
        return VmInfo(**json.loads(paths.info.read_text()))
    except (OSError, ValueError, TypeError):
        return None


# The operator's word on where the default machine's lines are, which wins over what
# `vm up` recorded.
LINE_SETTINGS = tuple(row.variable for row in DEFAULT_MACHINE
                      if row.field in ("serial", "heart", "serial_socket", "heart_socket"))


def lines_configured(env: Mapping[str, str]) -> bool:
    """Whether the environment or a machines file says where the default machine's serial
    and heartbeat lines are."""
    return (any(env.get(name, "").strip() for name in LINE_SETTINGS)
            or machines_path(env).exists())


def guest_paths(state_dir: Path, index: int) -> VmPaths:
    """Where guest ``index`` of ``vm up --guests N`` keeps its state: ``qemu/`` for the first
    (a lone guest's), ``qemu/K`` for the others."""
    base = state_dir / "qemu"
    return VmPaths(base / str(index) if index else base)


def recorded_guests(state_dir: Path) -> list[tuple[VmPaths, VmInfo]]:
    """The guests ``vm up`` started in the state directory, in their order."""
    found: list[tuple[VmPaths, VmInfo]] = []
    while (info := read_info(paths := guest_paths(state_dir, len(found)))) is not None:
        found.append((paths, info))
    return found


def with_vm_up_guest(settings: HostSettings,
                     env: Mapping[str, str]) -> tuple[HostSettings, str | None]:
    """The settings with the default machine on the guest that ``vm up`` started in the state
    directory (as its ``vm.json`` records it), or on its pool when it started several, and
    the log line that says so; as they were when no guest was started there or the operator
    says where the lines are.

    Those guests have no vsock device; ``guest_for`` finds each by its lines, and reverts it
    with QMP (unless ``PBOTVM_REVERT_COMMAND`` says how)."""
    recorded = recorded_guests(settings.state_dir)
    if not recorded or lines_configured(env):
        return settings, None
    default = settings.machines.resolve()
    guests = [replace(default, name=default.name if len(recorded) == 1 else f"{default.name}/{k}",
                      addr=info.addr, serial=info.serial, heart=info.heart,
                      serial_socket=info.serial_socket, heart_socket=info.heart_socket, cid=0,
                      guests=())
              for k, (_, info) in enumerate(recorded)]
    machine = guests[0] if len(guests) == 1 else replace(default, guests=tuple(guests))
    machines = replace(settings.machines,
                       machines={**settings.machines.machines, machine.name: machine})
    where = "; ".join(f"serial {info.serial_where}, heart {info.heart_where}"
                      for _, info in recorded)
    line = (f"{machine.name}: the guest `pbotvm vm up` started ({recorded[0][0].info}): {where}, "
            "no vsock" if len(recorded) == 1 else
            f"{machine.name}: the {len(recorded)} guests `pbotvm vm up` started: {where}; "
            "no vsock")
    return replace(settings, machines=machines), line


def console_tail(console: Path, lines: int = 5) -> str:
    with contextlib.suppress(OSError):
        return "\n  ".join(console.read_text(errors="replace").splitlines()[-lines:])
    return ""


# --- up, down, revert --------------------------------------------------------------------------

def _start(image: Image, paths: VmPaths, machine: Machine, accel: str) -> int:
    fresh_state_dir(paths)
    create_overlay(image, paths.overlay)
    return launch(qemu_argv(image, paths, machine, accel), paths, machine)


def fresh_state_dir(paths: VmPaths) -> None:
    """The VM's state directory without a previous VM's files, made (root's alone) if
    missing: its console log has every program's output."""
    state_files.make_dir(paths.state_dir)
    for stale in (paths.overlay, paths.qmp, paths.pidfile, paths.console, paths.info,
                  paths.serial_socket, paths.heart_socket):
        stale.unlink(missing_ok=True)


def create_overlay(image: Image, overlay: Path) -> None:
    """The VM's own disk: writes (and internal snapshots) land here, the cached image stays
    clean."""
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2",
                    "-b", str(image.disk), str(overlay)], check=True)


def launch(argv: list[str], paths: VmPaths, machine: Machine) -> int:
    """Run QEMU (it daemonizes once its devices are up); returns its pid.

    The umask keeps what QEMU creates (sockets, console log) to root from the start, until
    ``-daemonize`` sets its own (027): the sockets, QMP's too, are made root's alone after."""
    sockets = socket_dirs(machine)
    proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          check=False, umask=0o077)
    if proc.returncode:
        raise QemuError(f"{QEMU} failed: {proc.stderr.strip()}")
    for path in (*sockets, paths.qmp):
        path.chmod(0o600)
    return int(paths.pidfile.read_text())


def restart(paths: VmPaths, info: VmInfo) -> VmInfo:
    """QEMU is gone (killed, crashed): start it again on the same overlay, straight into the
    snapshot (``-loadvm``), so a revert also brings back a dead VM."""
    if not paths.overlay.is_file():
        raise QemuError(f"QEMU is gone and so is its disk {paths.overlay}; `pbotvm vm up`")
    for stale in (paths.qmp, paths.pidfile):
        stale.unlink(missing_ok=True)
    machine = Machine(name="pbot-vm", addr=info.addr, serial=info.serial, heart=info.heart,
                      serial_socket=info.serial_socket, heart_socket=info.heart_socket)
    argv = qemu_argv(Image(Path(info.image)), paths, machine, info.accel)
    info = replace(info, pid=launch([*argv, "-loadvm", SNAPSHOT], paths, machine))
    paths.info.write_text(json.dumps(asdict(info), indent=1) + "\n")
    return info


async def up(image: Image, paths: VmPaths, machine: Machine, env: Mapping[str, str],
             warm: Warm, log: Callable[[str], None] = lambda _: None) -> VmInfo:
    """Boot, ``warm`` and snapshot the VM; returns what was recorded in the state dir."""
    info = read_info(paths)
    if info and pid_alive(info.pid):
        raise QemuError(f"the VM is already running (pid {info.pid}); `pbotvm vm down` first")
    accel, note = await asyncio.to_thread(choose_accel, image.kernel, env)
    if note is not None:
        log(note)
    start = time.monotonic()
    pid = _start(image, paths, machine, accel)
    log(f"QEMU pid {pid} ({accel}); waiting for the guest's heartbeat")
    try:
        booted, warmed = await _boot_and_snapshot(paths, machine, pid, start, warm, log)
    except BaseException:
        stop(paths, pid)  # a half-started VM must not hold the ports
        raise
    info = VmInfo(pid=pid, accel=accel, addr=machine.addr, serial=machine.serial,
                  heart=machine.heart, qmp=str(paths.qmp), image=str(image.directory),
                  boot_seconds=round(booted - start, 2),
                  warmup_seconds=round(warmed - booted, 2),
                  savevm_seconds=round(time.monotonic() - warmed, 2),
                  serial_socket=machine.serial_socket, heart_socket=machine.heart_socket)
    paths.info.write_text(json.dumps(asdict(info), indent=1) + "\n")
    if not lines_configured(env):
        log("vm-server, vm-watchdog and vm-exec with the same PBOTVM_STATE_DIR find it, and "
            "revert it")
    return info


async def _boot_and_snapshot(paths: VmPaths, machine: Machine, pid: int, start: float,
                             warm: Warm, log: Callable[[str], None]) -> tuple[float, float]:
    """Boot and warm up, then ``savevm``; returns when boot and warm-up ended."""
    booted, warmed = await boot(machine, lambda: pid_alive(pid), paths.console, start, warm,
                                log)
    async with await QMP.connect(paths.qmp) as qmp:
        await snapshot(qmp, "savevm", SNAPSHOT)
    return booted, warmed


async def boot(machine: Machine, alive: Callable[[], bool], console: Path, start: float,
               warm: Warm, say: Callable[[str], None]) -> tuple[float, float]:
    """Wait for the first heartbeat, then ``warm`` the guest; returns when each step ended.

    Both backends do this before their snapshot, so the snapshot has what the warm step left
    (warm toolchains, precompiled preludes).
    """
    try:
        await wait_heartbeat(machine, BOOT_TIMEOUT, alive)
    except (ConnectionError, TimeoutError) as e:
        reason = "timed out" if isinstance(e, TimeoutError) else str(e)
        raise QemuError(
            f"guest did not boot ({reason}); console:\n  {console_tail(console)}") from None
    booted = time.monotonic()
    say(f"guest up in {booted - start:.1f} s")
    try:
        await warm(machine)
    except WarmUpFailed as e:
        raise QemuError(f"{e}; console:\n  {console_tail(console)}") from None
    # Let the guest finish cleaning up after the last request before the RAM is saved.
    await asyncio.sleep(1.0)
    return booted, time.monotonic()


def _kill(pid: int, timeout: float = 10.0) -> None:
    """Stop QEMU: SIGTERM (QEMU exits cleanly on it), then SIGKILL."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + timeout
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if not pid_alive(pid):
            break


def stop(paths: VmPaths, pid: int) -> None:
    """Stop QEMU and remove what it ran on."""
    _kill(pid)
    for path in (paths.overlay, paths.qmp, paths.pidfile, paths.info, paths.serial_socket,
                 paths.heart_socket):
        path.unlink(missing_ok=True)


def down(paths: VmPaths) -> bool:
    """Stop the VM; False when none was running."""
    info = read_info(paths)
    if info is None or not pid_alive(info.pid):
        for path in (paths.overlay, paths.qmp, paths.pidfile, paths.info):
            path.unlink(missing_ok=True)
        return False
    stop(paths, info.pid)
    return True


async def revert(paths: VmPaths, *, slow: bool = False) -> str:
    """``loadvm 1`` in the running VM; or, slow (or QEMU gone), QEMU started again straight
    into the snapshot. Returns which."""
    info = read_info(paths)
    if info is None:
        raise QemuError(f"no VM is running from {paths.state_dir}")
    if slow or not pid_alive(info.pid):
        await asyncio.to_thread(_kill, info.pid)
        await asyncio.to_thread(restart, paths, info)
        return "QEMU restarted into the snapshot"
    try:
        await loadvm(paths.qmp, SNAPSHOT)
    except QMPError as e:
        raise QemuError(str(e)) from None
    return "loadvm"


class QemuGuest(Guest):
    """The guest in the QEMU that ``pbotvm vm up`` started, its state in ``paths``."""

    kind = "qemu"

    def __init__(self, lines: Machine, paths: VmPaths, env: Mapping[str, str]) -> None:
        super().__init__(lines)
        self.paths = paths
        self.env = env

    @classmethod
    def of(cls, settings: HostSettings, machine: Machine,
           env: Mapping[str, str]) -> QemuGuest:
        return cls(machine, VmPaths(settings.state_dir / "qemu"), env)

    @classmethod
    def recorded(cls, settings: HostSettings, machine: Machine,
                 env: Mapping[str, str]) -> QemuGuest | None:
        """The guest ``vm up`` recorded in the state directory on ``machine``'s lines."""
        for paths, info in recorded_guests(settings.state_dir):
            if _serves(info, machine):
                return cls(machine, paths, env)
        return None

    async def up(self, image: Image | None, warm: Warm, say: Say) -> str:
        if image is None:
            raise QemuError("QEMU boots an image: build one with `pbotvm image build`")
        info = await up(image, self.paths, self.lines, self.env, warm, say)
        return (f"pid {info.pid}, {info.accel}, serial {info.serial_where}, heart "
                f"{info.heart_where}, boot {info.boot_seconds} s, savevm "
                f"{info.savevm_seconds} s")

    def down(self) -> bool:
        return down(self.paths)

    async def revert(self, *, slow: bool = False) -> str:
        return await revert(self.paths, slow=slow)

    def _pid(self) -> int:
        info = read_info(self.paths)
        if info is None or not pid_alive(info.pid):
            raise QemuError("no QEMU is running")
        return info.pid

    def cpu_seconds(self) -> float:
        return process_tree_seconds(self._pid(), "QEMU")

    def running(self) -> bool:
        info = read_info(self.paths)
        return info is not None and pid_alive(info.pid)

    def describe(self) -> str:
        info = read_info(self.paths)
        return f"QEMU pid {info.pid}" if info is not None else f"QEMU in {self.paths.state_dir}"


def _serves(info: VmInfo, machine: Machine) -> bool:
    """Whether the recorded VM is the one on ``machine``'s serial line."""
    if machine.serial_socket or info.serial_socket:
        return machine.serial_socket == info.serial_socket
    return (machine.addr, machine.serial) == (info.addr, info.serial)
