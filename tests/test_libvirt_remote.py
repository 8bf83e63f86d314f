"""What ``pbotvm libvirt up --uri`` asks of another host's daemon: the domain, its volumes
(pure; tests/test_vm_remote.py makes them on a real daemon behind a real sshd)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

from pbotvm.config import Machine
from pbotvm.host.machines import libvirt_remote as lr
from pbotvm.host.machines.transport import heart_name, serial_name
from pbotvm.image.build import Image
from pbotvm.provision.layout import HEART_INDEX, SERIAL_INDEX


def test_the_domain_has_pty_serials_for_its_console_streams_and_says_what_up_made() -> None:
    xml = ET.fromstring(lr.domain_xml("pbot-vm-1", "minimal-abc", "/p/k", "/p/i", "/p/o.qcow2",
                                      "tcg", {"", "minimal-abc-disk.qcow2"}))
    assert xml.get("type") == "qemu"
    serials = xml.findall("devices/serial")
    assert [(s.get("type"), s.find("target").get("port")) for s in serials] == [  # type: ignore[union-attr]
        ("pty", "0"), ("pty", str(SERIAL_INDEX)), ("pty", str(HEART_INDEX))]
    assert xml.find("devices/disk/source").get("file") == "/p/o.qcow2"  # type: ignore[union-attr]
    assert xml.findtext("os/kernel") == "/p/k"
    mark = xml.find(f"metadata/{{{lr.METADATA_NS}}}image")
    assert mark is not None and mark.text == "minimal-abc"
    assert json.loads(mark.get("made", "")) == ["", "minimal-abc-disk.qcow2"]


def test_volumes_are_named_after_the_build_and_an_overlay_is_backed_by_the_disk() -> None:
    image = Image(Path("/cache/images/full-0123"))
    assert {name: fmt for name, (_, fmt) in lr.image_volumes(image).items()} == {
        "full-0123-vmlinuz": "raw", "full-0123-initrd.img": "raw",
        "full-0123-disk.qcow2": "qcow2"}
    overlay = ET.fromstring(lr.volume_xml("pbot-vm-1.qcow2", 3 << 30, "qcow2", "/v/d.qcow2"))
    assert overlay.findtext("backingStore/path") == "/v/d.qcow2"
    assert overlay.find("target/format").get("type") == "qcow2"  # type: ignore[union-attr]
    assert overlay.findtext("capacity") == str(3 << 30)
    assert ET.fromstring(lr.volume_xml("k", 1, "raw")).find("backingStore") is None


def test_a_remote_guest_is_known_by_its_domain_and_host() -> None:
    guest = Machine(name="pbot-vm/1", domain="pbot-vm-1", uri="qemu+ssh://root@h/system")
    assert serial_name(guest) == "serial of pbot-vm-1 on qemu+ssh://root@h/system"
    assert heart_name(guest) == "pbot-vm-1 on qemu+ssh://root@h/system"
    # Two domains on one host, or one name on two hosts, are two guests.
    assert len({serial_name(guest), serial_name(Machine(name="x", domain="pbot-vm-2",
                                                        uri=guest.uri)),
                serial_name(Machine(name="y", domain="pbot-vm-1", uri="qemu+tls://h2/system"))
                }) == 3
