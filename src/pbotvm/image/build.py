"""``pbotvm image build``: a Debian guest image, cached by a hash of its inputs.

Steps: debootstrap (minbase) -> apt-get install the profile's packages in the chroot ->
configure (user ``vm``, our init, guest-server's payload from this package) -> kernel and a
small initramfs -> ``mkfs.ext4 -d`` -> ``qemu-img convert -O qcow2``. No loop mounts; the only
mount is /proc in the chroot while packages are configured.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pbotvm.image import initramfs
from pbotvm.provision import payload
from pbotvm.provision.layout import CONSOLE, GUEST_USER, HEART_INDEX, SERIAL_INDEX, guest_tty
from pbotvm.provision.profiles import Profile

SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
GUEST_PYTHON = "/usr/bin/python3"
HOSTNAME = "pbot-vm"
# Bump when the build steps change what they produce, so cached images are rebuilt.
BUILD_FORMAT = 2

# host tool -> the Debian package that provides it
HOST_TOOLS = {
    "debootstrap": "debootstrap",
    "mkfs.ext4": "e2fsprogs",
    "qemu-img": "qemu-utils",
    "qemu-system-x86_64": "qemu-system-x86",
}

# Documentation and translations are useless in the guest and a third of the unpack time.
DPKG_EXCLUDES = "".join(f"path-exclude=/usr/share/{d}/*\n"
                        for d in ("doc", "man", "info", "locale", "lintian"))

Progress = Callable[[str], None]


class BuildError(RuntimeError):
    """The message is shown to the operator as is."""


@dataclass(frozen=True)
class Image:
    directory: Path

    @property
    def kernel(self) -> Path:
        return self.directory / "vmlinuz"

    @property
    def initrd(self) -> Path:
        return self.directory / "initrd.img"

    @property
    def disk(self) -> Path:
        return self.directory / "disk.qcow2"

    def exists(self) -> bool:
        return all(p.is_file() for p in (self.kernel, self.initrd, self.disk))

    def manifest(self) -> dict[str, Any]:
        """What the build recorded: the profile's name, its packages, the kernel."""
        data: dict[str, Any] = json.loads((self.directory / "manifest.json").read_text())
        return data


# --- inputs ----------------------------------------------------------------------------------

def missing_tools(which: Callable[[str], str | None] = shutil.which) -> list[str]:
    """One line per missing host tool, naming the package that provides it."""
    return [f"missing host tool {tool}: apt-get install {package}"
            for tool, package in HOST_TOOLS.items() if which(tool) is None]


def mirror_from_sources(texts: Iterable[str], suite: str = SUITE) -> str | None:
    """The Debian mirror the host's apt uses for ``suite`` (one-line or deb822 format)."""
    for text in texts:
        for stanza in re.split(r"\n\s*\n", text):
            fields = dict(re.findall(r"^(URIs|Suites):\s*(.+)$", stanza, re.M))
            if suite in fields.get("Suites", "").split() and fields.get("URIs"):
                return fields["URIs"].split()[0].rstrip("/")
        for line in text.splitlines():
            words = re.sub(r"\[[^]]*\]", "", line.split("#", 1)[0]).split()  # drop [options]
            if len(words) >= 3 and words[0] == "deb" and words[2] == suite:
                return words[1].rstrip("/")
    return None


def host_mirror(apt_dir: Path = Path("/etc/apt")) -> str:
    files = [apt_dir / "sources.list", *sorted((apt_dir / "sources.list.d").glob("*"))]
    texts = [f.read_text(errors="replace") for f in files if f.is_file()]
    return mirror_from_sources(texts) or DEFAULT_MIRROR


def cache_key(profile: Profile, package: Path = payload.PACKAGE) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps([BUILD_FORMAT, SUITE, profile.name, sorted(profile.packages),
                              profile.disk_mib]).encode())
    for path, data in sorted(payload.payload(GUEST_PYTHON, package).files.items()):
        digest.update(path.encode() + b"\0" + data + b"\0")
    return digest.hexdigest()[:16]


def cache_dir(env: Mapping[str, str] = os.environ) -> Path:
    base = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "pbotvm"


