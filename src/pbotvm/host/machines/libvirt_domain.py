"""The libvirt backend: the guest image as a libvirt domain, snapshot ``1``, and its revert.

``pbotvm libvirt up`` does what the original's doc has an operator do by hand: define the
domain (here from the built image, booting its kernel directly), attach the devices (the same
code as ``devices/add-all``), start it, let guest-server come up, run each language once, and
take the internal snapshot ``1``. The domain is marked as ours in its metadata, so ``up`` and
``down`` never touch a domain of the same name that someone else defined.

A system daemon runs QEMU as a user of its own (Debian: ``libvirt-qemu``), which cannot read
root's home: when it cannot reach the image cache or the state directory, the domain's files
(overlay, console log, a copy of the image) go to libvirt's own images directory instead;
when it cannot reach that either, ``up`` stops before defining anything, with one line.

Reverting: ``virsh snapshot-revert`` restarts QEMU on libvirt 9 (seconds); ``loadvm`` through
libvirt's QEMU monitor restores the same internal snapshot in the running QEMU (a fraction of
a second). :func:`revert` tries the second and falls back to the first.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from xml.sax.saxutils import escape, quoteattr

from pbotvm.config import HostSettings, Machine
from pbotvm.host import state_files
from pbotvm.host.machines import devices
from pbotvm.host.machines.devices import LibvirtError, session
from pbotvm.host.machines.guest import Guest, Say, Warm
from pbotvm.host.machines.libvirt_access import READ, SEARCH, WRITE, QemuUser, denied, qemu_user
from pbotvm.host.machines.libvirt_lines import run_if_started
from pbotvm.host.machines.qemu import (
    KERNEL_ARGS,
    QEMU,
    QemuError,
    boot,
    choose_accel,
    create_overlay,
    socket_dirs,
)
from pbotvm.image.build import Image
from pbotvm.protocol import Framing

if TYPE_CHECKING:
    import libvirt

log = logging.getLogger("pbotvm.libvirt")

METADATA_NS = "https://github.com/pbotvm/pbotvm#domain"
# libvirt's default storage directory for qemu:///system (Debian's package creates it, 0711).
IMAGES_DIR = Path("/var/lib/libvirt/images")
KVM = Path("/dev/kvm")
SNAPSHOT_XML = ("<domainsnapshot><name>{name}</name>"
                "<description>pbotvm: guest-server up, toolchains warm</description>"
                "</domainsnapshot>")


@dataclass(frozen=True)
class DomainPaths:
    state_dir: Path

    @property
    def overlay(self) -> Path:
        return self.state_dir / "disk.qcow2"

    @property
    def console(self) -> Path:
        return self.state_dir / "console.log"


def state_paths(env: Mapping[str, str]) -> tuple[DomainPaths, Machine, HostSettings]:
    settings = HostSettings.from_env(env)
    return DomainPaths(settings.state_dir / "libvirt"), settings.machines.resolve(), settings


def domain_xml(name: str, image: Image, paths: DomainPaths, accel: str,
               memory_mib: int = 1024) -> str:
    """A direct-kernel-boot domain without network; its serial/vsock devices come from
    :mod:`pbotvm.host.machines.devices`."""
    return boot_domain_xml(
        name, f"<pbotvm:image xmlns:pbotvm='{METADATA_NS}'>{escape(str(image.directory))}"
        "</pbotvm:image>", str(image.kernel), str(image.initrd), str(paths.overlay),
        f"<serial type='file'><source path={quoteattr(str(paths.console))}/>"
        "<target port='0'/></serial>", accel, memory_mib)


def boot_domain_xml(name: str, metadata: str, kernel: str, initrd: str, disk: str,
                    serials: str, accel: str, memory_mib: int = 1024) -> str:
    """The domain both ways of making one define (here, another host): the kernel booted
    directly, one qcow2 disk, no network, ``serials`` as given, marked as ours by
    ``metadata``."""
    kvm = accel == "kvm"
    cpu = "<cpu mode='host-passthrough'/>" if kvm else "<cpu mode='maximum'/>"
    return f"""<domain type='{'kvm' if kvm else 'qemu'}'>
  <name>{escape(name)}</name>
  <metadata>
    {metadata}
  </metadata>
  <memory unit='MiB'>{memory_mib}</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64'>hvm</type>
    <kernel>{escape(kernel)}</kernel>
    <initrd>{escape(initrd)}</initrd>
    <cmdline>{escape(KERNEL_ARGS)}</cmdline>
  </os>
  <features><acpi/></features>
  {cpu}
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/{QEMU}</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file={quoteattr(disk)}/>
      <target dev='vda' bus='virtio'/>
    </disk>
    {serials}
    <memballoon model='none'/>
  </devices>
