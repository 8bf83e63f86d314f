"""The libvirt device and domain XML (pure functions; the VM test attaches them for real)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from pbotvm.config import Machine
from pbotvm.host.machines import devices
from pbotvm.host.machines.libvirt_domain import DomainPaths, domain_xml
from pbotvm.image.build import Image
from tests.support.private_libvirtd import with_user


def test_serials_match_the_original_scripts() -> None:
    data, heart = devices.serial_devices(Machine("m", serial=5555, heart=5556))
    el = ET.fromstring(data.xml)
    assert el.get("type") == "tcp" and el.find("target").get("port") == "2"  # type: ignore[union-attr]
    assert el.find("source").attrib == {  # type: ignore[union-attr]
        "mode": "bind", "host": "127.0.0.1", "service": "5555", "tls": "no"}
    assert el.find("protocol").get("type") == "raw"  # type: ignore[union-attr]
    assert ET.fromstring(heart.xml).find("target").get("port") == "3"  # type: ignore[union-attr]
    assert data.what == "serial port 2 (TCP 5555)"


def test_a_serial_is_replaced_only_on_its_own_port_and_when_it_differs() -> None:
    data, _ = devices.serial_devices(Machine("m", serial=5555))
    # What libvirt stores back: its own alias and target type do not make a difference.
    stored = ET.fromstring("<serial type='tcp'><source mode='bind' host='127.0.0.1' "
                           "service='5555' tls='no'/><protocol type='raw'/>"
                           "<target type='isa-serial' port='2'><model name='isa-serial'/>"
                           "</target><alias name='serial1'/></serial>")
    assert data.replaces(stored)
    assert data.settings(stored) == data.settings(ET.fromstring(data.xml))
    moved = ET.fromstring(data.xml.replace("5555", "6000"))
    assert data.replaces(moved) and data.settings(moved) != data.settings(stored)
    console = ET.fromstring("<serial type='file'><source path='/x'/><target port='0'/></serial>")
    assert not data.replaces(console)


def test_serials_on_unix_sockets_when_the_machine_names_them() -> None:
    data, heart = devices.serial_devices(Machine("m", serial_socket="/run/pbotvm/s,1.sock",
                                                 heart_socket="/run/pbotvm/h.sock"))
    el = ET.fromstring(data.xml)
    assert el.get("type") == "unix" and el.find("target").get("port") == "2"  # type: ignore[union-attr]
    assert el.find("source").attrib == {  # type: ignore[union-attr]
        "mode": "bind", "path": "/run/pbotvm/s,1.sock"}
    assert data.what == "serial port 2 (/run/pbotvm/s,1.sock)"
    assert ET.fromstring(heart.xml).find("source").get("path") == "/run/pbotvm/h.sock"  # type: ignore[union-attr]
    # A TCP device on the same port is replaced by it, and the other way round.
    tcp, _ = devices.serial_devices(Machine("m"))
    assert data.replaces(ET.fromstring(tcp.xml))
    assert data.settings(ET.fromstring(tcp.xml)) != data.settings(el)


def test_vsock() -> None:
    device = devices.vsock_device(Machine("m", cid=7))
    assert ET.fromstring(device.xml).find("cid").attrib == {  # type: ignore[union-attr]
        "auto": "no", "address": "7"}
    for cid in (0, 1, 2):
        with pytest.raises(devices.LibvirtError, match="not a guest CID"):
            devices.vsock_device(Machine("m", cid=cid))


def test_domain_has_no_network_and_boots_the_image_kernel(tmp_path: Path) -> None:
    image = Image(tmp_path / "img")
    xml = ET.fromstring(domain_xml("pbot-vm", image, DomainPaths(tmp_path / "st"), "tcg"))
    assert xml.get("type") == "qemu" and xml.findtext("name") == "pbot-vm"
    assert xml.findtext("os/kernel") == str(image.kernel)
    assert xml.find("devices/interface") is None
    assert xml.find("devices/disk/driver").get("type") == "qcow2"  # type: ignore[union-attr]
    assert xml.find("cpu").get("mode") == "maximum"  # type: ignore[union-attr]
    kvm = ET.fromstring(domain_xml("pbot-vm", image, DomainPaths(tmp_path / "st"), "kvm"))
    assert kvm.get("type") == "kvm"


def test_private_daemon_user_is_added_once() -> None:
    passwd, group = with_user("root:x:0:0::/root:/bin/sh\n", "root:x:0:\n")
    assert passwd.splitlines()[-1].startswith("libvirt-qemu:x:64055:64055:")
    assert group.splitlines()[-1] == "libvirt-qemu:x:64055:"
    assert with_user(passwd, group) == (passwd, group)


@pytest.mark.parametrize(("message", "line"), [
    ("Failed to connect socket to '/var/run/libvirt/libvirt-sock': No such file or directory",
     "libvirt qemu:///system: no libvirt daemon runs (nothing listens on "
     "/var/run/libvirt/libvirt-sock): start one with `systemctl start libvirtd` (Debian's "
     "package libvirt-daemon-system has it)"),
    # A daemon that died left its socket behind.
    ("Failed to connect socket to '/var/run/libvirt/libvirt-sock': Connection refused",
     "libvirt qemu:///system: no libvirt daemon runs (nothing listens on "
     "/var/run/libvirt/libvirt-sock): start one with `systemctl start libvirtd` (Debian's "
     "package libvirt-daemon-system has it)"),
    # Another reason is libvirt's own words.
    ("Failed to connect socket to '/var/run/libvirt/libvirt-sock': Permission denied",
     "libvirt qemu:///system: Failed to connect socket to '/var/run/libvirt/libvirt-sock': "
     "Permission denied"),
])
def test_no_daemon_is_said_with_how_to_start_one(message: str, line: str) -> None:
    assert devices.connect_failure("qemu:///system", message) == line


def test_libvirt_itself_says_no_daemon_in_the_words_we_read(tmp_path: Path) -> None:
    # libvirt's client alone, aimed at a socket nobody serves: no daemon is needed.
    uri = f"qemu:///system?socket={tmp_path}/libvirt-sock"
    with pytest.raises(devices.LibvirtError, match=r"^libvirt .*: no libvirt daemon runs "
                       rf"\(nothing listens on {tmp_path}/libvirt-sock\): start one"):
        devices.connect(uri)
