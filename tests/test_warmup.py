"""The warm-up before a real guest's snapshot (`vm up`, `libvirt up`): what it asks, and which
answers stop it. Its answers here come from this machine's guest runner; the boot itself is
in test_vm_qemu.py."""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path

import pytest

from pbotvm.guest import supervisor
from pbotvm.guest.cfamily import pch
from pbotvm.guest.cfamily import run as c_family
from pbotvm.guest.runner import RunSettings
from pbotvm.host import warmup
from pbotvm.protocol import Request, Result

REQUESTS = warmup.warmup_requests()
GDB = REQUESTS[-1]
HELLO = REQUESTS[0]


def answer(request: Request) -> Result:
    async def once() -> Result:
        supervisors = supervisor.Supervisors(RunSettings())
        try:
            return await supervisors.run(request)
        finally:
            await supervisors.aclose()

    return asyncio.run(once())


def test_the_warm_up_ends_with_code_gdb_evaluates() -> None:
    assert (GDB.id, GDB.lang) == (warmup.GDB_WARMUP_ID, "c2x")
    assert "print_last_statement(1 + 1);" in GDB.code
    assert len({request.id for request in REQUESTS}) == len(REQUESTS)


def test_a_guest_that_answers_wrongly_stops_the_warm_up() -> None:
    assert warmup.warmup_problem(GDB, "\nno output: 1 + 1 = 2\n\n") is None
    assert warmup.warmup_problem(GDB, "Success (no output).\n") == (
        "warm-up c2x `1 + 1` answered 'Success (no output).', not 'no output: 1 + 1 = 2'")
    assert warmup.warmup_problem(HELLO, "hello\n") is None
    assert warmup.warmup_problem(HELLO, "[bash is not installed in this guest: …]\n") is None
    fatal = "[Fatal error: the guest could not run the request (OSError: x)]"
    assert warmup.warmup_problem(HELLO, fatal + "\n") == (
        f"warm-up {HELLO.lang} request answered {fatal!r}")


@pytest.mark.root
def test_gdbs_warm_up_is_answered_as_expected_here() -> None:
    assert warmup.warmup_problem(GDB, answer(GDB).text) is None


@pytest.mark.root
def test_a_gdb_that_cannot_load_its_driver_stops_the_warm_up(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Where the box leaves a directory only root enters (not under /tmp).
    with tempfile.TemporaryDirectory(dir=pch.PCH_DIR.parent) as closed:
        os.chmod(closed, 0o700)
        driver = Path(closed, "gdb_driver.py")
        driver.write_text(c_family.DRIVER.read_text())
        monkeypatch.setattr(c_family, "GDB_ARGV", (*c_family.GDB_ARGV[:-1], str(driver)))
        problem = warmup.warmup_problem(GDB, answer(GDB).text)
    assert problem is not None
    assert problem.startswith("warm-up c2x `1 + 1` answered '[gdb failed: ")