</domain>
"""


def _lookup(conn: libvirt.virConnect, name: str) -> libvirt.virDomain | None:
    import libvirt

    try:
        return conn.lookupByName(name)
    except libvirt.libvirtError as e:
        if e.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
            return None
        raise


def made_by_up(dom: libvirt.virDomain) -> set[str] | None:
    """What the ``up`` that defined this domain made beside it (on another host: volume
    names, "" for the storage pool; here nothing); None when the domain is not ours."""
    import libvirt

    try:
        text = dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, METADATA_NS,
                            libvirt.VIR_DOMAIN_AFFECT_CONFIG)
    except libvirt.libvirtError:
        return None
    return set(json.loads(ET.fromstring(text).get("made", "[]")))


def is_ours(dom: libvirt.virDomain) -> bool:
    return made_by_up(dom) is not None


def _remove(dom: libvirt.virDomain) -> None:
    import libvirt

    if dom.isActive():
        dom.destroy()
    dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA)


def files_dir(domain: str) -> Path:
    """Where a domain's files go when QEMU's user cannot read the state directory."""
    return IMAGES_DIR / f"pbotvm-{domain}"


def _first_denied(image: Image, paths: DomainPaths, user: QemuUser) -> str | None:
    """What keeps QEMU's user from the domain's files: the image's read, the state directory
    entered (the overlay and console log in it are handed over to that user)."""
    needs = [(image.kernel, READ), (image.initrd, READ), (image.disk, READ),
             (paths.state_dir, SEARCH)]
    return next((why for path, need in needs if (why := denied(path, user, need))), None)


def copy_image(image: Image, directory: Path) -> Image:
    """The image's files in ``directory``, copied unless the copy there is already the same."""
    directory.mkdir(parents=True, exist_ok=True)
    copy = Image(directory)
    for source, target in ((image.kernel, copy.kernel), (image.initrd, copy.initrd),
                           (image.disk, copy.disk)):
        src, dst = source.stat(), target.stat() if target.exists() else None
        if dst is not None and (dst.st_size, dst.st_mtime_ns) == (src.st_size, src.st_mtime_ns):
            continue
        partial = target.with_name(f".{target.name}.partial")
        shutil.copy2(source, partial)  # keeps the time stamp the next comparison looks at
        partial.chmod(0o644)  # for QEMU's user, whatever the cache's mode
        os.replace(partial, target)
    return copy


def place_for_qemu(user: QemuUser | None, image: Image, paths: DomainPaths, domain: str,
                   accel: str) -> tuple[Image, DomainPaths]:
    """Where the domain's files go for QEMU's user: where they are when it can read them,
    else libvirt's images directory with a copy of the image; LibvirtError (one line, what
    to change) when not even there."""
    if user is None or user.uid == 0:
        return image, paths
    runs_as = f"libvirt runs QEMU as {user.name}"
    if accel == "kvm" and (why := denied(KVM, user, READ | WRITE)):
        raise LibvirtError(f"{runs_as}, which cannot open {KVM} ({why}): add it to that "
                           "device's group, or set PBOTVM_ACCEL=tcg")
    if _first_denied(image, paths, user) is None:
        return image, paths
    moved = DomainPaths(files_dir(domain))
    IMAGES_DIR.mkdir(mode=0o711, parents=True, exist_ok=True)
    # Before copying the image: the directory itself may be closed to QEMU's user.
    why = denied(IMAGES_DIR, user, SEARCH)
    if why is None:
        moved.state_dir.mkdir(mode=0o755, exist_ok=True)
        copied = copy_image(image, moved.state_dir / "image")
        why = _first_denied(copied, moved, user)
    if why is not None:
        raise LibvirtError(f"{runs_as}, which cannot read the domain's files ({why}): let it "
                           f"into {IMAGES_DIR}, or set user = \"root\" in the daemon's "
                           "qemu.conf")
    return copied, moved


def define(conn: libvirt.virConnect, machine: Machine, image: Image, paths: DomainPaths,
           accel: str) -> tuple[libvirt.virDomain, DomainPaths]:
    """(Re)define our domain on a fresh overlay of the image, its files where the daemon's
    QEMU can read them; returns it and where its files are. Refuses someone else's domain."""
    old = _lookup(conn, machine.domain)
    if old is not None:
        if not is_ours(old):
            raise LibvirtError(f"domain {machine.domain} exists and was not defined by pbotvm; "
                               "set PBOTVM_DOMAIN to another name")
        if old.isActive():
            raise LibvirtError(f"domain {machine.domain} is running; "
                               "`pbotvm libvirt down` first")
        _remove(old)
    user = qemu_user(conn.getCapabilities())
    image, paths = place_for_qemu(user, image, paths, machine.domain, accel)
    paths.state_dir.mkdir(parents=True, exist_ok=True)
    paths.overlay.unlink(missing_ok=True)
    paths.console.unlink(missing_ok=True)
    create_overlay(image, paths.overlay)
    paths.console.touch()
    if user is not None and user.uid != os.geteuid():
        # Its own files, whether or not the daemon hands files over (dynamic_ownership).
        for path in (paths.overlay, paths.console):
            os.chown(path, user.uid, user.gid)
    return conn.defineXML(domain_xml(machine.domain, image, paths, accel)), paths


