"""An image's volumes on another host (``libvirt_remote._ensure_image``), against a private
libvirt daemon: sent once, and sent again whole when an upload was cut short.

No guest is involved: the "image" is three small files.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import libvirt
import pytest

from pbotvm.host.machines import libvirt_lines, libvirt_remote
from pbotvm.image.build import Image
from tests.support.private_libvirtd import PrivateLibvirtd

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(shutil.which("libvirtd") is None or shutil.which("qemu-img") is None,
                       reason="needs libvirtd and qemu-img (./dev setup)"),
]


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[PrivateLibvirtd]:
    with PrivateLibvirtd(tmp_path / "libvirtd") as d:
        yield d


def fake_image(directory: Path) -> Image:
    directory.mkdir()
    image = Image(directory)
    image.kernel.write_bytes(os.urandom(300_000))
    image.initrd.write_bytes(os.urandom(200_000))
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(image.disk), "1M"],
                   check=True)
    return image


def test_an_upload_cut_short_is_sent_again_whole(daemon: PrivateLibvirtd,
                                                 tmp_path: Path) -> None:
    image = fake_image(tmp_path / "minimal-0123456789abcdef")
    said: list[str] = []
    pool_dir = daemon.root / "var" / Path(libvirt_remote.POOL_PATH).relative_to("/var")
    files = {name: local for name, (local, _) in libvirt_remote.image_volumes(image).items()}

    def ensure() -> list[str]:
        said.clear()
        libvirt_lines.run(lambda: libvirt_remote._ensure_image(daemon.uri, image, said.append))
        return [line.split()[1] for line in said]

    def pool() -> libvirt.virStoragePool:
        return libvirt_lines.host(daemon.uri).connection().storagePoolLookupByName(
            libvirt_remote.POOL)

    try:
        assert ensure() == ["vmlinuz", "initrd.img", "disk.qcow2"]
        for name, local in files.items():
            assert (pool_dir / name).read_bytes() == local.read_bytes()
        assert ensure() == [], "a host that has the image whole is not sent it again"

        # What an `up` killed in the middle of the disk's upload leaves: the kernel and initrd
        # whole, the disk volume half written, no marker.
        marker = libvirt_remote.uploaded_marker(image)
        libvirt_lines.run(lambda: pool().storageVolLookupByName(marker).delete(0))
        disk = pool_dir / f"{image.directory.name}-disk.qcow2"
        disk.write_bytes(image.disk.read_bytes()[: image.disk.stat().st_size // 2])

        assert ensure() == ["vmlinuz", "initrd.img", "disk.qcow2"]
        for name, local in files.items():
            assert (pool_dir / name).read_bytes() == local.read_bytes()
        assert marker in libvirt_lines.run(lambda: pool().listVolumes())
        assert ensure() == []
    finally:
        def remove() -> None:
            with contextlib.suppress(libvirt.libvirtError):
                found = pool()
                for vol in found.listAllVolumes(0):
                    vol.delete(0)
                found.destroy()
                found.delete(0)
                found.undefine()
        libvirt_lines.run(remove)
