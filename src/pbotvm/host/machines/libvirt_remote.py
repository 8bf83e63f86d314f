"""Guests on another host (``pbotvm libvirt up --uri URI``), made through the connection to
its libvirt daemon alone: nothing is copied by scp and no port of ours is opened there.

- The image goes there by libvirt's storage API: its kernel, initrd and disk become volumes of
  a storage pool ``pbotvm`` (made, as a directory under libvirt's images, when the host has
  none), named after the image's build, so a host that has them is not sent them again. A
  marker volume (``<build>-uploaded``) is made once all three are whole: an upload cut short
  (its connection lost, its process killed) leaves no marker, and the next ``up`` sends them
  again instead of booting a truncated disk.
- Each guest gets an overlay volume on the disk, and a domain whose serial ports are ``pty``
  devices: the guest's lines are those ports' console streams (``libvirt_lines``).
- Each domain's metadata says which volumes and pool that ``up`` made; ``down`` removes its
  domains and their overlays, and what ``up`` made once nothing else uses it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar
from xml.sax.saxutils import escape, quoteattr

from pbotvm.config import ACCEL, ConfigError, HostSettings, Machine
from pbotvm.host.machines import libvirt_lines
from pbotvm.host.machines.devices import LibvirtError
from pbotvm.host.machines.guest import Guest, Say, Warm
from pbotvm.host.machines.libvirt_domain import (
    METADATA_NS,
    SNAPSHOT_XML,
    boot_domain_xml,
    domain_cpu_seconds,
    made_by_up,
    revert_domain,
)
from pbotvm.host.machines.libvirt_lines import RemoteError, lookup, one_line
from pbotvm.host.machines.qemu import QemuError, boot
from pbotvm.image.build import Image
from pbotvm.provision.layout import HEART_INDEX, SERIAL_INDEX

if TYPE_CHECKING:
    import libvirt

POOL = "pbotvm"
POOL_PATH = "/var/lib/libvirt/images/pbotvm"
T = TypeVar("T")
_UPLOAD_CHUNK = 1 << 20
# What this process made on each host (URI -> volume names, and "" for the pool): every guest
# that one `up` brings up there records it, so whichever is removed last takes it away.
_made: dict[str, set[str]] = {}


def pool_xml() -> str:
    return (f"<pool type='dir'><name>{POOL}</name>"
            f"<target><path>{POOL_PATH}</path></target></pool>")


def volume_xml(name: str, capacity: int, fmt: str, backing: str | None = None) -> str:
    back = (f"<backingStore><path>{escape(backing)}</path><format type='qcow2'/></backingStore>"
            if backing else "")
    return (f"<volume><name>{escape(name)}</name><capacity unit='bytes'>{capacity}</capacity>"
            f"<target><format type='{fmt}'/></target>{back}</volume>")


_UPLOADED = "-uploaded"  # the suffix of a build's marker volume


def image_volumes(image: Image) -> dict[str, tuple[Path, str]]:
    """The volumes an image becomes, by name: each one's local file and format. The name
    carries the build's (``full-<hash>``), so a volume of that name has that content."""
    build = image.directory.name
    return {f"{build}-vmlinuz": (image.kernel, "raw"),
            f"{build}-initrd.img": (image.initrd, "raw"),
            f"{build}-disk.qcow2": (image.disk, "qcow2")}


def uploaded_marker(image: Image) -> str:
    """The volume whose presence says the image's volumes were uploaded whole."""
    return image.directory.name + _UPLOADED


def domain_xml(name: str, build: str, kernel: str, initrd: str, overlay: str, accel: str,
               made: set[str]) -> str:
    """Serial 0 is the guest's console, serials ``SERIAL_INDEX`` and ``HEART_INDEX`` its
    lines, all ``pty`` for their console streams; the metadata says what ``up`` made."""
    serials = "".join(f"<serial type='pty'><target port='{port}'/></serial>"
                      for port in (0, SERIAL_INDEX, HEART_INDEX))
    metadata = (f"<pbotvm:image xmlns:pbotvm='{METADATA_NS}' "
                f"made={quoteattr(json.dumps(sorted(made)))}>{escape(build)}</pbotvm:image>")
    return boot_domain_xml(name, metadata, kernel, initrd, overlay, serials, accel)


