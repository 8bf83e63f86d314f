"""The guest's devices in a libvirt domain: the two serial ports and the vsock device.

What the original's ``host/devices/add-*`` scripts attach (to the domain's persistent
config, so they appear at its next start), without their defects: no temporary files in the
current directory, any working directory, ``PBOTVM_LIBVIRT_URI`` honoured, and re-running
replaces a device instead of adding a second one on the same port. A machine with
``serial-socket``/``heart-socket`` gets Unix-socket serial devices instead of the original's
TCP ones, which any local user can connect to first. The domain definition of ``pbotvm
libvirt up`` attaches its devices with the same functions.
"""

from __future__ import annotations

import contextlib
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING
from xml.sax.saxutils import quoteattr

from pbotvm.config import Machine
from pbotvm.host.machines.guest import GuestError
from pbotvm.host.machines.transport import VHOST_VSOCK, vsock_guests_here
from pbotvm.provision.layout import HEART_INDEX, SERIAL_INDEX

if TYPE_CHECKING:
    import libvirt

# What libvirt says when nothing listens on the daemon's socket: no daemon runs.
_NO_DAEMON = re.compile(r"Failed to connect socket to '([^']*)': "
                        r"(?:No such file or directory|Connection refused)")


class LibvirtError(GuestError):
    """Shown to the operator as is."""


@dataclass(frozen=True)
class Device:
    """A device element, which existing element it replaces, and what makes two equal."""

    xml: str
    what: str
    replaces: Callable[[ET.Element], bool]
    settings: Callable[[ET.Element], tuple[str | None, ...]]


def serial_xml(addr: str, port: int, target: int) -> str:
    # Bind mode: QEMU is the TCP server; raw: the bytes as the guest's UART sends them.
    return (f"<serial type='tcp'>\n"
            f"  <source mode='bind' host='{addr}' service='{port}' tls='no'/>\n"
            f"  <protocol type='raw'/>\n"
            f"  <target port='{target}'/>\n"
            f"</serial>\n")


def unix_serial_xml(path: str, target: int) -> str:
    # Bind mode: QEMU listens on the socket; who may connect is up to the file's mode.
    return (f"<serial type='unix'>\n"
            f"  <source mode='bind' path={quoteattr(path)}/>\n"
            f"  <target port='{target}'/>\n"
            f"</serial>\n")


def vsock_xml(cid: int) -> str:
    return f"<vsock model='virtio'>\n  <cid auto='no' address='{cid}'/>\n</vsock>\n"


def _attr(el: ET.Element, path: str, name: str) -> str | None:
    found = el.find(path)
    return None if found is None else found.get(name)


def _serial_settings(el: ET.Element) -> tuple[str | None, ...]:
    # What libvirt adds by itself (alias, target type, model) does not make a serial differ.
    return (el.get("type"), _attr(el, "source", "mode"), _attr(el, "source", "host"),
            _attr(el, "source", "service"), _attr(el, "source", "path"),
            _attr(el, "protocol", "type"))


def serial_devices(machine: Machine) -> list[Device]:
    def on(target: int) -> Callable[[ET.Element], bool]:
        return lambda el: el.tag == "serial" and _attr(el, "target", "port") == str(target)

    def device(port: int, socket: str, index: int) -> Device:
        if socket:
            return Device(unix_serial_xml(socket, index), f"serial port {index} ({socket})",
                          on(index), _serial_settings)
        return Device(serial_xml(machine.addr, port, index), f"serial port {index} (TCP {port})",
                      on(index), _serial_settings)

    return [device(machine.serial, machine.serial_socket, SERIAL_INDEX),
            device(machine.heart, machine.heart_socket, HEART_INDEX)]


def vsock_device(machine: Machine) -> Device:
    if machine.cid < 3:  # 0-2 are reserved (hypervisor, local, host); 0 means "no vsock" here
        raise LibvirtError(f"vsock CID {machine.cid} is not a guest CID (use 3 or more; "
                          "PBOTVM_CID=0 means no vsock)")
    return Device(vsock_xml(machine.cid), f"vsock (CID {machine.cid})",
                  lambda el: el.tag == "vsock", lambda el: (_attr(el, "cid", "address"),))


def attach(dom: libvirt.virDomain, device: Device) -> str:
    """Put ``device`` into the domain's persistent config; returns what was done."""
    import libvirt

    config = ET.fromstring(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
    devices = config.find("devices")
    old = next((el for el in (devices if devices is not None else [])
                if device.replaces(el)), None)
    flags = libvirt.VIR_DOMAIN_AFFECT_CONFIG
    if old is not None:
        if device.settings(old) == device.settings(ET.fromstring(device.xml)):
            return f"{device.what}: already there"
        dom.detachDeviceFlags(ET.tostring(old, encoding="unicode"), flags)
    dom.attachDeviceFlags(device.xml, flags)
    return f"{device.what}: {'replaced' if old is not None else 'added'}"


def vsock_note() -> str | None:
    """Why a domain with a vsock device will not start on this host, if it will not."""
    if vsock_guests_here():
        return None
    return (f"this host has no {VHOST_VSOCK} (modprobe vhost_vsock): a domain with a vsock "
            "device will not start here")


def connect_failure(uri: str, message: str) -> str:
    """libvirt's reason for not connecting to ``uri``, as the operator's line: when no daemon
    runs, that, and how to start one."""
    found = _NO_DAEMON.search(message)
    if found is None:
        return f"libvirt {uri}: {message}"
    return (f"libvirt {uri}: no libvirt daemon runs (nothing listens on {found[1]}): start one "
            "with `systemctl start libvirtd` (Debian's package libvirt-daemon-system has it)")


def connect(uri: str) -> libvirt.virConnect:
    import libvirt

    # Errors come back as exceptions and are reported once, by us: not also on stderr.
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    try:
        return libvirt.open(uri)
    except libvirt.libvirtError as e:
        raise LibvirtError(connect_failure(uri, e.get_error_message())) from None


@contextlib.contextmanager
def session(uri: str, domain: str) -> Iterator[libvirt.virConnect]:
    """A connection to ``uri``; libvirt's errors in the block become one line naming
    ``domain``, the connection is closed after it."""
    import libvirt

    conn = connect(uri)
    try:
        yield conn
    except libvirt.libvirtError as e:
        raise LibvirtError(f"libvirt {uri}, domain {domain}: {e.get_error_message()}") from None
    finally:
        conn.close()


def add(uri: str, domain: str, wanted: list[Device]) -> list[str]:
    """Attach ``wanted`` to the persistent config of ``domain``; one line per device."""
    with session(uri, domain) as conn:
        dom = conn.lookupByName(domain)
        return [attach(dom, device) for device in wanted]
