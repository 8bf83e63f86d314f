"""The warm-up before a real guest's snapshot (`vm up`, `libvirt up`): what it asks, and which
answers stop it. Its answers here come from this machine's guest runner; the boot itself is
in test_vm_qemu.py."""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
from pathlib import Path

import pytest

from pbotvm.config import Machine
from pbotvm.guest import supervisor
from pbotvm.guest.cfamily import gdb_ahead, pch
from pbotvm.guest.runner import RunSettings
from pbotvm.host import warmup
from pbotvm.host.machines.guest import WarmUpFailed
from pbotvm.image.build import Image
from pbotvm.protocol import Request, Result
from pbotvm.provision import profiles
from pbotvm.provision.profiles import FULL

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
    assert 'gdb("print 6 * 7");' in GDB.code
    assert len({request.id for request in REQUESTS}) == len(REQUESTS)


def test_a_guest_that_answers_wrongly_stops_the_warm_up() -> None:
    assert warmup.warmup_problem(GDB, "\n6 * 7 = 42\n\n") is None
    assert warmup.warmup_problem(GDB, "Success (no output).\n") == (
        "warm-up c2x `gdb(\"print 6 * 7\");` answered 'Success (no output).', not '6 * 7 = 42'")
    assert warmup.warmup_problem(HELLO, "hello\n") is None
    fatal = "[Fatal error: the guest could not run the request (OSError: x)]"
    assert warmup.warmup_problem(HELLO, fatal + "\n") == (
        f"warm-up {HELLO.lang} hello answered {fatal!r}")


@pytest.mark.parametrize(("said", "problem"), [
    ("hello\n", None),
    # clang's C89 and C99: the generated main's unused parameters, then the program's line.
    ("[warning: unused parameter 'argc' [-Wunused-parameter]]\nhello\n", None),
    ("Exit 137.\n", "warm-up java hello answered 'Exit 137.'"),
    ("[Killed: CPU time limit exceeded]\n",
     "warm-up java hello answered '[Killed: CPU time limit exceeded]'"),
    ("[java is not installed in this guest: no 'javac' (…)]\n",
     "warm-up java hello answered \"[java is not installed in this guest: no 'javac' (…)]\""),
    ("[Timed-out] hello\n", "warm-up java hello answered '[Timed-out] hello'"),
    ("x" * 400, f"warm-up java hello answered '…{'x' * 300}'"),
], ids=["hello", "warned", "killed", "cpu", "missing", "late", "long"])
def test_a_hello_that_did_not_say_hello_is_a_problem(said: str, problem: str | None) -> None:
    """A language of the image whose first answer is not its hello's would answer every
    channel so after each revert: the runtime is missing, or a limit met its compiler."""
    java = next(request for request in REQUESTS if request.lang == "java")
    assert warmup.warmup_problem(java, said) == problem


def test_vm_up_refuses_a_snapshot_when_a_language_of_the_image_failed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every warm-up runs, and then one error names each language that failed."""
    (tmp_path / "manifest.json").write_text(json.dumps(
        {"profile": "full", "packages": list(FULL.packages)}))
    failing = {"java": "Exit 137.\n", "go": "[Killed: CPU time limit exceeded]\n"}
    asked = []

    async def send(_: Machine, request: Request, *__: object, **___: object) -> str:
        asked.append(request.lang)
        if request.id == warmup.GDB_WARMUP_ID:
            return "\n6 * 7 = 42\n"
        return failing.get(request.lang, "hello\n")

    monkeypatch.setattr(warmup, "send", send)
    logged: list[str] = []
    with pytest.raises(WarmUpFailed) as failed:
        asyncio.run(warmup.for_image(Image(tmp_path), logged.append)(Machine("m")))
    assert asked == [request.lang for request in warmup.image_warmups(
        profiles.languages(FULL.packages))]
    assert str(failed.value).splitlines() == [
        "not snapshotting a guest whose warm-up failed for 2 of its languages:",
        "  warm-up go hello answered '[Killed: CPU time limit exceeded]'",
        "  warm-up java hello answered 'Exit 137.'"]
    assert logged[-2:] == ["warm-up go hello answered '[Killed: CPU time limit exceeded]'",
                           "warm-up java hello answered 'Exit 137.'"]


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
        driver.write_text(gdb_ahead.DRIVER.read_text())
        monkeypatch.setattr(gdb_ahead, "GDB_ARGV", (*gdb_ahead.GDB_ARGV[:-1], str(driver)))
        problem = warmup.warmup_problem(GDB, answer(GDB).text)
    assert problem is not None
    assert problem.startswith("warm-up c2x `gdb(\"print 6 * 7\");` answered '[gdb failed: ")