def choose_accel(conn: libvirt.virConnect, env: Mapping[str, str]) -> str:
    """``PBOTVM_ACCEL`` if set, else KVM when the host's daemon offers it."""
    try:
        wanted = ACCEL.read(env)
    except ConfigError as e:
        raise LibvirtError(str(e)) from None
    if wanted:
        return str(wanted)
    guests = ET.fromstring(conn.getCapabilities()).iterfind("guest/arch/domain")
    return "kvm" if any(domain.get("type") == "kvm" for domain in guests) else "tcg"


def _pool(conn: libvirt.virConnect, uri: str) -> libvirt.virStoragePool:
    import libvirt

    try:
        pool = conn.storagePoolLookupByName(POOL)
    except libvirt.libvirtError:
        pool = conn.storagePoolDefineXML(pool_xml(), 0)
        pool.build(0)
        _made.setdefault(uri, set()).add("")
    if not pool.isActive():
        pool.create(0)
    pool.refresh(0)
    return pool


def _upload(conn: libvirt.virConnect, vol: libvirt.virStorageVol, path: Path) -> None:
    stream = conn.newStream(0)
    size = path.stat().st_size
    vol.upload(stream, 0, size, 0)
    try:
        with path.open("rb") as file:
            while chunk := file.read(_UPLOAD_CHUNK):
                sent = 0
                while sent < len(chunk):
                    sent += stream.send(chunk[sent:])
        stream.finish()
    except BaseException:
        stream.abort()
        raise


def _ensure_image(uri: str, image: Image, say: Say) -> dict[str, str]:
    """In the libvirt thread: the image's volumes on the host (uploaded unless all are there
    whole); their paths there by name."""
    import libvirt

    conn = libvirt_lines.host(uri).connection()
    pool = _pool(conn, uri)
    volumes, marker = image_volumes(image), uploaded_marker(image)
    present = set(pool.listVolumes())
    if marker not in present or not present >= set(volumes):
        for name in sorted((set(volumes) | {marker}) & present):
            pool.storageVolLookupByName(name).delete(0)  # what an upload cut short left
        for name, (path, fmt) in volumes.items():
            say(f"uploading {path.name} ({path.stat().st_size >> 20} MiB) to {uri} as volume "
                f"{POOL}/{name}")
            vol = pool.createXML(volume_xml(name, path.stat().st_size, fmt), 0)
            try:
                _upload(conn, vol, path)
            except BaseException:
                with contextlib.suppress(libvirt.libvirtError):  # the connection may be gone
                    vol.delete(0)
                raise
            _made.setdefault(uri, set()).add(name)
        pool.createXML(volume_xml(marker, 0, "raw"), 0)
        _made.setdefault(uri, set()).add(marker)
    return {name: pool.storageVolLookupByName(name).path() for name in volumes}


def _virtual_size(disk: Path) -> int:
    out = subprocess.run(["qemu-img", "info", "--output=json", str(disk)], check=True,
                         capture_output=True, text=True).stdout
    return int(json.loads(out)["virtual-size"])


