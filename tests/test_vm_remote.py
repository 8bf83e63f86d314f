"""A pool that spans two libvirt daemons: one local guest on unix sockets, one on a "remote"
host reached through a real sshd on loopback (``qemu+ssh://``), its image uploaded as volumes
and its lines carried as libvirt console streams. Each daemon is one of our own, in its own
namespace; the machine's libvirt is untouched.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import libvirt
import pytest

from tests.conftest import until
from tests.support.private_libvirtd import PrivateLibvirtd
from tests.support.sshd import Sshd
from tests.support.stack import BIN, free_port

pytestmark = pytest.mark.vm

LINE_SETTINGS = ("PBOTVM_SERIAL", "PBOTVM_HEART", "PBOTVM_SERIAL_SOCKET",
                 "PBOTVM_HEART_SOCKET", "PBOTVM_MACHINES", "PBOTVM_REVERT_COMMAND",
                 "PBOTVM_DOMAIN", "PBOTVM_CID")


@dataclass
class Hosts:
    local: PrivateLibvirtd
    remote: PrivateLibvirtd
    sshd: Sshd
    uri: str  # the remote daemon, through sshd
    env: dict[str, str]
    workdir: Path

    def pbotvm(self, *args: str, timeout: float = 900,
               env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(BIN / "pbotvm"), *args], env=env or self.env,
                              capture_output=True, text=True, timeout=timeout, check=False)


def _remote_view(daemon: PrivateLibvirtd) -> tuple[list[str], list[str]]:
    """The domains and storage pools on the daemon, as its own local client sees them."""
    conn = libvirt.open(daemon.uri)
    try:
        return ([dom.name() for dom in conn.listAllDomains()],
                [pool.name() for pool in conn.listAllStoragePools()])
    finally:
        conn.close()


@pytest.fixture(scope="module")
def hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hosts]:
    root = tmp_path_factory.mktemp("hosts")
    with PrivateLibvirtd(root / "local") as local, PrivateLibvirtd(root / "remote") as remote, \
            Sshd(root / "sshd") as sshd:
        env = {**os.environ, "PBOTVM_STATE_DIR": str(root / "state"),
               "PBOTVM_LIBVIRT_URI": local.uri, "PBOTVM_ACCEL": "tcg", "PBOTVM_CID": "0",
               "PBOTVM_TIMEOUT": "8", "PBOTVM_STDIN_COMMAND": "",
               "XDG_CONFIG_HOME": str(root)}
        for told in LINE_SETTINGS:
            env.pop(told, None)
        env["PBOTVM_CID"] = "0"
        env["PBOTVM_SERIAL_SOCKET"] = str(root / "lines/serial.sock")
        env["PBOTVM_HEART_SOCKET"] = str(root / "lines/heart.sock")
        yield Hosts(local, remote, sshd, sshd.uri(remote.sock / "libvirt-sock"), env, root)


@pytest.fixture(scope="module")
def pool(hosts: Hosts) -> Iterator[Hosts]:
    """A guest up on each daemon (at once), and vm-server serving both as one machine."""
    with ThreadPoolExecutor(2) as both:
        local = both.submit(hosts.pbotvm, "libvirt", "up")
        remote = both.submit(hosts.pbotvm, "libvirt", "up", "--uri", hosts.uri)
        made = local.result(), remote.result()
    server: subprocess.Popen[bytes] | None = None
    try:
        for up in made:
            assert up.returncode == 0, up.stderr
        print(f"\n{made[0].stdout}{made[1].stdout}{made[1].stderr}")
        assert "uploading disk.qcow2" in made[1].stderr
        assert made[1].stdout.startswith(f"up: domain pbot-vm-1 on {hosts.uri}, lines over "
                                         "libvirt streams")
        recorded = json.loads((hosts.workdir / "state/libvirt/guests.json").read_text())
        # (The local domain is recorded before it when its `up` defined it first.)
        assert (recorded[-1]["domain"], recorded[-1]["uri"]) == ("pbot-vm-1", hosts.uri)
        machines = hosts.workdir / "vm-exec.json"
        machines.write_text(json.dumps({"machines": {"pbot-vm": {"guests": [
            {"domain": "pbot-vm", "serial-socket": hosts.env["PBOTVM_SERIAL_SOCKET"],
             "heart-socket": hosts.env["PBOTVM_HEART_SOCKET"]},
            {"domain": "pbot-vm-1", "uri": hosts.uri}]}}}))
        hosts.env.update({"PBOTVM_MACHINES": str(machines), "PBOTVM_SERVER": str(free_port())})
        with open(hosts.workdir / "vm-server.log", "ab") as log:
            server = subprocess.Popen([str(BIN / "vm-server")], env=hosts.env,
                                      stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        assert until(lambda: ask(hosts, "-lang=sh echo ready") == "ready", 60), server_log(hosts)
        yield hosts
    finally:
        if server is not None:
            server.terminate()
            server.wait(30)
        for args in (("libvirt", "down", "--uri", hosts.uri), ("libvirt", "down")):
            hosts.pbotvm(*args, timeout=120)


def ask(hosts: Hosts, code: str, nick: str = "n") -> str:
    done = subprocess.run([str(BIN / "vm-client"), json.dumps(
        {"nick": nick, "channel": "#c", "code": code})], env=hosts.env, capture_output=True,
        text=True, timeout=60, check=False)
    return done.stdout.strip()


def server_log(hosts: Hosts) -> str:
    return (hosts.workdir / "vm-server.log").read_text(errors="replace")


def test_both_hosts_answer(pool: Hosts) -> None:
    with ThreadPoolExecutor(2) as both:
        slow = both.submit(ask, pool, "-lang=sh sleep 3; echo A", "a")
        time.sleep(0.5)
        quick = both.submit(ask, pool, "-lang=sh echo B", "b")
        assert (slow.result(), quick.result()) == ("A", "B")
    log = server_log(pool)
    assert f"requests go over serial of pbot-vm-1 on {pool.uri}" in log
    assert f"requests go over serial {pool.env['PBOTVM_SERIAL_SOCKET']}" in log
    # A C request with its value printed, through the stream and the guest's gdb-less path.
    assert ask(pool, "-lang=c11 int x = 5; x * 2") == "no output: x * 2 = 10"


def test_a_time_out_reverts_the_remote_guest_through_its_connection(pool: Hosts) -> None:
    with ThreadPoolExecutor(2) as both:  # one on each guest: both time out
        stuck = [both.submit(ask, pool, "-lang=sh sleep 60", nick) for nick in "ab"]
        assert [answer.result().startswith("[Timed-out]") for answer in stuck] == [True, True]
    reverted = (f"pbot-vm/1: reverted to snapshot 1 in [0-9.]+ s \\(libvirt {re.escape(pool.uri)} "
                "domain pbot-vm-1: loadvm\\)")
    assert until(lambda: re.search(reverted, server_log(pool)), 30), server_log(pool)
    assert until(lambda: ask(pool, "-lang=sh echo back") == "back", 30)


def test_a_lost_host_loses_no_request_and_the_local_guest_serves(pool: Hosts) -> None:
    def client(k: int) -> list[tuple[str, str]]:
        return [(ask(pool, f"-lang=sh echo {k}-{i}", f"n{k}"), f"{k}-{i}") for i in range(6)]

    try:
        with ThreadPoolExecutor(4) as clients:
            runs = [clients.submit(client, k) for k in range(4)]
            time.sleep(1.5)
            pool.sshd.stop()
            answers = [pair for run in runs for pair in run.result()]
        assert [got for got, wanted in answers if got != wanted] == []
        assert until(lambda: "connection closed" in server_log(pool), 20), server_log(pool)
        assert ask(pool, "-lang=sh echo still") == "still"
    finally:
        # The host comes back (same port): vm-server connects again, the guest beats again.
        pool.sshd.start()
    beats = f"connected to heartbeat pbot-vm-1 on {pool.uri}"
    assert until(lambda: server_log(pool).count(beats) >= 2, 30), server_log(pool)


def test_bad_remote_input_is_one_line_and_makes_nothing(pool: Hosts, tmp_path: Path) -> None:
    env = {key: value for key, value in pool.env.items() if key != "PBOTVM_MACHINES"}
    env.update(PBOTVM_DOMAIN="foreign", PBOTVM_STATE_DIR=str(tmp_path))
    refused = pool.pbotvm("libvirt", "up", "--uri",
                          f"qemu+ssh://root@127.0.0.1:{free_port()}/system?no_tty=1",
                          timeout=120, env=env)
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines()[-1].startswith(
        "Error: libvirt qemu+ssh://root@127.0.0.1:"), refused.stderr
    assert "Traceback" not in refused.stderr

    conn = libvirt.open(pool.remote.uri)
    try:
        # Someone else's domain where `up` would put its guest: refused before anything is made.
        conn.defineXML("<domain type='qemu'><name>foreign-1</name><memory unit='MiB'>64"
                       "</memory><os><type arch='x86_64'>hvm</type></os></domain>")
        before = _remote_view(pool.remote)
        foreign = pool.pbotvm("libvirt", "up", "--uri", pool.uri, timeout=120, env=env)
        assert foreign.returncode == 1
        assert foreign.stderr.strip().splitlines()[-1] == (
            f"Error: libvirt {pool.uri}: domain foreign-1 exists and was not defined by "
            "pbotvm; name the guests otherwise (PBOTVM_DOMAIN)"), foreign.stderr
        assert _remote_view(pool.remote) == before  # nothing made, nothing removed
    finally:
        conn.lookupByName("foreign-1").undefine()
        conn.close()


def test_down_removes_what_up_made_there(pool: Hosts) -> None:
    down = pool.pbotvm("libvirt", "down", "--uri", pool.uri, timeout=120)
    assert (down.returncode, down.stdout.strip()) == (0, "removed"), down.stderr
    domains, pools = _remote_view(pool.remote)
    assert "pbot-vm-1" not in domains
    assert "pbotvm" not in pools  # made by `up`, so removed with its last domain
    record = pool.workdir / "state/libvirt/guests.json"
    assert not record.exists() or all(not guest["uri"] for guest in json.loads(
        record.read_text()))
