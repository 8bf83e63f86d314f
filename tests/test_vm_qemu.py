"""A real guest: the minimal image booted under QEMU (TCG where KVM does not work).

Builds the image if the cache has none (~1-1.5 min on 2 cores), boots it once for the module
(~15 s), talks to guest-server over the serial line as vm-exec does, then runs vm-server on it
(reverting with `pbotvm vm revert`) and asks through vm-client as PBot does. The serial devices
are Unix sockets, as `pbotvm vm up` makes them. The vm-server tests come last: while vm-server
holds the heartbeat line nobody else can connect to it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import re
import signal
import stat
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pbotvm.config import Machine
from pbotvm.guest.running import CPU_KILLED, MEMORY_KILLED
from pbotvm.host import warmup
from pbotvm.host.machines import qemu
from pbotvm.host.machines.qmp import loadvm
from pbotvm.host.machines.transport import send, wait_heartbeat
from pbotvm.image.build import build, missing_tools
from pbotvm.protocol import Request
from pbotvm.provision.profiles import MINIMAL
from tests.conftest import DAEMON, AttachedStack
from tests.support.stack import free_port
from tests.test_isolation import INJECT, INT_80, KEYRINGS, REACH, VSOCK

pytestmark = pytest.mark.vm

BIN = Path(sys.executable).parent
SERVER_TIMEOUT = 20


def request(lang: str, source: str, cmdline: str, code: str,
            execfile: str | None = None) -> Request:
    return Request(lang=lang, sourcefile=source, execfile=execfile or source, cmdline=cmdline,
                   code=code, date=int(time.time()), id=f"{lang}-{time.monotonic_ns()}")


def sh(code: str, persist_key: str | None = None) -> Request:
    return dataclasses.replace(request("sh", "prog.sh", "sh prog.sh", code),
                               persist_key=persist_key)


def python3(code: str) -> Request:
    return request("python3", "prog.py3", "python3 prog.py3", code)


@pytest.fixture(scope="module")
def vm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[qemu.VmPaths, Machine]]:
    missing = missing_tools()
    if missing:
        pytest.skip("; ".join(missing))
    image = build(MINIMAL)
    # vm-server's revert command (`pbotvm vm revert`) finds the VM in $PBOTVM_STATE_DIR/qemu.
    paths = qemu.VmPaths(tmp_path_factory.mktemp("state") / "qemu")
    # Free ports, so a developer's running VM or PTY stack on 5555/5556 is left alone (the
    # ports are not served: the devices are the state directory's sockets).
    machine = qemu.with_sockets(Machine(name="test", serial=free_port(), heart=free_port(),
                                        cid=0), paths)
    info = asyncio.run(qemu.up(image, paths, machine, os.environ,
                               warmup.for_image(image, print)))
    print(f"\nVM up ({info.accel}): boot {info.boot_seconds} s, warm-up "
          f"{info.warmup_seconds} s, savevm {info.savevm_seconds} s")
    try:
        yield paths, machine
    finally:
        qemu.down(paths)


def run(machine: Machine, req: Request) -> str:
    return asyncio.run(send(machine, req, timeout=60))


def answer(machine: Machine, req: Request) -> str:
    """The result's text without the newlines that end it."""
    return run(machine, req).rstrip("\n")


@pytest.mark.parametrize(("req", "expected"), [
    (sh("echo hello from $(uname -s)"), "hello from Linux\n"),
    (request("python3", "prog.py3", "python3 prog.py3", "print(6 * 7)"), "42\n"),
    (request("perl", "prog.pl", "perl -w prog.pl", 'print "perl ok\\n";'), "perl ok\n"),
    (request("c11", "prog.c", "gcc -std=c11 -Wall prog.c -o prog",
             '#include <stdio.h>\nint main(void) { printf("%d\\n", 1 << 10); }', "prog"),
     "1024\n"),
], ids=["sh", "python3", "perl", "c"])
def test_language(vm: tuple[qemu.VmPaths, Machine], req: Request, expected: str) -> None:
    assert run(vm[1], req).startswith(expected)


def test_runs_as_vm_user_without_network(vm: tuple[qemu.VmPaths, Machine]) -> None:
    out = run(vm[1], sh("id -un; ls /sys/class/net"))
    assert out.split() == ["vm", "lo"]


