"""An OpenSSH server of our own on a loopback port, in front of a private libvirt daemon.

libvirt reaches a remote host through ``qemu+ssh://``: it runs ``ssh`` and, on the far side,
``nc -U`` on the daemon's socket. With this server the tests take that real remote transport
(authentication, the proxy, a connection that dies with its ssh session) to the daemon of
:mod:`tests.support.private_libvirtd`, without a second machine and without touching the
machine's own sshd, ssh client configuration or ``~/.ssh``: keys, known_hosts and the
server's configuration are files in ``root``.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import socket
import subprocess
import time
from pathlib import Path
from urllib.parse import quote

from pbotvm import procs
from tests.support.stack import free_port
from tests.support.started import Started

SSHD = "/usr/sbin/sshd"

# StrictModes would refuse an authorized_keys below /tmp (world-writable, sticky).
SSHD_CONFIG = """\
ListenAddress 127.0.0.1
Port {port}
HostKey {host_key}
PidFile {pid_file}
AuthorizedKeysFile {authorized_keys}
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
UseDNS no
X11Forwarding no
AllowTcpForwarding no
PrintMotd no
LogLevel INFO
"""

# The ssh client libvirt runs (its URI parameter ``command``): no configuration of the
# machine's, the host key checked against our known_hosts, nothing written to ~/.ssh.
SSH_WRAPPER = """\
#!/bin/sh
exec /usr/bin/ssh -F none -o UserKnownHostsFile={known_hosts} \\
    -o GlobalKnownHostsFile=/dev/null -o LogLevel=ERROR "$@"
"""


class Sshd(Started):
    """``sshd -D`` on 127.0.0.1 and a free port; root logs in with the key ``client_key``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = 0
        self.host_key = root / "host_key"
        self.client_key = root / "client_key"
        self.authorized_keys = root / "authorized_keys"
        self.known_hosts = root / "known_hosts"
        self.config = root / "sshd_config"
        self.ssh = root / "ssh"
        self.log = root / "sshd.log"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        for key in (self.host_key, self.client_key):
            if not key.exists():
                subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", key.name,
                                "-f", str(key)], check=True, stdin=subprocess.DEVNULL,
                               capture_output=True)
        self.authorized_keys.write_text(Path(f"{self.client_key}.pub").read_text())
        self.port = self.port or free_port()  # started again: the same port
        host_pub = Path(f"{self.host_key}.pub").read_text().split()
        self.known_hosts.write_text(f"[127.0.0.1]:{self.port} {host_pub[0]} {host_pub[1]}\n")
        self.ssh.write_text(SSH_WRAPPER.format(known_hosts=shlex.quote(str(self.known_hosts))))
        self.ssh.chmod(0o755)
        self.config.write_text(SSHD_CONFIG.format(
            port=self.port, host_key=self.host_key, pid_file=self.root / "sshd.pid",
            authorized_keys=self.authorized_keys))
        # The privilege separation directory sshd insists on (made by its systemd unit).
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        with self.log.open("ab") as out:
            self._proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(self.config)],
                                          stdin=subprocess.DEVNULL, stdout=out, stderr=out)
        self._wait(timeout)

    def _wait(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise RuntimeError(f"sshd exited {self._proc.returncode}:\n{self.log_tail()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"sshd not listening on 127.0.0.1:{self.port} after {timeout} s:\n"
                           f"{self.log_tail()}")

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def uri(self, socket_path: str | Path, driver: str = "qemu:///system") -> str:
        """libvirt's URI for the daemon listening on ``socket_path``, reached over this sshd.

        ``proxy=netcat``: the far side runs ``nc -U socket_path``. With ``proxy=auto``
        libvirt 9.0 runs virt-ssh-helper there, which ignores ``socket`` and connects to the
        system daemon's /var/run/libvirt/libvirt-sock (without ``proxy``, ``socket`` alone
        also means netcat; said here so as not to depend on it). ``command``: our ssh
        wrapper, which checks the host key against our known_hosts (so no ``no_verify``);
        ``no_tty=1``: ssh in batch mode, never a prompt.
        """
        scheme, rest = driver.split("://", 1)
        path = rest.split("/", 1)[1] if "/" in rest else ""
        params = {"socket": str(socket_path), "keyfile": str(self.client_key),
                  "command": str(self.ssh), "proxy": "netcat", "no_tty": "1"}
        query = "&".join(f"{k}={quote(v, safe='/')}" for k, v in params.items())
        return f"{scheme}+ssh://root@127.0.0.1:{self.port}/{path}?{query}"

    def sessions(self) -> list[int]:
        """The pids of the processes sshd forked for its connections (and theirs)."""
        return [] if self._proc is None else procs.descendants(self._proc.pid)

    def freeze(self) -> None:
        """SIGSTOP sshd and its sessions: a peer that is there but never answers, as behind a
        network that drops everything. :meth:`stop` ends them all."""
        if self._proc is None:
            return
        for pid in [self._proc.pid, *self.sessions()]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)

    def stop(self) -> None:
        """End sshd and every session it forked (each in a session of its own, so not by
        process group: by descent from sshd's pid). Idempotent."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            procs.kill_descendants(self._proc.pid)
            self._proc.kill()
            self._proc.wait()
        self._proc = None