def _define(uri: str, machine: Machine, image: Image, volumes: dict[str, str], accel: str,
            disk_size: int, say: Say) -> tuple[libvirt.virDomain, str]:
    """In the libvirt thread: a fresh overlay and our domain on it, started; and the
    accelerator it runs with."""
    import libvirt

    conn = libvirt_lines.host(uri).connection()
    old = _ours(conn, uri, machine.domain, _NOT_OURS_UP)
    inherited: set[str] = set()
    if old is not None:
        # What its `up` made and this one uses stays, and is this domain's to remove.
        inherited = _remove(conn, old, uri, keep=set(volumes) | {""})
    pool = _pool(conn, uri)
    build = image.directory.name
    overlay = pool.createXML(volume_xml(f"{machine.domain}.qcow2", disk_size, "qcow2",
                                        volumes[f"{build}-disk.qcow2"]), 0)
    made = _made.get(uri, set()) | inherited

    def start(accel: str) -> libvirt.virDomain:
        dom = conn.defineXML(domain_xml(machine.domain, build, volumes[f"{build}-vmlinuz"],
                                        volumes[f"{build}-initrd.img"], overlay.path(), accel,
                                        made))
        dom.create()
        return dom

    try:
        try:
            return start(accel), accel
        except libvirt.libvirtError as e:
            if accel != "kvm":
                raise
            # A host whose KVM refuses this guest (some nested set-ups abort on an MSR).
            say(f"the domain did not start with KVM ({one_line(e)[:200]}); using TCG, 10 to "
                "20 times slower (PBOTVM_ACCEL=tcg skips KVM)")
            conn.lookupByName(machine.domain).undefine()
            return start("tcg"), "tcg"
    except libvirt.libvirtError as e:
        with contextlib.suppress(libvirt.libvirtError):
            conn.lookupByName(machine.domain).undefineFlags(
                libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA)
        overlay.delete(0)
        raise RemoteError(f"libvirt {uri}, domain {machine.domain}: {one_line(e)}") from None
    except BaseException:
        overlay.delete(0)
        raise


def _remove(conn: libvirt.virConnect, dom: libvirt.virDomain, uri: str,
            keep: set[str] | None = None) -> set[str]:
    """Our domain gone, with its overlay; what its ``up`` made too, once nothing uses it,
    but what ``keep`` names. Returns what its ``up`` made that was kept."""
    import libvirt

    made = made_by_up(dom) or set()
    kept = made & (keep or set())
    made -= kept
    name = dom.name()
    if dom.isActive():
        dom.destroy()
    dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA)
    try:
        pool = conn.storagePoolLookupByName(POOL)
        pool.refresh(0)
    except libvirt.libvirtError:
        return kept
    with contextlib.suppress(libvirt.libvirtError):
        pool.storageVolLookupByName(f"{name}.qcow2").delete(0)
    others = conn.listAllDomains()
    used = "".join(other.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE) for other in others)
    markers = {volume for volume in made if volume.endswith(_UPLOADED)}
    for volume in sorted(made - markers - {""}):
        try:
            vol = pool.storageVolLookupByName(volume)
        except libvirt.libvirtError:
            continue
        if vol.path() not in used and not _backs_another(pool, vol.path()):
            vol.delete(0)
    left = set(pool.listVolumes())
    for marker in markers & left:
        # A marker goes with the last of its build's volumes.
        image = Image(Path(marker.removesuffix(_UPLOADED)))
        if not left & set(image_volumes(image)):
            pool.storageVolLookupByName(marker).delete(0)
            left.discard(marker)
    if "" in made and not left and not any(
            made_by_up(other) is not None for other in others):
        if pool.isActive():
            pool.destroy()
        pool.delete(0)
        pool.undefine()
    return kept


def _backs_another(pool: libvirt.virStoragePool, path: str) -> bool:
    for other in pool.listAllVolumes(0):
        backing = ET.fromstring(other.XMLDesc(0)).find("backingStore/path")
        if backing is not None and backing.text == path:
            return True
    return False


