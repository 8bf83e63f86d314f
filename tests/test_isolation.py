"""Each request's box, attacked through vm-client on the PTY stack as a chat user would (the
cases of issues 11 and 19): each attack fails and the next request is answered as if it never
came. On the PTY stack the guest is this machine, so what a request left behind is looked for
here.
"""

import fcntl
import os
import platform
import re
import subprocess
import tempfile
import termios
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from pbotvm.guest import box
from pbotvm.guest.limits import MIB, BoxLimits, Limits
from pbotvm.guest.running import MEMORY_KILLED, result_text
from pbotvm.guest.sandbox import MEMORY_LIMIT
from pbotvm.guest.settings import GuestSettings
from pbotvm.procs import running
from pbotvm.settings import ConfigError
from tests.conftest import DAEMON, DAEMON_SECONDS, make_stack, processes_running, until
from tests.support.stack import LocalStack

# --- pure --------------------------------------------------------------------------------------

def test_the_tmpfs_is_shown_at_its_places() -> None:
    places = {place.path: place for place in box.places(Path("/home/vm"))}
    assert list(places) == [Path("/tmp"), Path("/var/tmp"), Path("/dev/shm"), Path("/home/vm")]
    assert [p.mode for p in places.values()] == [0o1777, 0o1777, 0o1777, 0o755]
    assert [p.users for p in places.values()] == [False, False, False, True]


def test_the_tmpfs_bounds_its_inodes_too() -> None:
    assert box.tmpfs_options(128 * MIB) == f"size={128 * MIB},nr_inodes=32768,mode=0755"
    assert box.tmpfs_options(MIB) == f"size={MIB},nr_inodes=1024,mode=0755"


def test_a_memory_kill_is_said_where_the_cpu_kill_is() -> None:
    assert result_text("partial", 137, MEMORY_LIMIT, False) == f"partial {MEMORY_KILLED}\n"
    assert result_text("", 137, MEMORY_LIMIT, True) == f"{MEMORY_KILLED}\n"


def test_limits_come_from_the_environment_with_the_originals_defaults() -> None:
    assert GuestSettings.from_env({}).limits == Limits(cpu_seconds=8, file_bytes=2048000,
                                                       processes=200, wall_seconds=60.0)
    assert GuestSettings.from_env({}).box_limits == BoxLimits(memory_bytes=512 * MIB,
                                                              tmpfs_bytes=128 * MIB,
                                                              cpu_weight=100)
    settings = GuestSettings.from_env({
        "PBOTVM_GUEST_CPU_SECONDS": "3", "PBOTVM_GUEST_FILE_KIB": "10",
        "PBOTVM_GUEST_PROCESSES": "20", "PBOTVM_GUEST_TIMEOUT": "2.5",
        "PBOTVM_GUEST_MEMORY_MIB": "256", "PBOTVM_GUEST_TMPFS_MIB": "16",
        "PBOTVM_GUEST_CPU_WEIGHT": "50"})
    assert settings.limits == Limits(cpu_seconds=3, file_bytes=10240, processes=20,
                                     wall_seconds=2.5)
    assert settings.box_limits == BoxLimits(memory_bytes=256 * MIB, tmpfs_bytes=16 * MIB,
                                            cpu_weight=50)