def test_loadvm_reverts_the_disk_and_heartbeat_resumes(vm: tuple[qemu.VmPaths, Machine]) -> None:
    paths, machine = vm
    # What outlives a request is only a persist-key's directory, which is on the disk.
    run(machine, sh("touch mark", persist_key="loadvm"))
    assert answer(machine, sh("ls", persist_key="loadvm")) == "mark\nprog.sh"

    seconds = asyncio.run(loadvm(paths.qmp))
    print(f"\nloadvm took {seconds:.3f} s")
    assert seconds < 5

    assert answer(machine, sh("ls", persist_key="loadvm")) == "prog.sh"
    start = time.monotonic()
    asyncio.run(wait_heartbeat(machine, timeout=12))
    print(f"first heartbeat {time.monotonic() - start:.1f} s after loadvm")


def test_revert_recovers_from_a_busy_guest(vm: tuple[qemu.VmPaths, Machine]) -> None:
    """A request still running when the VM is reverted leaves nothing behind."""
    paths, machine = vm

    async def busy_then_revert() -> float:
        start = time.monotonic()
        task = asyncio.create_task(send(machine, sh("sleep 30"), timeout=60))
        await asyncio.sleep(2)
        await qemu.revert(paths)
        seconds = time.monotonic() - start - 2
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return seconds

    seconds = asyncio.run(busy_then_revert())
    print(f"\nrevert during a running request took {seconds:.3f} s")
    assert run(machine, sh("echo still here")).startswith("still here\n")


# --- each request's box --------------------------------------------------------------------

def test_each_request_has_its_cgroup_with_the_limits(vm: tuple[qemu.VmPaths, Machine]) -> None:
    out = answer(vm[1], sh("cd /sys/fs/cgroup$(cut -d: -f3- /proc/self/cgroup) && pwd && "
                           "cat memory.max memory.swap.max memory.oom.group pids.max cpu.weight"))
    assert re.fullmatch(r"/sys/fs/cgroup/pbotvm/request-\d+\n536870912\n0\n1\n201\n100", out)


def test_nothing_a_request_writes_reaches_the_next(vm: tuple[qemu.VmPaths, Machine]) -> None:
    machine = vm[1]
    places = "/tmp/m /var/tmp/m /dev/shm/m ~/m"
    assert answer(machine, sh(f"touch {places} && ls {places} | wc -l; touch /etc/m")) == (
        "touch: cannot touch '/etc/m': Read-only file system\n 4\n [Exit 1]")
    assert answer(machine, sh(f"ls {places} /etc/m 2>/dev/null | wc -l")) == "0"


def test_a_daemon_is_gone_with_its_request(vm: tuple[qemu.VmPaths, Machine]) -> None:
    machine = vm[1]
    # The pid it prints is its box's, which no later request sees: its cgroup shows it gone
    # (the server removes it once its supervisor is reaped, just after the reply).
    cgroup = "print(open('/proc/self/cgroup').read().strip().partition('::')[2])"
    pid, path = answer(machine, python3(f"{DAEMON}\n{cgroup}")).split("\n")
    assert pid.isdigit() and path.startswith("/pbotvm/request-")
    gone = (f"for i in $(seq 100); do test -d /sys/fs/cgroup{path} || {{ echo gone; exit; }}; "
            "sleep 0.1; done; echo alive")
    assert answer(machine, sh(gone)) == "gone"


def test_a_request_sees_its_own_processes_and_loopback_alone(
        vm: tuple[qemu.VmPaths, Machine]) -> None:
    alone = "import os\nprint('processes:', sum(p.isdigit() for p in os.listdir('/proc')))"
    # The program and its supervisor, PID 1 of its box.
    assert answer(vm[1], python3(f"PORTS = []\n{REACH}\n{alone}")) == (
        "its own loopback works\ninterfaces: lo\nprocesses: 2")


def test_no_key_passes_from_one_request_to_the_next(vm: tuple[qemu.VmPaths, Machine]) -> None:
    none = "user ENOSYS\nuser-session ENOSYS\npersistent ENOSYS"
    for action in ("store", "read"):
        code = f"ACTION, NAME = {action!r}, b'left'\n{KEYRINGS}"
        assert answer(vm[1], python3(code)) == none