def machine_devices(machine: Machine, say: Callable[[str], None]) -> list[devices.Device]:
    """The serial ports always; vsock when configured and the host can start it."""
    wanted = devices.serial_devices(machine)
    if machine.cid:
        note = devices.vsock_note()
        if note is None:
            wanted.append(devices.vsock_device(machine))
        else:
            say(f"no vsock device: {note}; requests use the serial line")
    return wanted


@dataclass(frozen=True)
class UpInfo:
    boot_seconds: float
    warmup_seconds: float
    snapshot_seconds: float


async def up(image: Image, settings: HostSettings, machine: Machine, paths: DomainPaths,
             env: Mapping[str, str], warm: Warm,
             say: Callable[[str], None] = lambda _: None) -> UpInfo:
    """Define the domain, attach its devices, then :func:`start` it."""
    accel, note = await asyncio.to_thread(choose_accel, image.kernel, env)
    if note is not None:
        say(note)
    with session(settings.libvirt_uri, machine.domain) as conn:
        dom, placed = define(conn, machine, image, paths, accel)
        if placed != paths:
            say(f"the domain's files are in {placed.state_dir}, where libvirt's QEMU can "
                "read them")
        socket_dirs(machine)  # libvirt makes the sockets, not their directory
        for device in machine_devices(machine, say):
            say(devices.attach(dom, device))
        return await start(dom, settings, machine, placed, warm, say)


async def start(dom: libvirt.virDomain, settings: HostSettings, machine: Machine,
                paths: DomainPaths, warm: Warm,
                say: Callable[[str], None] = lambda _: None) -> UpInfo:
    """Start the defined domain, wait for guest-server, ``warm`` it, create the snapshot."""
    begun = time.monotonic()
    dom.create()
    say(f"domain {machine.domain} started; waiting for the guest's heartbeat")
    try:
        booted, warmed = await boot(machine, lambda: bool(dom.isActive()), paths.console,
                                    begun, warm, say)
        dom.snapshotCreateXML(SNAPSHOT_XML.format(name=escape(settings.snapshot)), 0)
    except QemuError as e:
        _remove(dom)  # a half-started domain must not hold the ports
        raise LibvirtError(str(e)) from None
    except BaseException:
        _remove(dom)
        raise
    return UpInfo(round(booted - begun, 2), round(warmed - booted, 2),
                  round(time.monotonic() - warmed, 2))


def _disk_dir(dom: libvirt.virDomain) -> Path | None:
    import libvirt

    source = ET.fromstring(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)).find(
        "devices/disk/source")
    file = None if source is None else source.get("file")
    return None if file is None else Path(file).parent


def down(uri: str, name: str, paths: DomainPaths) -> bool:
    """Stop and undefine our domain, and remove its files; False when there was none."""
    with session(uri, name) as conn:
        dom = _lookup(conn, name)
        if dom is None:
            return False
        if not is_ours(dom):
            raise LibvirtError(f"domain {name} was not defined by pbotvm; not touching it")
        disk_dir = _disk_dir(dom)
        _remove(dom)
    paths.overlay.unlink(missing_ok=True)
    if disk_dir == files_dir(name):
        shutil.rmtree(disk_dir, ignore_errors=True)
    return True


def loadvm(dom: libvirt.virDomain, snapshot: str) -> str | None:
    """``loadvm`` in the running QEMU through libvirt's monitor; None, or why it did not work."""
    import libvirt
    import libvirt_qemu

    if not dom.isActive():
        return "the domain is not running"
    try:
        # HMP prints nothing on success and the error otherwise.
        out = libvirt_qemu.qemuMonitorCommand(
            dom, f"loadvm {snapshot}", libvirt_qemu.VIR_DOMAIN_QEMU_MONITOR_COMMAND_HMP)
    except libvirt.libvirtError as e:
        return e.get_error_message()
    return out.strip() or None


def revert_domain(dom: libvirt.virDomain, snapshot: str, fast: bool = True) -> str:
    """Revert to ``snapshot``; returns how ("loadvm" or "snapshot-revert")."""
    snap = dom.snapshotLookupByName(snapshot)
    if fast:
        why = loadvm(dom, snapshot)
        if why is None:
            return "loadvm"
        log.warning("domain %s: loadvm through the QEMU monitor failed (%s); "
                    "reverting with libvirt", dom.name(), why)
    dom.revertToSnapshot(snap)
    return "snapshot-revert"


