"""libvirt's ssh transport to a daemon of our own: a real sshd on loopback in front of a
private libvirtd (tests/support/sshd.py), the daemon reached as a remote host would be.

No guest is involved: a domain is only defined, never started.
"""

from __future__ import annotations

import contextlib
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import libvirt
import pytest

from pbotvm.host.machines import libvirt_lines
from tests.support.private_libvirtd import PrivateLibvirtd
from tests.support.sshd import SSHD, Sshd

_MISSING = [p for p in (SSHD, "ssh", "ssh-keygen", "nc", "libvirtd")
            if shutil.which(p) is None]
pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(bool(_MISSING), reason=f"needs {', '.join(_MISSING)} "
                       "(openssh-server, openssh-client, netcat-openbsd, libvirt-daemon: "
                       "./dev setup)"),
]

DOMAIN = """<domain type='qemu'>
  <name>pbot-vm-remote-probe</name>
  <memory unit='MiB'>64</memory>
  <os><type arch='x86_64'>hvm</type></os>
</domain>"""

T = TypeVar("T")


def lv(fn: Callable[[], T]) -> T:
    """``fn()`` where this process makes its libvirt calls: in the libvirt thread of
    libvirt_lines once it runs. libvirt takes one event implementation per process (a second
    is ignored) and libvirtaio is not thread-safe: a timer it is given from another thread
    does not wake its loop, so keepalive would never fire."""
    return libvirt_lines.run_if_started(fn)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateLibvirtd]:
    with PrivateLibvirtd(tmp_path_factory.mktemp("libvirtd")) as d:
        yield d


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[Sshd]:
    with Sshd(tmp_path / "sshd") as s:
        yield s


def socket_of(daemon: PrivateLibvirtd) -> Path:
    return daemon.sock / "libvirt-sock"


def quiet() -> None:
    # libvirt's errors come back as exceptions; not also on stderr.
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)


def test_the_private_daemon_is_reached_over_ssh(daemon: PrivateLibvirtd, sshd: Sshd) -> None:
    quiet()
    uri = sshd.uri(socket_of(daemon))
    start = time.monotonic()
    remote = lv(lambda: libvirt.open(uri))
    opened = time.monotonic() - start
    try:
        print(f"\nqemu+ssh connection opened in {opened:.3f} s: {uri}")
        assert lv(remote.getURI) == uri
        assert lv(remote.listAllDomains) == []
        assert sshd.sessions(), "no ssh session carries the connection"
        dom = lv(lambda: remote.defineXML(DOMAIN))
        try:
            local = lv(lambda: libvirt.open(daemon.uri))
            try:
                seen = lv(lambda: local.lookupByName("pbot-vm-remote-probe"))
                assert lv(seen.UUIDString) == lv(dom.UUIDString)
                assert not lv(seen.isActive)
            finally:
                lv(local.close)
        finally:
            lv(dom.undefine)
        assert lv(remote.listAllDomains) == []
    finally:
        lv(remote.close)


@dataclass
class Watched:
    """A connection with keepalive (1 s, 2 missed) and a close callback, made and used in
    the libvirt thread (its event loop runs the keepalive timer)."""

    conn: libvirt.virConnect
    closed: threading.Event = field(default_factory=threading.Event)
    reasons: list[int] = field(default_factory=list)

    @classmethod
    def open(cls, uri: str) -> Watched:
        def opened() -> Watched:
            watched = cls(libvirt.open(uri))
            watched.conn.registerCloseCallback(watched._on_close, None)
            assert watched.conn.setKeepAlive(1, 2) == 0
            return watched

        return libvirt_lines.run(opened)

    def _on_close(self, _conn: libvirt.virConnect, reason: int, _opaque: object) -> None:
        self.reasons.append(reason)
        self.closed.set()

    def forget(self) -> None:
        """Only once the peer is gone (or answers): closing waits for its reply."""
        def forget() -> None:
            with contextlib.suppress(libvirt.libvirtError):
                self.conn.unregisterCloseCallback()
            with contextlib.suppress(libvirt.libvirtError):
                self.conn.close()

        libvirt_lines.run(forget)


def test_a_stopped_sshd_closes_the_connection(daemon: PrivateLibvirtd, sshd: Sshd) -> None:
    quiet()
    uri = sshd.uri(socket_of(daemon))
    watched = Watched.open(uri)
    try:
        assert lv(watched.conn.listAllDomains) == []
        start = time.monotonic()
        sshd.stop()
        assert watched.closed.wait(10), "the connection's end went unnoticed for 10 s"
        noticed = time.monotonic() - start
        print(f"\nsshd stopped: connection closed after {noticed:.3f} s, "
              f"reason {watched.reasons}")
        # ERROR: libvirt reads the end of the ssh child's output as a failed read.
        assert watched.reasons in ([libvirt.VIR_CONNECT_CLOSE_REASON_ERROR],
                                   [libvirt.VIR_CONNECT_CLOSE_REASON_EOF])
        assert lv(watched.conn.isAlive) == 0
        with pytest.raises(libvirt.libvirtError):
            lv(watched.conn.listAllDomains)
    finally:
        sshd.stop()
        watched.forget()

    with pytest.raises(libvirt.libvirtError) as failure:
        lv(lambda: libvirt.open(uri))
    message = failure.value.get_error_message()
    print(f"fresh open: {message}")
    assert "\n" not in message
    assert f"connect to host 127.0.0.1 port {sshd.port}: Connection refused" in message


def test_keepalive_notices_a_silent_peer(daemon: PrivateLibvirtd, sshd: Sshd) -> None:
    """sshd and its session stopped (SIGSTOP), the TCP connection open: only keepalive can
    tell; with interval 1 s and 2 missed answers, about 3 s."""
    quiet()
    watched = Watched.open(sshd.uri(socket_of(daemon)))
    try:
        assert lv(watched.conn.listAllDomains) == []
        start = time.monotonic()
        sshd.freeze()
        assert watched.closed.wait(15), "keepalive did not close the connection in 15 s"
        noticed = time.monotonic() - start
        print(f"\nsshd frozen: keepalive closed the connection after {noticed:.3f} s, "
              f"reason {watched.reasons}")
        assert watched.reasons == [libvirt.VIR_CONNECT_CLOSE_REASON_KEEPALIVE]
        assert 1.5 < noticed < 6
        assert lv(watched.conn.isAlive) == 0
    finally:
        sshd.stop()  # a frozen peer would hold up close() for ever
        watched.forget()
