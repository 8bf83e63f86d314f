"""The libvirt backend: the guest image as a libvirt domain, snapshot ``1``, and its revert.

``pbotvm libvirt up`` does what the original's doc has an operator do by hand: define the
domain (here from the built image, booting its kernel directly), attach the devices (the same
code as ``devices/add-all``), start it, let guest-server come up, run each language once, and
take the internal snapshot ``1``. The domain is marked as ours in its metadata, so ``up`` and
``down`` never touch a domain of the same name that someone else defined.

Reverting: ``virsh snapshot-revert`` restarts QEMU on libvirt 9 (seconds); ``loadvm`` through
libvirt's QEMU monitor restores the same internal snapshot in the running QEMU (a fraction of
a second). :func:`revert` tries the second and falls back to the first.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from xml.sax.saxutils import escape, quoteattr

from pbotvm.config import HostSettings, Machine
from pbotvm.host import devices
from pbotvm.host.devices import LibvirtError, session
from pbotvm.host.qemu import (
    KERNEL_ARGS,
    QEMU,
    QemuError,
    boot_and_warm,
    choose_accel,
    create_overlay,
)
from pbotvm.image.build import Image

if TYPE_CHECKING:
    import libvirt

log = logging.getLogger("pbotvm.libvirt")

METADATA_NS = "https://github.com/pbotvm/pbotvm#domain"
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
    :mod:`pbotvm.host.devices`."""
    kvm = accel == "kvm"
    cpu = "<cpu mode='host-passthrough'/>" if kvm else "<cpu mode='maximum'/>"
    return f"""<domain type='{'kvm' if kvm else 'qemu'}'>
  <name>{escape(name)}</name>
  <metadata>
    <pbotvm:image xmlns:pbotvm='{METADATA_NS}'>{escape(str(image.directory))}</pbotvm:image>
  </metadata>
  <memory unit='MiB'>{memory_mib}</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64'>hvm</type>
    <kernel>{escape(str(image.kernel))}</kernel>
    <initrd>{escape(str(image.initrd))}</initrd>
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
      <source file={quoteattr(str(paths.overlay))}/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <serial type='file'>
      <source path={quoteattr(str(paths.console))}/>
      <target port='0'/>
    </serial>
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


def is_ours(dom: libvirt.virDomain) -> bool:
    import libvirt

    try:
        dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, METADATA_NS,
                     libvirt.VIR_DOMAIN_AFFECT_CONFIG)
    except libvirt.libvirtError:
        return False
    return True


def _remove(dom: libvirt.virDomain) -> None:
    import libvirt

    if dom.isActive():
        dom.destroy()
    dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA)


def define(conn: libvirt.virConnect, machine: Machine, image: Image, paths: DomainPaths,
           accel: str) -> libvirt.virDomain:
    """(Re)define our domain on a fresh overlay of the image; refuses someone else's domain."""
    old = _lookup(conn, machine.domain)
    if old is not None:
        if not is_ours(old):
            raise LibvirtError(f"domain {machine.domain} exists and was not defined by pbotvm; "
                               "set PBOTVM_DOMAIN to another name")
        if old.isActive():
            raise LibvirtError(f"domain {machine.domain} is running; "
                               "`pbotvm libvirt down` first")
        _remove(old)
    paths.state_dir.mkdir(parents=True, exist_ok=True)
    paths.overlay.unlink(missing_ok=True)
    paths.console.unlink(missing_ok=True)
    create_overlay(image, paths.overlay)
    return conn.defineXML(domain_xml(machine.domain, image, paths, accel))


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
             env: Mapping[str, str], say: Callable[[str], None] = lambda _: None) -> UpInfo:
    """Define the domain, attach its devices, then :func:`boot` it."""
    accel = await asyncio.to_thread(choose_accel, image.kernel, env)
    with session(settings.libvirt_uri, machine.domain) as conn:
        dom = define(conn, machine, image, paths, accel)
        for device in machine_devices(machine, say):
            say(devices.attach(dom, device))
        return await boot(dom, settings, machine, paths, say)


async def boot(dom: libvirt.virDomain, settings: HostSettings, machine: Machine,
               paths: DomainPaths, say: Callable[[str], None] = lambda _: None) -> UpInfo:
    """Start the defined domain, wait for guest-server, warm up, create the snapshot."""
    start = time.monotonic()
    dom.create()
    say(f"domain {machine.domain} started; waiting for the guest's heartbeat")
    try:
        booted, warmed = await boot_and_warm(
            machine, lambda: bool(dom.isActive()), paths.console, start, say)
        dom.snapshotCreateXML(SNAPSHOT_XML.format(name=escape(settings.snapshot)), 0)
    except QemuError as e:
        _remove(dom)  # a half-started domain must not hold the ports
        raise LibvirtError(str(e)) from None
    except BaseException:
        _remove(dom)
        raise
    return UpInfo(round(booted - start, 2), round(warmed - booted, 2),
                  round(time.monotonic() - warmed, 2))


def down(uri: str, name: str, paths: DomainPaths) -> bool:
    """Stop and undefine our domain; False when there was none."""
    with session(uri, name) as conn:
        dom = _lookup(conn, name)
        if dom is None:
            return False
        if not is_ours(dom):
            raise LibvirtError(f"domain {name} was not defined by pbotvm; not touching it")
        _remove(dom)
    paths.overlay.unlink(missing_ok=True)
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


def revert(uri: str, name: str, snapshot: str, fast: bool = True) -> str:
    """Revert to ``snapshot``; returns how ("loadvm" or "snapshot-revert")."""
    with session(uri, name) as conn:
        dom = conn.lookupByName(name)
        snap = dom.snapshotLookupByName(snapshot)
        if fast:
            why = loadvm(dom, snapshot)
            if why is None:
                return "loadvm"
            log.warning("domain %s: loadvm through the QEMU monitor failed (%s); "
                        "reverting with libvirt", name, why)
        dom.revertToSnapshot(snap)
        return "snapshot-revert"
