"""gdb started ahead of its request (``gdb_ahead``): the order it waits for, and a spare
supervisor's gdb, which runs a C request that needs gdb and goes with any other."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from pbotvm import procs
from pbotvm.guest import supervisor
from pbotvm.guest.cfamily import channel, guest_gdb
from pbotvm.guest.runner import RunSettings
from pbotvm.protocol import Request, Result
from tests.test_cfamily_guest import _missing

CMDLINE = "gcc -g prog.c -o prog"


def test_an_order_comes_whole_with_the_programs_stdout(tmp_path: Path) -> None:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    output = tmp_path / ".output"
    output.write_bytes(b"")
    order = channel.Order("/home/vm/x y", "/home/vm/x y/prog", ["a", "é" * 100_000])
    fd = os.open(output, os.O_WRONLY | os.O_APPEND)

    def send() -> None:
        with ours:
            channel.send_order(ours, order, fd)

    # More than a socket holds: the order is read while it is sent, as gdb's driver does.
    with ThreadPoolExecutor(1) as pool:
        sent = pool.submit(send)
        received, received_fd = channel.receive_order(theirs.detach())
        sent.result()
    os.close(fd)
    os.write(received_fd, b"written")
    os.close(received_fd)
    assert received == order
    assert output.read_bytes() == b"written"


def test_an_order_without_the_file_is_refused() -> None:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with ours:
        ours.sendall(b'{"directory": "/", "program": "/p", "arguments": []}')
    with pytest.raises(ValueError, match="one descriptor, not 0"):
        channel.receive_order(theirs.detach())


def test_the_program_is_one_argument_of_gdbs_file_command() -> None:
    assert guest_gdb.file_argument("/home/vm/a b/it's\t\"x\"\\") == (
        "/home/vm/a\\ b/it\\'s\\\t\\\"x\\\"\\\\")
    assert guest_gdb.file_argument("/home/vm/abc/prog") == "/home/vm/abc/prog"


def c_request(body: str) -> Request:
    code = ("#include <stdio.h>\n#include <unistd.h>\n"
            f"int main(int argc, char *argv[]) {{\n{body}\n}}\n")
    return Request(lang="c11", sourcefile="prog.c", execfile="prog", cmdline=CMDLINE,
                   code=code)


def sh_request(code: str) -> Request:
    return Request(lang="sh", sourcefile="prog.sh", execfile="prog.sh", cmdline="sh prog.sh",
                   code=code)


def until(found: Callable[[], int | None], seconds: float = 10.0) -> int:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if (value := found()) is not None:
            return value
        time.sleep(0.02)
    raise AssertionError(f"nothing within {seconds} s")


def gdb_below(pid: int) -> int | None:
    for below in procs.descendants(pid):
        try:
            if Path(f"/proc/{below}/comm").read_text().strip() == "gdb":
                return below
        except OSError:
            pass
    return None


def pid_in_its_box(pid: int) -> int:
    """The pid the process has in its own PID namespace (the last of NSpid)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("NSpid:"):
            return int(line.split()[-1])
    raise AssertionError(f"no NSpid for {pid}")


def through_the_spare(request: Request) -> tuple[int, int, int, Result]:
    """``request`` through a spare supervisor, once its gdb is waiting: (that gdb's pid, its
    pid in the box, its scheduling policy, the result)."""

    async def scenario() -> tuple[int, int, int, Result]:
        supervisors = supervisor.Supervisors(RunSettings())
        try:
            supervisors.prepare()
            spare = supervisors.spare_pid
            assert spare is not None
            gdb = until(lambda: gdb_below(spare))
            policy = os.sched_getscheduler(gdb)
            in_box = pid_in_its_box(gdb)
            return gdb, in_box, policy, await supervisors.run(request)
        finally:
            await supervisors.aclose()

    return asyncio.run(scenario())


needs_the_c_family = pytest.mark.skipif(_missing() is not None, reason=_missing() or "")


@pytest.mark.root
@needs_the_c_family
def test_a_spares_gdb_waits_idle_and_runs_the_c_request_that_needs_gdb() -> None:
    # The direct run dies; the run under gdb prints the pid of the process that started the
    # program: gdb (its shell execs the program).
    gdb, in_box, policy, result = through_the_spare(
        c_request('printf("%d\\n", (int) getppid()); fflush(stdout);\n'
                  "int *p = 0; *p = 1;"))
    assert policy == os.SCHED_IDLE
    assert result.text.startswith(f"{in_box}\n"), result.text
    assert "Program received signal SIGSEGV" in result.text
    assert not procs.running(gdb)


@pytest.mark.root
@needs_the_c_family
def test_a_request_that_needs_no_gdb_goes_without_the_spares() -> None:
    # Nothing of it is left in the box, not even what it started (gdb runs `iconv -l`):
    # the supervisor and sh alone.
    gdb, _, _, result = through_the_spare(sh_request("set -- /proc/[0-9]*; echo $#"))
    assert result.text == "2\n"
    assert not procs.running(gdb)
    gdb, _, _, result = through_the_spare(c_request('puts("hello");'))
    assert result.text == "hello\n"
    assert not procs.running(gdb)


@pytest.mark.root
@needs_the_c_family
def test_a_program_sees_the_same_stack_under_gdb_started_ahead_as_run_directly() -> None:
    # One program (its input says whether it dies), one work directory name's length: the
    # addresses depend on the environment and the program alone (none is randomised).
    show = c_request('printf("%p %p\\n", (void *) &argc, (void *) argv[0]); fflush(stdout);\n'
                     "if (getchar() == 'x') { int *p = 0; *p = 1; }")
    _, _, _, direct = through_the_spare(show)
    _, _, _, under_gdb = through_the_spare(dataclasses.replace(show, input="x"))
    assert "Program received signal SIGSEGV" in under_gdb.text
    assert under_gdb.text.split("\n")[0] == direct.text.split("\n")[0], (direct, under_gdb)