def image_for(profile: Profile, cache: Path) -> Image:
    return Image(cache / "images" / f"{profile.name}-{cache_key(profile)}")


# --- what we put into the guest ----------------------------------------------------------------

def init_script(user: str = GUEST_USER) -> str:
    """PID 1 of the guest. No systemd: this boots in a fraction of the time under TCG."""
    serial, heart = guest_tty(SERIAL_INDEX), guest_tty(HEART_INDEX)
    return f"""#!/bin/sh
# pbotvm guest init: mount the API filesystems, then keep guest-server running for ever.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8
mount -t proc proc /proc
mount -t sysfs sysfs /sys
# Each request gets a cgroup of its own under it (memory, processes, CPU share).
mount -t cgroup2 -o nsdelegate cgroup2 /sys/fs/cgroup
mkdir -p /dev/pts /dev/shm
mount -t devpts -o gid=5,mode=620 devpts /dev/pts
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
mount -t tmpfs -o mode=755 tmpfs /run
mount -t tmpfs -o mode=1777 tmpfs /tmp
hostname {HOSTNAME}
# Raw ttys: no echo of requests, no line editing, no CR/LF translation.
stty -F {serial} raw -echo 115200
stty -F {heart} raw -echo 115200
while :; do
    # vsock too when the VM has the device (a libvirt domain on a vhost-vsock host); without
    # it, guest-server says so in one line and serves the serial line.
    guest-server --serial {serial} --heart {heart} --user {user}
    echo "pbotvm-init: guest-server exited with status $?; restarting" >/dev/{CONSOLE}
    sleep 1
done
"""


# --- running commands --------------------------------------------------------------------------

@dataclass
class Runner:
    log: Path

    def __call__(self, argv: list[str], what: str, env: Mapping[str, str] | None = None) -> str:
        with self.log.open("a") as log:
            log.write(f"$ {' '.join(argv)}\n")
            log.flush()
            proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True, errors="replace",
                                  env={**os.environ, **(env or {})}, check=False)
            log.write(proc.stdout)
        if proc.returncode:
            tail = "\n  ".join(proc.stdout.strip().splitlines()[-5:])
            raise BuildError(f"{what} failed (exit {proc.returncode}); full log: {self.log}\n"
                             f"  {tail}")
        return proc.stdout


@contextlib.contextmanager
def proc_mounted(root: Path) -> Iterator[None]:
    # Some maintainer scripts read /proc; this is the build's only mount.
    subprocess.run(["mount", "-t", "proc", "proc", str(root / "proc")], check=True)
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(root / "proc")], check=False)


# --- steps -------------------------------------------------------------------------------------

def bootstrap(run: Runner, root: Path, mirror: str) -> None:
    run(["debootstrap", "--variant=minbase", SUITE, str(root), mirror], "debootstrap")


def install_packages(run: Runner, root: Path, packages: Iterable[str]) -> None:
    (root / "etc/dpkg/dpkg.cfg.d/pbotvm-excludes").write_text(DPKG_EXCLUDES)
    # debootstrap resolves neither virtual packages (gdb needs one) nor alternatives well; apt does.
    # INITRD=No: the kernel's hook would build a 30 MB initramfs we do not use.
    env = {"DEBIAN_FRONTEND": "noninteractive", "INITRD": "No"}
    with proc_mounted(root):
        run(["chroot", str(root), "apt-get", "install", "-y", "-q", "--no-install-recommends",
             *packages], "apt-get install", env)


def install_guest_server(run: Runner, root: Path) -> None:
    payload.payload(GUEST_PYTHON).install(root)
    # Byte-compiled now, so the guest's first start does not write to its disk.
    run(["chroot", str(root), "python3", "-m", "compileall", "-q", payload.LIBDIR],
        "compiling guest-server in the guest")


def configure(run: Runner, root: Path) -> None:
    run(["chroot", str(root), "useradd", "-m", "-s", "/bin/bash", GUEST_USER], "useradd")
    payload.write(payload.in_root(root, initramfs.GUEST_INIT),
                        init_script().encode(), 0o755)
    (root / "etc/hostname").write_text(HOSTNAME + "\n")
    (root / "etc/fstab").write_text("# the initramfs mounts /dev/vda; pbotvm-init the rest\n")