@pytest.mark.parametrize(("env", "message"), [
    ({"PBOTVM_GUEST_MEMORY_MIB": "lots"},
     "PBOTVM_GUEST_MEMORY_MIB='lots': expected a whole number from 16 to 2147483648"),
    ({"PBOTVM_GUEST_MEMORY_MIB": "8"}, "PBOTVM_GUEST_MEMORY_MIB='8': out of range 16..2147483648"),
    ({"PBOTVM_GUEST_CPU_WEIGHT": "0"}, "PBOTVM_GUEST_CPU_WEIGHT='0': out of range 1..10000"),
])
def test_a_bad_limit_is_one_clear_line(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        GuestSettings.from_env(env)


# --- through the stack -------------------------------------------------------------------------

def _vm_processes(marker: str) -> list[int]:
    """Processes of any user whose command line has ``marker``."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if marker.encode() in f.read() and running(int(entry)):
                    found.append(int(entry))
        except (OSError, ValueError):
            continue
    return found


@pytest.mark.root
def test_a_planted_usercustomize_does_not_reach_the_next_python(stack: LocalStack) -> None:
    plant = ("d=$(python3 -c 'import site; print(site.getusersitepackages())'); "
             "mkdir -p \"$d\"; echo 'print(\"planted\")' > \"$d/usercustomize.py\"; "
             "python3 -c 'print(\"same request\")'")
    assert stack.ask(f"-lang=sh {plant}") == "planted\nsame request"  # the plant works...
    assert stack.ask('-lang=python3 print("clean")') == "clean"  # ...for its request only


@pytest.mark.root
def test_files_written_to_tmp_are_gone_after_the_request(stack: LocalStack) -> None:
    marker = f"fill-{uuid.uuid4().hex}"
    # 39 files of 2 MB (the per-file limit): 78 MB.
    fill = (f"for i in $(seq 39); do head -c 2000000 /dev/zero > /tmp/{marker}-$i; done; "
            f"cat /tmp/{marker}-* | wc -c")
    assert stack.ask(f"-lang=sh {fill}") == "78000000"
    assert stack.ask("-lang=sh ls -A /tmp /var/tmp /dev/shm | grep -c fill-; true") == "0"
    assert not list(Path("/tmp").glob(f"{marker}*"))


@pytest.mark.root
def test_nothing_written_outside_the_box_survives(stack: LocalStack) -> None:
    marker = f"mark-{uuid.uuid4().hex}"
    out = stack.ask(f"-lang=sh touch ~/{marker} /dev/shm/{marker} /var/tmp/{marker} && echo ok; "
                    f"touch /run/lock/{marker}")
    assert re.fullmatch(rf"touch: cannot touch '/run/lock/{marker}': Read-only file system\n"
                        r" ok\n \[Exit 1\]", out), out
    assert stack.ask(f"-lang=sh ls -A ~ /dev/shm /var/tmp | grep -c {marker}; true") == "0"
    for directory in ("/home/vm", "/dev/shm", "/var/tmp", "/run/lock"):
        assert not Path(directory, marker).exists()


@pytest.mark.root
def test_a_forked_daemon_is_gone(stack: LocalStack) -> None:
    assert stack.ask(f"-lang=python3 {DAEMON}").isdigit()
    assert not processes_running("sleep", DAEMON_SECONDS)
    assert stack.ask("-lang=sh echo next") == "next"


def _memory_limit_or_skip(stack: LocalStack) -> None:
    said = re.search(r"cgroups: unavailable \((.*?)\)", stack.log("ptyvm"))
    if said:
        pytest.skip(f"no memory limit on this host: {said[1]}")


@pytest.mark.root
def test_a_2_gb_allocation_fails(stack: LocalStack) -> None:
    _memory_limit_or_skip(stack)
    out = stack.ask("-lang=python3 x = bytearray(2 * 1024**3); print('allocated')")
    assert out == MEMORY_KILLED or ("\nMemoryError\n" in out and out.endswith("[Exit 1]")), out
    assert stack.ask("-lang=python3 print('next')") == "next"


@pytest.mark.root
def test_deep_recursion_meets_the_memory_limit(stack: LocalStack) -> None:
    _memory_limit_or_skip(stack)
    code = "import sys\nsys.setrecursionlimit(10**9)\ndef f(n): return f(n + 1)\nf(0)"
    assert stack.ask(f"-lang=python3 {code}") == MEMORY_KILLED
    assert stack.ask("-lang=python3 print('next')") == "next"


class HiddenCgroupsStack(LocalStack):
    """The stack with guest-server in a mount namespace where the cgroup hierarchy is hidden,
    as on a host without cgroup v2 controllers."""

    def start_process(self, name: str, argv: list[str]) -> None:
        if name == "ptyvm":
            argv = ["unshare", "--mount", "sh", "-c",
                    'mount -t tmpfs tmpfs /sys/fs/cgroup && exec "$@"', "sh", *argv]
        super().start_process(name, argv)


@pytest.mark.root
def test_without_cgroups_one_line_says_so_and_the_sweep_still_cleans_up(
        tmp_path: Path) -> None:
    with HiddenCgroupsStack(tmp_path, env={"PBOTVM_STDIN_COMMAND": ""}) as stack:
        assert stack.ask(f"-lang=python3 {DAEMON}").isdigit()
        assert stack.ask("-lang=sh echo next") == "next"
        log = stack.log("ptyvm")
    assert not processes_running("sleep", DAEMON_SECONDS)
    assert log.count("cgroups: unavailable") == 1, log


# --- keys, sockets and processes (issue 19) ---------------------------------------------------

@pytest.mark.root
def test_guest_server_says_what_each_request_gets(stack: LocalStack) -> None:
    assert ("box: each request in its own mount, IPC, PID and network (loopback only) "
            "namespaces, without keyrings, vsock or io_uring, a 128 MiB tmpfs at /tmp, "
            "/var/tmp, /dev/shm and /home/vm, everything else read-only") in stack.log("ptyvm")


class WithoutSysAdminStack(LocalStack):
    """The stack with guest-server unable to make namespaces, as in a container without
    CAP_SYS_ADMIN."""

    def start_process(self, name: str, argv: list[str]) -> None:
        if name == "ptyvm":
            argv = ["setpriv", "--bounding-set", "-sys_admin", "--", *argv]
        super().start_process(name, argv)


@pytest.mark.root
def test_without_namespaces_one_line_says_which_and_requests_still_run(tmp_path: Path) -> None:
    with WithoutSysAdminStack(tmp_path, env={"PBOTVM_STDIN_COMMAND": ""}) as stack:
        assert stack.ask("-lang=sh echo next") == "next"
        log = stack.log("ptyvm")
    assert log.count("box: unavailable (PID namespace: Operation not permitted)") == 1, log


# Stores a key NAME in each of its user's keyrings, or reads it back (ACTION); keyutils' calls
# by hand, as the Python standard library has none.
KEYRINGS = """import ctypes, errno, platform
add_key, keyctl = {"x86_64": (248, 250), "aarch64": (217, 219)}[platform.machine()]
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
def call(*args):
    got = libc.syscall(*[ctypes.c_long(a) if isinstance(a, int) else a for a in args])
    if got < 0:
        raise OSError(ctypes.get_errno(), "")
    return got
for ring, spec in (("user", -4), ("user-session", -5), ("persistent", None)):
    try:
        if spec is None:  # KEYCTL_GET_PERSISTENT: our uid's, which lasts 3 days unused
            spec = call(keyctl, 22, -1, -4)
        if ACTION == "store":
            call(add_key, b"user", NAME, b"secret", 6, spec)
            print(ring, "stored")
        else:
            key = call(keyctl, 10, spec, b"user", NAME, 0)  # KEYCTL_SEARCH
            data = ctypes.create_string_buffer(64)
            print(ring, "read", data.raw[:call(keyctl, 11, key, data, 64)].decode())
    except OSError as e:
        print(ring, errno.errorcode[e.errno])"""


def _keyrings(action: str, name: str) -> str:
    return f"-lang=python3 ACTION, NAME = {action!r}, {name.encode()!r}\n{KEYRINGS}"


@pytest.mark.root
def test_no_key_passes_from_one_request_to_the_next(stack: LocalStack) -> None:
    name = f"left-{uuid.uuid4().hex}"
    # No keyrings in a box at all: as on a kernel built without them.
    none = "user ENOSYS\nuser-session ENOSYS\npersistent ENOSYS"
    assert stack.ask(_keyrings("store", name), channel="#one") == none
    assert stack.ask(_keyrings("read", name), channel="#another") == none


def _split(marker: str) -> str:
    """Python for ``marker`` as bytes, never written whole: a program that looks for it must
    not find its own request's text."""
    half = len(marker) // 2
    return f"{marker[:half].encode()!r} + {marker[half:].encode()!r}"


REACH = """import socket
for name, port in PORTS:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        print(name, "reached")
    except OSError as e:
        print(name, e.strerror)
with socket.create_server(("127.0.0.1", 0)) as own, socket.create_connection(own.getsockname()):
    print("its own loopback works")
with open("/proc/net/dev") as devices:
    print("interfaces:", *sorted(line.split(":")[0].strip() for line in list(devices)[2:]))"""


@pytest.mark.root
def test_nothing_on_the_hosts_loopback_is_in_reach(stack: LocalStack) -> None:
    # vm-server would take a request as another nick into another channel's history.
    ports = [("vm-server", stack.server), ("serial", stack.serial), ("heartbeat", stack.heart)]
    with ThreadPoolExecutor(1) as pool:
        attack = pool.submit(stack.ask, f"-lang=python3 PORTS = {ports!r}\n{REACH}")
        start = time.monotonic()
        assert stack.ask("-lang=sh echo meanwhile") == "meanwhile"
        assert time.monotonic() - start < 1
        assert attack.result() == (
            "vm-server Connection refused\nserial Connection refused\n"
            "heartbeat Connection refused\nits own loopback works\ninterfaces: lo")


SNOOP = """import os, time
deadline = time.monotonic() + 3
while time.monotonic() < deadline:
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                line = f.read()
        except OSError:
            continue
        if MARKER in line:
            print("read:", line.replace(b"\\0", b" ").decode())
            raise SystemExit
    time.sleep(0.02)
print("processes it sees:", len(list(filter(str.isdigit, os.listdir("/proc")))))"""


@pytest.mark.root
def test_a_program_cannot_read_a_waiting_clients_code(stack: LocalStack) -> None:
    marker = f"waiting-{uuid.uuid4().hex}"
    token = uuid.uuid4().hex  # its argument, by which this test sees it run
    with ThreadPoolExecutor(1) as pool:
        snoop = pool.submit(
            stack.ask, f"-lang=python3 -args {token} MARKER = {_split(marker)}\n{SNOOP}")
        assert until(lambda: processes_running("python3", "prog.py3", token), 10)
        # Its vm-client waits with the code on its command line, queued behind the snoop.
        assert stack.ask(f"-lang=sh echo {marker}") == marker
        # The program itself and its supervisor, PID 1 of its box.
        assert snoop.result() == "processes it sees: 2"


HUNT = """import os, signal
found = []
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            if f.read().startswith(MARKER):
                found.append(int(pid))
    except OSError:
        pass
for pid in found:
    with open(f"/proc/{pid}/environ", "rb") as f:
        f.read()
    os.kill(pid, signal.SIGKILL)
print("killed", found if found else "nothing")"""


@pytest.mark.root
def test_requests_side_by_side_can_neither_see_nor_signal_each_other(
        stack: LocalStack, tmp_path: Path) -> None:
    """A second PTY VM's request beside one of the stack's: both run as this host's user vm,
    as requests over vsock run side by side as the guest's."""
    marker = f"victim-{uuid.uuid4().hex}"
    with make_stack(tmp_path, PBOTVM_TIMEOUT="5") as other, ThreadPoolExecutor(1) as pool:
        victim = pool.submit(stack.ask, f"-lang=sh (exec -a {marker} sleep 3); echo victim $?")
        assert until(lambda: processes_running(marker, "3"), 10)
        assert other.ask(f"-lang=python3 MARKER = {_split(marker)}\n{HUNT}") == (
            "killed nothing")
        assert victim.result() == "victim 0"


VSOCK = """import ctypes, errno, socket
for name, make in (("socket", lambda: socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)),
                   ("socketpair", lambda: socket.socketpair(socket.AF_VSOCK))):
    try:
        make()
        print(name, "made")
    except OSError as e:
        print(name, errno.errorcode[e.errno])
libc = ctypes.CDLL(None, use_errno=True)
params = ctypes.create_string_buffer(120)  # io_uring_setup's, 425 everywhere
made = libc.syscall(425, 1, params) >= 0
print("io_uring", "made" if made else errno.errorcode[ctypes.get_errno()])"""


@pytest.mark.root
def test_a_program_gets_no_vsock_socket(stack: LocalStack) -> None:
    # guest-server listens on vsock; io_uring makes sockets without the socket system call.
    assert stack.ask(f"-lang=python3 {VSOCK}") == (
        "socket EAFNOSUPPORT\nsocketpair EAFNOSUPPORT\nio_uring ENOSYS")


# The 32-bit system calls, which the filter's checks do not name.
INT_80 = """#include <stdio.h>
static long int80(long nr, long a, long b, long c) {
    long r;
    __asm__ volatile ("int $0x80" : "=a"(r) : "a"(nr), "b"(a), "c"(b), "d"(c) : "memory");
    return r;
}
int main(void) {
    printf("keyctl %ld\\n", int80(288, 0, -4, 1));
    printf("socket %ld\\n", int80(359, 40, 1, 0));
}"""


@pytest.mark.root
@pytest.mark.skipif(platform.machine() != "x86_64", reason="int 0x80 is x86's")
def test_int_0x80_does_not_go_round_the_filter(stack: LocalStack) -> None:
    assert stack.ask(f"-lang=c11 {INT_80}") == "keyctl -38\nsocket -38"  # ENOSYS


# --- a terminal ---------------------------------------------------------------------------------

def _take_terminal() -> None:
    """In the child, after setsid: its stdin becomes its controlling terminal."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class TerminalStack(LocalStack):
    """The stack as an operator starts it from a shell: the PTY VM, and guest-server with it,
    have the terminal as their controlling terminal."""

    def __init__(self, workdir: Path, terminal: int) -> None:
        super().__init__(workdir, env={"PBOTVM_STDIN_COMMAND": ""})
        self.terminal = terminal

    def start_process(self, name: str, argv: list[str]) -> None:
        if name != "ptyvm":
            super().start_process(name, argv)
            return
        log = self.workdir / f"{name}.log"
        self.logs[name] = log
        with open(log, "ab") as out:
            self._procs[name] = subprocess.Popen(
                argv, env=self.env, stdin=self.terminal, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True, preexec_fn=_take_terminal)


@pytest.fixture
def terminal() -> Iterator[tuple[int, int]]:
    master, slave = os.openpty()
    yield master, slave
    os.close(master)
    os.close(slave)


INJECT = """import fcntl, os, termios
try:
    tty = os.open("/dev/tty", os.O_RDWR)
    for c in "id > /tmp/injected\\n":
        fcntl.ioctl(tty, termios.TIOCSTI, c.encode())
    print("injected")
except OSError as e:
    print("/dev/tty:", e.strerror)
for fd in (0, 1, 2):
    try:
        fcntl.ioctl(fd, termios.TIOCSTI, b"x")
        print(fd, "injected")
    except OSError as e:
        print(fd, e.strerror)"""


@pytest.mark.root
def test_tiocsti_reaches_no_terminal(tmp_path: Path, terminal: tuple[int, int]) -> None:
    master, slave = terminal
    with TerminalStack(tmp_path, slave) as stack:
        # The premise: the PTY VM has the operator's terminal (field 7 of stat: tty_nr); its
        # keeper, guest-server and each request's box all start sessions of their own.
        with open(f"/proc/{stack.pid('ptyvm')}/stat") as f:
            tty_nr = int(f.read().rpartition(")")[2].split()[4])
        assert tty_nr == os.fstat(slave).st_rdev
        out = stack.ask(f"-lang=python3 {INJECT}")
        assert out == ("/dev/tty: No such device or address\n0 Inappropriate ioctl for device\n"
                       "1 Inappropriate ioctl for device\n2 Inappropriate ioctl for device")
        assert stack.ask("-lang=sh echo next") == "next"
    for fd in (master, slave):
        os.set_blocking(fd, False)
        with pytest.raises(BlockingIOError):
            os.read(fd, 100)


def _in_a_box(visible: list[Path], probe: Path) -> bool:
    """Whether ``probe`` can be read in a box that keeps ``visible`` (in a child process)."""
    pid = box.fork()
    if pid == 0:
        code = 2
        try:
            box.shut_in(Path("/home/vm"), 0, 0, MIB, visible=visible)
            code = 0 if probe.read_text() == "ours" else 1
        except OSError:
            code = 1
        finally:
            os._exit(code)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0


@pytest.mark.root
def test_guest_servers_own_code_stays_readable_in_the_box() -> None:
    # A checkout under /tmp: the fresh /tmp would hide the code gdb's driver imports.
    with tempfile.TemporaryDirectory(dir="/tmp") as checkout:
        probe = Path(checkout, "code.py")
        probe.write_text("ours")
        probe.parent.chmod(0o755)
        assert not _in_a_box([], probe)
        assert _in_a_box([Path(checkout)], probe)