async def up(machine: Machine, image: Image, settings: HostSettings, env: Mapping[str, str],
             alive: Callable[[], bool], warm: Warm, say: Say) -> tuple[float, float, float]:
    """Bring the guest up on its host (``alive``: whether its VM runs); boot, warm-up and
    snapshot seconds."""
    import libvirt

    uri, name = machine.uri, machine.domain
    try:
        # Before anything is made there: a domain of that name must be ours.
        await libvirt_lines.call(lambda: _refuse_foreign(uri, name))
        volumes = await libvirt_lines.call(lambda: _ensure_image(uri, image, say))
        accel = await libvirt_lines.call(
            lambda: choose_accel(libvirt_lines.host(uri).connection(), env))
        disk_size = await asyncio.to_thread(_virtual_size, image.disk)
        begun = time.monotonic()
        _, accel = await libvirt_lines.call(lambda: _define(uri, machine, image, volumes,
                                                            accel, disk_size, say))
    except RemoteError as e:
        raise LibvirtError(str(e)) from None
    except libvirt.libvirtError as e:
        raise LibvirtError(f"libvirt {uri}: {one_line(e)}") from None
    say(f"domain {name} started on {uri} ({accel}); waiting for the guest's heartbeat")

    try:
        booted, warmed = await boot(machine, alive, Path(os.devnull), begun, warm, say)
        await libvirt_lines.call(lambda: lookup(uri, name).snapshotCreateXML(
            SNAPSHOT_XML.format(name=escape(settings.snapshot)), 0))
    except BaseException as e:
        await libvirt_lines.call(lambda: _remove_named(uri, name))
        if isinstance(e, QemuError | RemoteError):
            raise LibvirtError(f"{e} (its console: virsh -c {uri} console {name} "
                               "--devname serial0)") from None
        raise
    return booted - begun, warmed - booted, time.monotonic() - warmed


_NOT_OURS_UP = "exists and was not defined by pbotvm; name the guests otherwise (PBOTVM_DOMAIN)"
_NOT_OURS_DOWN = "was not defined by pbotvm; not touching it"


def _ours(conn: libvirt.virConnect, uri: str, name: str,
          refusal: str) -> libvirt.virDomain | None:
    """Our domain of that name there, or None; LibvirtError (``refusal``) when someone
    else's has the name."""
    import libvirt

    try:
        dom = conn.lookupByName(name)
    except libvirt.libvirtError:
        return None
    if made_by_up(dom) is None:
        raise LibvirtError(f"libvirt {uri}: domain {name} {refusal}")
    return dom


def _refuse_foreign(uri: str, name: str) -> None:
    _ours(libvirt_lines.host(uri).connection(), uri, name, _NOT_OURS_UP)


def _remove_named(uri: str, name: str) -> bool:
    conn = libvirt_lines.host(uri).connection()
    dom = _ours(conn, uri, name, _NOT_OURS_DOWN)
    if dom is None:
        return False
    _remove(conn, dom, uri)
    return True


def down(uri: str, name: str) -> bool:
    """Remove our domain there and what its ``up`` made; False when there was none."""
    try:
        return libvirt_lines.run(lambda: _remove_named(uri, name))
    except RemoteError as e:
        raise LibvirtError(str(e)) from None


class RemoteGuest(Guest):
    """A guest whose domain is on the libvirt host its lines name (``Machine.uri``)."""

    kind = "libvirt"

    def __init__(self, lines: Machine, settings: HostSettings, env: Mapping[str, str]) -> None:
        super().__init__(lines)
        self.settings = settings
        self.env = env

    async def up(self, image: Image | None, warm: Warm, say: Say) -> str:
        if image is None:
            raise LibvirtError("a libvirt domain boots an image: build one with "
                               "`pbotvm image build`")
        booted, warmed, snapshot = await up(self.lines, image, self.settings, self.env,
                                            self.running, warm, say)
        return (f"domain {self.lines.domain} on {self.lines.uri}, lines over libvirt streams, "
                f"boot {booted:.2f} s, warm-up {warmed:.2f} s, snapshot {snapshot:.2f} s")

    def down(self) -> bool:
        return down(self.lines.uri, self.lines.domain)

    def _on_domain(self, fn: Callable[[libvirt.virDomain], T]) -> T:
        try:
            return libvirt_lines.with_domain(self.lines.uri, self.lines.domain, fn)
        except RemoteError as e:
            raise LibvirtError(str(e)) from None

    async def revert(self, *, slow: bool = False) -> str:
        return await asyncio.to_thread(self._on_domain, lambda dom: revert_domain(
            dom, self.settings.snapshot, not slow))

    def cpu_seconds(self) -> float:
        return self._on_domain(domain_cpu_seconds)

    def running(self) -> bool:
        try:
            return self._on_domain(lambda dom: bool(dom.isActive()))
        except LibvirtError:
            return False

    def describe(self) -> str:
        return f"libvirt {self.lines.uri} domain {self.lines.domain}"
