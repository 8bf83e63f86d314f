import os
import pwd
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import pytest

from pbotvm import langspec, procs
from pbotvm.guest import runner, running, user_access
from pbotvm.guest.cfamily import command_line, pch
from tests.support.stack import LocalStack

T = TypeVar("T")

# A daemon as a program makes one (python3): fork, setsid, fork again, none of our fds kept.
# It prints its pid, which is its box's (the guest sees another one): find it by its command
# line, `sleep DAEMON_SECONDS`.
DAEMON_SECONDS = "1000.25"
DAEMON = f"""import os
r, w = os.pipe()
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.write(w, str(os.getpid()).encode())
        null = os.open("/dev/null", os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        os.execvp("sleep", ["sleep", "{DAEMON_SECONDS}"])
    os._exit(0)
os.close(w)
print(os.read(r, 100).decode())"""


def until(condition: Callable[[], T], timeout: float, interval: float = 0.02) -> T:
    """Poll ``condition`` until it returns a true value, or ``timeout`` seconds have passed;
    returns its last value (false on time-out)."""
    deadline = time.monotonic() + timeout
    while not (value := condition()) and time.monotonic() < deadline:
        time.sleep(interval)
    return value


def processes_running(*argv: str) -> list[int]:
    """The pids of live processes whose command line is exactly ``argv``."""
    wanted = "\0".join(argv).encode() + b"\0"
    found = []
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit() and Path(f"/proc/{entry}/cmdline").read_bytes() == wanted:
                found.append(int(entry))
        except OSError:
            pass
    return found


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "root: starts guest-server, which runs as root and drops "
                            "each program to user vm")


@pytest.fixture(autouse=True)
def _not_a_subreaper() -> Iterator[None]:
    """A test that runs the guest's sandbox in this process makes it a child subreaper: the
    orphans of later tests' daemons (libvirtd's QEMU probes) would become its zombies, and
    libvirtd waits for ever for them to go. Each test ends as it began."""
    yield
    procs.become_subreaper(False)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Pure tests run anywhere; the others need root and the user vm (./dev setup)."""
    reason = None
    if os.geteuid() != 0:
        reason = "needs root (run ./dev test as root or with sudo)"
    else:
        try:
            pwd.getpwnam("vm")
        except KeyError:
            reason = "needs the user vm: run ./dev setup"
    if reason is None:
        if any(item.get_closest_marker("root") for item in items):
            _stop_unless_vm_can_read_what_it_needs()
        return
    for item in items:
        if item.get_closest_marker("root") or item.get_closest_marker("vm"):
            item.add_marker(pytest.mark.skip(reason=reason))


def _stop_unless_vm_can_read_what_it_needs() -> None:
    """The tests that run programs as vm answer wrongly, one by one, where guest-server would
    refuse to start (a checkout in a 0700 directory): stop at once with its line instead."""
    runner.make_roots_places(runner.RunSettings())
    if (refusal := user_access.problem("vm")) is not None:
        pytest.exit(f"guest-server would refuse to start: {refusal}",
                    returncode=pytest.ExitCode.USAGE_ERROR)


class AttachedStack(LocalStack):
    """vm-server and vm-client in front of a guest that is already running (QEMU, libvirt)."""

    def __init__(self, workdir: Path, serial: int, heart: int, env: dict[str, str],
                 revert_command: str | None) -> None:
        super().__init__(workdir, serial=serial, heart=heart,
                         env={"PBOTVM_TIMEOUT": "5", "PBOTVM_STDIN_COMMAND": "", **env})
        if revert_command is None:
            del self.env["PBOTVM_REVERT_COMMAND"]  # libvirt reverts it
        else:
            self.env["PBOTVM_REVERT_COMMAND"] = revert_command

    def start_vm(self) -> None:
        pass


@pytest.fixture(scope="session", autouse=True)
def _preludes_built() -> None:
    """Each C dialect's prelude built, as `vm up`'s warm-up builds them in the guest: else a
    test's first request of a dialect pays for it (g++ takes seconds) within its time-out."""
    if os.geteuid() != 0:
        return  # the guest builds them as root
    for spec in langspec.LANGUAGES:
        if spec.run is langspec.RunMode.CFAMILY:
            argv = command_line.compiler_argv(spec.command_line("", paste=False))
            pch.built(argv, spec.sourcefile, spec.prelude, {"PATH": running.PATH})


def make_stack(tmp: Path, **env: str) -> LocalStack:
    return LocalStack(tmp, env={"PBOTVM_STDIN_COMMAND": "", **env})


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """The whole pipeline: PTY VM, vm-server, vm-client as a subprocess."""
    with make_stack(tmp_path_factory.mktemp("stack"), PBOTVM_TIMEOUT="5",
                    PBOTVM_HEART_STALE="7") as s:
        yield s


@contextmanager
def bystander(stack: LocalStack, within: float = 1.0) -> Iterator[list[float]]:
    """Another client (its own nick and channel) asking ``echo`` again and again while the
    block runs; afterwards, each of its answers must have come within ``within`` seconds.
    Yields the list of its answer times."""
    times: list[float] = []
    replies: list[str] = []
    done = threading.Event()

    def ask() -> None:
        n = 0
        while not done.is_set():
            start = time.monotonic()
            replies.append(stack.ask(f"-lang=sh echo calm {n}", nick="bystander",
                                     channel="#bystander"))
            times.append(time.monotonic() - start)
            n += 1
            done.wait(0.1)

    thread = threading.Thread(target=ask)
    thread.start()
    try:
        yield times
    finally:
        done.set()
        thread.join()
    assert replies == [f"calm {n}" for n in range(len(replies))]
    assert times and max(times) < within, times
