"""A libvirt daemon of our own, for the tests and benchmarks of the libvirt backend.

It runs in a private mount namespace where /etc/libvirt, /run and /var are directories of
ours, so the machine's libvirt configuration and state are never touched (nor need to exist:
Debian's libvirt-daemon-system, with its systemd units and users, is not required). QEMU runs
as root without a security driver, which also keeps ``virsh snapshot-revert`` at ~2 s instead
of ~7 s; or, ``stock``, as Debian ships the daemon: QEMU as ``libvirt-qemu``, files handed
over to it (dynamic ownership), and /var/lib/libvirt/images as the package makes it. Clients
reach it on ``qemu:///system?socket=<root>/sock/libvirt-sock``; one that needs the daemon's
view of /var and /run (a stock daemon's images directory) runs with :meth:`in_namespace`.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from pathlib import Path

from pbotvm import procs
from pbotvm.host.machines.devices import LibvirtError, connect
from pbotvm.provision.setup_guest import has_user
from tests.support.started import Started

LIBVIRTD_CONF = """\
unix_sock_dir = "{sock}"
unix_sock_group = "root"
auth_unix_rw = "none"
auth_unix_ro = "none"
"""

# stdio_handler "file": QEMU's output goes straight to a file, so no virtlogd is needed.
QEMU_CONF = """\
user = "root"
group = "root"
security_driver = "none"
dynamic_ownership = 0
stdio_handler = "file"
"""
# Debian's qemu.conf is all comments (its built-in user is libvirt-qemu); only the log
# handler differs, as no virtlogd runs here.
STOCK_QEMU_CONF = """\
stdio_handler = "file"
"""

# The namespace's mounts, then the daemon. $R is our root directory.
START = """\
set -e
mount --make-rprivate /
mount --bind "$R/etc" /etc/libvirt
mount --bind "$R/run" /run
mount --bind "$R/var" /var
mount --bind "$R/passwd" /etc/passwd
mount --bind "$R/group" /etc/group
exec libvirtd --config "$R/etc/libvirtd.conf"
"""

# Debian's libvirtd resolves its built-in QEMU user before reading qemu.conf; the package that
# creates that user is the one we avoid, so the namespace's passwd has it.
QEMU_USER = "libvirt-qemu"


def with_user(passwd: str, group: str, name: str = QEMU_USER, uid: int = 64055) -> tuple[str, str]:
    if has_user(passwd, name):
        return passwd, group
    return (passwd.rstrip("\n") + f"\n{name}:x:{uid}:{uid}::/var/lib/libvirt:/usr/sbin/nologin\n",
            group.rstrip("\n") + f"\n{name}:x:{uid}:\n")


class PrivateLibvirtd(Started):
    def __init__(self, root: Path, *, stock: bool = False) -> None:
        self.root = root
        self.stock = stock
        self.sock = root / "sock"
        self.uri = f"qemu:///system?socket={self.sock / 'libvirt-sock'}"
        self.log = root / "libvirtd.log"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> None:
        if not Path("/etc/libvirt").is_dir():
            raise RuntimeError("/etc/libvirt is missing (install libvirt-daemon)")
        # var/lock: libvirt locks a pty there when it opens a domain's console.
        for sub in ("etc", "run", "var", "var/lock", "sock"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        (self.root / "etc/libvirtd.conf").write_text(LIBVIRTD_CONF.format(sock=self.sock))
        (self.root / "etc/qemu.conf").write_text(STOCK_QEMU_CONF if self.stock else QEMU_CONF)
        if self.stock:
            images = self.root / "var/lib/libvirt/images"
            images.mkdir(parents=True, exist_ok=True)
            images.chmod(0o711)
        passwd, group = with_user(Path("/etc/passwd").read_text(), Path("/etc/group").read_text())
        (self.root / "passwd").write_text(passwd)
        (self.root / "group").write_text(group)
        with self.log.open("ab") as out:
            self._proc = subprocess.Popen(["unshare", "--mount", "sh", "-c", START],
                                          env={**os.environ, "R": str(self.root)},
                                          stdin=subprocess.DEVNULL, stdout=out, stderr=out)
        self._wait(timeout)

    def _wait(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise RuntimeError(f"libvirtd exited {self._proc.returncode}:\n"
                                   f"{self.log.read_text(errors='replace')[-2000:]}")
            with contextlib.suppress(LibvirtError):
                connect(self.uri).close()
                return
            time.sleep(0.1)
        raise RuntimeError(f"libvirtd not answering after {timeout} s")

    def in_namespace(self, argv: list[str]) -> list[str]:
        """``argv`` run in the daemon's mount namespace (its /var, /run and users)."""
        assert self._proc is not None, "the daemon is not running"
        return ["nsenter", "--mount", f"--target={self._proc.pid}", *argv]

    def stop(self) -> None:
        """Destroy every domain (QEMU outlives libvirtd otherwise), then stop the daemon."""
        import libvirt

        with contextlib.suppress(LibvirtError, libvirt.libvirtError):
            conn = connect(self.uri)
            try:
                for dom in conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE):
                    with contextlib.suppress(libvirt.libvirtError):
                        dom.destroy()
            finally:
                conn.close()
        if self._proc is not None:
            procs.terminate(self._proc)
        self._proc = None