def test_no_vsock_socket_io_uring_or_32_bit_call(vm: tuple[qemu.VmPaths, Machine]) -> None:
    machine = vm[1]
    assert answer(machine, python3(VSOCK)) == (
        "socket EAFNOSUPPORT\nsocketpair EAFNOSUPPORT\nio_uring ENOSYS")
    int_80 = request("c11", "prog.c", "gcc prog.c -o prog", INT_80, "prog")
    assert answer(machine, int_80) == "keyctl -38\nsocket -38"  # ENOSYS


def test_no_terminal_to_type_into(vm: tuple[qemu.VmPaths, Machine]) -> None:
    assert answer(vm[1], python3(INJECT)) == (
        "/dev/tty: No such device or address\n0 Inappropriate ioctl for device\n"
        "1 Inappropriate ioctl for device\n2 Inappropriate ioctl for device")


def test_the_memory_limit_stops_a_request(vm: tuple[qemu.VmPaths, Machine]) -> None:
    machine = vm[1]
    # Less than the guest's memory, more than a request's: the cgroup kills it.
    hog = python3("print('start', flush=True)\nx = bytearray(700 * 1024**2)")
    assert answer(machine, hog) == f"start\n {MEMORY_KILLED}"
    # More than the guest has: the allocation fails (or the cgroup kills it).
    big = answer(machine, python3("x = bytearray(2 * 1024**3)"))
    assert big == MEMORY_KILLED or ("\nMemoryError\n" in big and big.endswith("[Exit 1]")), big
    # A recursion whose every call holds a MiB meets the limit in 512 calls (0.4 s of CPU
    # natively, mostly the kernel's page faults); a bare one takes 3.2 million calls (0.8 s
    # natively) and under TCG met the CPU limit (8 s) first.
    code = ("import sys\nsys.setrecursionlimit(10**9)\n"
            "def f(n):\n    held = b'x' * 2**20\n    return f(n + 1)\nf(0)")
    assert answer(machine, python3(code)) == MEMORY_KILLED
    assert answer(machine, python3("print('next')")) == "next"


def test_status_files(vm: tuple[qemu.VmPaths, Machine]) -> None:
    paths, _ = vm
    info = qemu.read_info(paths)
    assert info is not None and qemu.pid_alive(info.pid)
    assert Path(info.qmp) == paths.qmp and paths.pidfile.is_file()
    assert (info.serial_where, info.heart_where) == (str(paths.serial_socket),
                                                     str(paths.heart_socket))
    for socket_path in (paths.serial_socket, paths.heart_socket, paths.qmp):
        st = os.stat(socket_path)
        assert stat.S_ISSOCK(st.st_mode) and (st.st_uid, stat.S_IMODE(st.st_mode)) == (0, 0o600)
    assert stat.S_IMODE(paths.state_dir.stat().st_mode) == 0o700


# --- through vm-server and vm-client ------------------------------------------------------------

