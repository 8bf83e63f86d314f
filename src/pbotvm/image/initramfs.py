"""A minimal initramfs for direct kernel boot: busybox, the few modules needed to reach the
root disk, and an /init that mounts /dev/vda and switches to it.

Debian's kernel builds virtio_pci, virtio_blk and ext4 as modules. initramfs-tools would
make a 30+ MB image that takes seconds to unpack under TCG; ours is ~2.5 MB and uncompressed.
"""

from __future__ import annotations

import lzma
import stat
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

# crc32c is a soft dependency of ext4 (needed at mount time, absent from modules.dep).
ROOT_MODULES = ("virtio_pci", "virtio_blk", "crc32c_generic", "ext4")
# The guest keeps no /lib/modules: what guest-server needs beyond the disk is loaded here too.
# vsock, for a libvirt domain given a vsock device (devices/add-vsock) on a vhost-vsock host.
GUEST_MODULES = ("vmw_vsock_virtio_transport",)
ROOT_DEVICE = "/dev/vda"
GUEST_INIT = "/sbin/pbotvm-init"
APPLETS = ("sh", "cat", "echo", "insmod", "mount", "seq", "sleep", "switch_root")

INIT_SCRIPT = f"""#!/bin/sh
mount -t devtmpfs dev /dev
for m in $(cat /modules.order); do insmod "/lib/modules/$m.ko"; done
# The disk appears asynchronously once virtio_blk has probed it.
for _ in $(seq 50); do [ -b {ROOT_DEVICE} ] && break; sleep 0.1; done
if ! mount -t ext4 -o rw {ROOT_DEVICE} /root; then
    echo "pbotvm initramfs: cannot mount {ROOT_DEVICE}"
    exit 1  # the kernel panics and, booted with panic=1 and -no-reboot, QEMU exits
fi
mount --move /dev /root/dev
exec switch_root /root {GUEST_INIT}
"""


class InitramfsError(RuntimeError):
    pass


def module_name(path: str) -> str:
    """``kernel/fs/ext4/ext4.ko.xz`` -> ``ext4`` (module names use ``_`` where files use ``-``)."""
    return Path(path).name.split(".ko")[0].replace("-", "_")


def parse_modules_dep(text: str) -> dict[str, tuple[str, list[str]]]:
    """modules.dep -> {name: (path, [dependency names])}."""
    table: dict[str, tuple[str, list[str]]] = {}
    for line in text.splitlines():
        if ":" not in line:
            continue
        path, deps = line.split(":", 1)
        table[module_name(path)] = (path, [module_name(d) for d in deps.split()])
    return table


def load_order(wanted: Iterable[str], table: Mapping[str, tuple[str, list[str]]],
               builtin: set[str]) -> list[str]:
    """The modules to insmod, each after its dependencies; built-in ones are skipped."""
    order: list[str] = []

    def visit(name: str) -> None:
        if name in order or name in builtin:
            return
        if name not in table:
            raise InitramfsError(f"kernel module {name} is neither built in nor in modules.dep")
        for dep in table[name][1]:
            visit(dep)
        order.append(name)

    for name in wanted:
        visit(name)
    return order


@dataclass(frozen=True)
class Entry:
    name: str
    mode: int
    data: bytes = b""
    rdev: tuple[int, int] = (0, 0)


def _pad(n: int) -> bytes:
    return b"\0" * (-n % 4)


def cpio_newc(entries: Iterable[Entry]) -> Iterator[bytes]:
    """The SVR4 "newc" archive the kernel unpacks."""
    for ino, entry in enumerate([*entries, Entry("TRAILER!!!", 0)], start=1):
        name = entry.name.encode() + b"\0"
        fields = (ino, entry.mode, 0, 0, 2 if stat.S_ISDIR(entry.mode) else 1, 0,
                  len(entry.data), 0, 0, *entry.rdev, len(name), 0)
        header = b"070701" + b"".join(b"%08X" % f for f in fields)
        yield header + name + _pad(len(header) + len(name))
        yield entry.data + _pad(len(entry.data))


def _read_module(path: Path) -> bytes:
    data = path.read_bytes()
    # busybox insmod cannot be relied on to decompress; the kernel wants a plain ELF here.
    return lzma.decompress(data) if path.suffix == ".xz" else data


def entries(root: Path, kernel_version: str) -> list[Entry]:
    """The initramfs contents, taken from the guest's root filesystem."""
    moddir = root / "lib" / "modules" / kernel_version
    table = parse_modules_dep((moddir / "modules.dep").read_text())
    builtin = {module_name(p) for p in (moddir / "modules.builtin").read_text().split()}
    order = load_order((*ROOT_MODULES, *GUEST_MODULES), table, builtin)
    d, f, x = stat.S_IFDIR | 0o755, stat.S_IFREG | 0o644, stat.S_IFREG | 0o755
    out = [Entry(n, d) for n in ("bin", "dev", "lib", "lib/modules", "proc", "root")]
    out += [Entry("dev/console", stat.S_IFCHR | 0o600, rdev=(5, 1)),
            Entry("bin/busybox", x, (root / "bin" / "busybox").read_bytes()),
            Entry("init", x, INIT_SCRIPT.encode()),
            Entry("modules.order", f, "\n".join(order).encode() + b"\n")]
    out += [Entry(f"bin/{a}", stat.S_IFLNK | 0o777, b"busybox") for a in APPLETS]
    out += [Entry(f"lib/modules/{m}.ko", f, _read_module(moddir / table[m][0])) for m in order]
    return out


def write(root: Path, kernel_version: str, dest: Path) -> None:
    with dest.open("wb") as out:
        for chunk in cpio_newc(entries(root, kernel_version)):
            out.write(chunk)