def revert(uri: str, name: str, snapshot: str, fast: bool = True) -> str:
    with session(uri, name) as conn:
        return revert_domain(conn.lookupByName(name), snapshot, fast)


def domain_cpu_seconds(dom: libvirt.virDomain) -> float:
    """The domain's ``cpu.time`` (its statistics, in ns) in seconds."""
    import libvirt

    if not dom.isActive():
        raise LibvirtError(f"libvirt domain {dom.name()} is not running")
    [(_, stats)] = dom.connect().domainListGetStats([dom], libvirt.VIR_DOMAIN_STATS_CPU_TOTAL)
    # Drivers without the statistics API's CPU group give the same counter here.
    nanoseconds = stats["cpu.time"] if "cpu.time" in stats else dom.info()[4]
    return float(nanoseconds) / 1e9


def cpu_seconds(uri: str, name: str) -> float:
    with session(uri, name) as conn:
        return domain_cpu_seconds(conn.lookupByName(name))


def ours_defined(uri: str, name: str) -> bool:
    """Whether the daemon at ``uri`` has our domain ``name`` (False when it cannot be asked)."""
    try:
        with session(uri, name) as conn:
            dom = _lookup(conn, name)
            return dom is not None and is_ours(dom)
    except LibvirtError:
        return False


def active(uri: str, name: str) -> bool:
    with session(uri, name) as conn:
        dom = _lookup(conn, name)
        return dom is not None and bool(dom.isActive())


class LibvirtGuest(Guest):
    """The guest as the libvirt domain its machine names."""

    kind = "libvirt"

    def __init__(self, lines: Machine, settings: HostSettings, paths: DomainPaths,
                 env: Mapping[str, str]) -> None:
        super().__init__(lines)
        self.settings = settings
        self.paths = paths
        self.env = env

    @classmethod
    def of(cls, settings: HostSettings, machine: Machine,
           env: Mapping[str, str]) -> LibvirtGuest:
        return cls(machine, settings, DomainPaths(settings.state_dir / "libvirt"), env)

    @property
    def uri(self) -> str:
        return self.settings.libvirt_uri

    async def up(self, image: Image | None, warm: Warm, say: Say) -> str:
        if image is None:
            raise LibvirtError("a libvirt domain boots an image: build one with "
                               "`pbotvm image build`")
        info = await up(image, self.settings, self.lines, self.paths, self.env, warm, say)
        lines = self.lines
        serial = lines.serial_socket or f"{lines.addr}:{lines.serial}"
        heart = lines.heart_socket or f"{lines.addr}:{lines.heart}"
        return (f"domain {lines.domain} on {self.uri}, serial {serial}, heart {heart}, boot "
                f"{info.boot_seconds} s, snapshot {info.snapshot_seconds} s")

    # In the libvirt thread when the process has one (a vm-server with remote guests too).
    def down(self) -> bool:
        return run_if_started(lambda: down(self.uri, self.lines.domain, self.paths))

    async def revert(self, *, slow: bool = False) -> str:
        return await asyncio.to_thread(run_if_started, lambda: revert(
            self.uri, self.lines.domain, self.settings.snapshot, not slow))

    def cpu_seconds(self) -> float:
        return run_if_started(lambda: cpu_seconds(self.uri, self.lines.domain))

    def running(self) -> bool:
        return run_if_started(lambda: active(self.uri, self.lines.domain))

    def describe(self) -> str:
        return f"libvirt {self.uri} domain {self.lines.domain}"


POOL_RECORD = "guests.json"  # in the libvirt state directory: the pool `libvirt up` made


def domain_paths(state_dir: Path, index: int) -> DomainPaths:
    """Guest ``index``'s files: ``libvirt/`` for the first (a lone domain's), ``libvirt/K``
    for the others."""
    base = state_dir / "libvirt"
    return DomainPaths(base / str(index) if index else base)


def record_pool(state_dir: Path, guests: Sequence[Machine]) -> None:
    """What ``libvirt up --guests N`` made, for vm-server to find: each guest's lines (no
    record for none)."""
    path = state_dir / "libvirt" / POOL_RECORD
    if not guests:
        path.unlink(missing_ok=True)
        return
    state_files.make_dir(path.parent)
    with os.fdopen(state_files.open_file(path, os.O_WRONLY | os.O_TRUNC), "w") as file:
        json.dump([{key: value for key, value in asdict(guest).items() if key != "guests"}
                   for guest in guests], file, indent=1)


def recorded_pool(state_dir: Path) -> list[Machine]:
    """The pool ``libvirt up --guests N`` recorded (none after ``libvirt down``)."""
    try:
        entries = json.loads((state_dir / "libvirt" / POOL_RECORD).read_text())
        return [Machine(**{**entry, "framing": Framing(entry["framing"])})
                for entry in entries]
    except (OSError, ValueError, TypeError, KeyError):
        return []