@pytest.fixture(scope="module")
def server(vm: tuple[qemu.VmPaths, Machine],
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[AttachedStack]:
    """vm-server told nothing but the state directory `vm up` used: it finds the guest there,
    its lines and its backend (reverted by QMP)."""
    paths, machine = vm
    work = tmp_path_factory.mktemp("server")
    # Under TCG (no KVM on CI hosts) an answer that needs gdb takes several seconds: gdb
    # alone takes ~2 s to start there.
    stack = AttachedStack(work, machine.serial, machine.heart,
                          {"PBOTVM_STATE_DIR": str(paths.state_dir.parent),
                           "XDG_CONFIG_HOME": str(work), "PBOTVM_TIMEOUT": str(SERVER_TIMEOUT)},
                          revert_command=None)
    for told in (*qemu.LINE_SETTINGS, "PBOTVM_MACHINES"):
        stack.env.pop(told, None)
    with stack as s:
        yield s


def test_vm_server_says_which_guest_it_found(vm: tuple[qemu.VmPaths, Machine],
                                             server: AttachedStack) -> None:
    paths, machine = vm
    assert (f"pbot-vm: the guest `pbotvm vm up` started ({paths.info}): serial "
            f"{machine.serial_socket}, heart {machine.heart_socket}, no vsock"
            ) in server.log("vm-server")


@pytest.mark.parametrize(("code", "expected"), [
    ("-lang=sh echo hi from sh", "hi from sh"),
    ("-lang=python3 print(6 * 7)", "42"),
    ('-lang=perl print "perl ok\\n";', "perl ok"),
    ('-lang=c11 #include <stdio.h>\nint main(void) { printf("%d\\n", 1 << 10); }', "1024"),
    # C as channels type it: the prelude, a generated main, gdb's reports.
    ('printf("%d\\n", 1+1);', "2"),
    ("1+1", "no output: 1 + 1 = 2"),
    ("int x = 5, y = 6;", "no output: x = 5; y = 6"),
    ("int x = 5; print(x);", "\nx = 5"),
    ('char *s = "hi"; ptype(s);', "\ns = char *"),
    ("int main(void) { puts(\"hi\"); return 3; }", "hi\n [Exit 3]"),
    ("-lang=sh echo $((2**10))", "1024"),
], ids=["sh", "python3", "perl", "c11", "c2x-printf", "c2x-last-statement", "c2x-locals",
        "c2x-print", "c2x-ptype", "c2x-exit", "sh-is-bash"])
def test_vm_client(server: AttachedStack, code: str, expected: str) -> None:
    assert server.ask(code) == expected


def test_c_crash_report(server: AttachedStack) -> None:
    # The address of argv depends on the guest's environment.
    assert re.fullmatch(
        r" runtime error: store to null pointer of type 'int'\n \nProgram received signal "
        r"SIGSEGV, Segmentation fault in main \(argc=1, argv=0x[0-9a-f]+\) at statement: "
        r"\*p = 1; <local variables: p = 0x0>", server.ask("int *p = 0; *p = 1;"))


# The loop meets the guest's CPU limit (8 s) before vm-server's time-out; both revert.
@pytest.mark.parametrize(("code", "reply"), [("-lang=sh while :; do :; done", CPU_KILLED),
                                             ("-lang=sh sleep 60", "[Timed-out]")],
                         ids=["loop", "sleep"])
def test_time_out_reverts_and_the_next_request_works(server: AttachedStack, code: str,
                                                     reply: str) -> None:
    server.ask("-lang=sh touch /var/tmp/before-timeout")
    start = time.monotonic()
    assert server.ask(code).startswith(reply)
    replied = time.monotonic()
    assert replied - start < SERVER_TIMEOUT + 3
    back = server.wait_answer("-lang=sh ls /var/tmp; echo next", "next", 30)
    print(f"\n{code}: time-out reply after {replied - start:.1f} s, next good answer "
          f"{back:.2f} s later")


def test_killed_qemu_is_reported_and_brought_back(vm: tuple[qemu.VmPaths, Machine],
                                                  server: AttachedStack) -> None:
    paths, _ = vm
    info = qemu.read_info(paths)
    assert info is not None
    os.kill(info.pid, signal.SIGKILL)  # the QEMU this module started
    start = time.monotonic()
    reply = server.ask("-lang=sh echo hi")
    assert reply.startswith("Virtual machine is"), reply
    assert time.monotonic() - start < 15
    # Nobody restarts it by hand: once the guest has been silent for two heartbeat margins,
    # the next request reverts, and the revert starts QEMU again straight into snapshot 1.
    back = server.wait_answer("-lang=sh echo back", "back", 90)
    log = server.log("vm-server")
    assert re.search(r"reverting \(no heartbeat for \d+ s\)", log), log[-2000:]
    new = qemu.read_info(paths)
    assert new is not None and new.pid != info.pid and qemu.pid_alive(new.pid)
    # The restarted QEMU's sockets are root's alone again.
    assert {stat.S_IMODE(os.stat(p).st_mode) for p in (paths.serial_socket,
                                                        paths.heart_socket)} == {0o600}
    # The console log still has the first boot: the restart appended to it.
    assert "starting: serial /dev/ttyS2" in paths.console.read_text(errors="replace")
    print(f"\nafter a QEMU kill: '{reply}'; answering again {back:.1f} s later")