def kernel_version(root: Path) -> str:
    versions = sorted(p.name for p in (root / "lib/modules").iterdir())
    if not versions:
        raise BuildError("no kernel was installed in the guest")
    return versions[-1]


def boot_files(root: Path, out: Path) -> str:
    version = kernel_version(root)
    shutil.copy(root / "boot" / f"vmlinuz-{version}", out / "vmlinuz")
    initramfs.write(root, version, out / "initrd.img")
    return version


def slim(root: Path) -> None:
    # Booted with -kernel: the guest needs neither its kernel files nor apt's downloads.
    for pattern in ("boot/*", "lib/modules/*", "var/cache/apt/archives/*.deb",
                    "var/cache/apt/*.bin", "var/lib/apt/lists/*_Packages"):
        for path in root.glob(pattern):
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()


def make_disk(run: Runner, root: Path, out: Path, size_mib: int) -> None:
    raw = out / "disk.raw"
    run(["mkfs.ext4", "-q", "-F", "-L", "pbotvm", "-d", str(root), str(raw), f"{size_mib}M"],
        "mkfs.ext4")
    # qcow2, because savevm/loadvm keep their snapshots inside the disk image.
    run(["qemu-img", "convert", "-O", "qcow2", str(raw), str(out / "disk.qcow2")],
        "qemu-img convert")
    raw.unlink()


# --- the build ---------------------------------------------------------------------------------

def prune(keep: Image) -> None:
    """Remove the profile's older images: only the current inputs' image is ever used."""
    profile = keep.directory.name.rsplit("-", 1)[0]
    for old in keep.directory.parent.glob(f"{profile}-*"):
        if old != keep.directory:
            shutil.rmtree(old)


def stderr_progress(line: str) -> None:
    print(f"pbotvm image: {line}", file=sys.stderr, flush=True)


def _both(first: Callable[[], object], second: Callable[[], object]) -> None:
    first()
    second()


def build(profile: Profile, *, cache: Path | None = None, force: bool = False,
          progress: Progress = stderr_progress) -> Image:
    """The image for ``profile``, built unless an up-to-date one is cached."""
    cache = cache or cache_dir()
    image = image_for(profile, cache)
    if image.exists() and not force:
        progress(f"{profile.name} image is up to date: {image.directory}")
        return image
    problems = missing_tools()
    if problems:
        raise BuildError("\n".join(problems))
    if os.geteuid() != 0:
        raise BuildError("building the image needs root (debootstrap, chroot)")
    cache.mkdir(parents=True, exist_ok=True)
    run = Runner(cache / f"build-{profile.name}.log")
    run.log.write_text("")
    mirror = host_mirror()
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="build-", dir=cache) as tmp:
        work = Path(tmp)
        root, out = work / "root", work / "image"
        out.mkdir()
        kernels: list[str] = []
        steps: list[tuple[str, Callable[[], object]]] = [
            (f"debootstrap {SUITE} minbase from {mirror}", lambda: bootstrap(run, root, mirror)),
            (f"installing {len(profile.packages)} packages",
             lambda: install_packages(run, root, profile.packages)),
            ("installing guest-server and the init",
             lambda: _both(lambda: install_guest_server(run, root),
                           lambda: configure(run, root))),
            ("kernel and initramfs", lambda: kernels.append(boot_files(root, out))),
            (f"ext4 file system ({profile.disk_mib} MiB) and qcow2 disk",
             lambda: _both(lambda: slim(root),
                           lambda: make_disk(run, root, out, profile.disk_mib))),
        ]
        for number, (title, step) in enumerate(steps, 1):
            progress(f"[{number}/{len(steps)}] {title} ({time.monotonic() - start:.0f} s)")
            step()
        (out / "manifest.json").write_text(json.dumps({
            "profile": profile.name, "suite": SUITE, "packages": list(profile.packages),
            "kernel": kernels[0], "built": int(time.time())}, indent=1) + "\n")
        if image.directory.exists():
            shutil.rmtree(image.directory)
        image.directory.parent.mkdir(parents=True, exist_ok=True)
        out.rename(image.directory)
    prune(image)
    progress(f"built {image.directory} in {time.monotonic() - start:.0f} s")
    return image
