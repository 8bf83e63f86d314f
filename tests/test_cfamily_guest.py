"""C-family requests through the guest's runner, against the original guest's answers.

tests/data/cfamily_guest.json holds requests exactly as the original (Perl) host sent them
(prelude, generated main, print_last_statement wrappers, astyle) and the raw result text the
original guest answered, observed from a running original; its comment and each row's
``deviation`` say where our answer differs on purpose. Needs root, user vm, gcc, g++, gdb, and
prelude.h/prelude.hpp installed in /usr/include.
"""

import asyncio
import dataclasses
import filecmp
import json
import os
import pwd
import re
import shutil
import tempfile
from pathlib import Path

import pytest

from pbotvm.guest import supervisor
from pbotvm.guest.cfamily import gdb_ahead, pch
from pbotvm.guest.limits import Limits
from pbotvm.guest.runner import RunSettings
from pbotvm.protocol import Request, Result
from pbotvm.provision.payload import HEADERS, PACKAGE

TABLE = json.loads((Path(__file__).parent / "data" / "cfamily_guest.json").read_text())["cases"]
SLOW = {"infinite_loop", "sleep", "deep_recursion", "alarm_kills", "megabytes_of_output"}

# What differs between machines and runs: addresses, pids, work directories, stack garbage.
_NORMALISE = [
    (re.compile(r"0x[0-9a-f]{5,}"), "0x…"),
    (re.compile(r"\+0x[0-9a-f]+\)"), "+0x…)"),
    (re.compile(r"==\d+=="), "==PID=="),
    (re.compile(r"/home/[^/\s]+/[^/\s]+/"), "/WORK/"),
    (re.compile(r"old_mask = \{__val = \{\d+\}\}"), "old_mask = {__val = {…}}"),
    # pointer_printed's x is never initialised: its value is whatever the environment (its
    # size, e.g. PATH) left on the stack.
    (re.compile(r"<local variables: x = -?\d+; p = 0x0>"), "<local variables: x = …; p = 0x0>"),
]


def normalise(text: str) -> str:
    for pattern, replacement in _NORMALISE:
        text = pattern.sub(replacement, text)
    return text


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "runs programs as user vm: needs root"
    try:
        pwd.getpwnam("vm")
    except KeyError:
        return "needs user vm (./dev setup)"
    for tool in ("gcc", "g++", "gdb"):
        if shutil.which(tool) is None:
            return f"needs {tool}"
    for header in sorted(PACKAGE.glob(HEADERS)):
        installed = Path("/usr/include") / header.name
        if not installed.exists() or not filecmp.cmp(header, installed, shallow=False):
            return f"needs {header} installed as {installed}"
    return None


def run(request: Request, settings: RunSettings | None = None) -> Result:
    async def once() -> Result:
        supervisors = supervisor.Supervisors(settings or RunSettings())
        try:
            return await supervisors.run(request)
        finally:
            await supervisors.aclose()

    return asyncio.run(once())


def to_request(fields: dict[str, str]) -> Request:
    return Request(lang=fields["lang"], sourcefile=fields["sourcefile"],
                   execfile=fields["execfile"], cmdline=fields["cmdline"], code=fields["code"],
                   input=fields.get("input", ""), arguments=fields.get("arguments", ""),
                   factoid=fields.get("factoid"))


def test_the_table_covers_what_it_should() -> None:
    assert len(TABLE) >= 40
    langs = {case["request"]["lang"] for case in TABLE}
    assert {"c2x", "c89", "c99", "c11", "clang", "clang89", "clang99", "clang11", "clang2x",
            "cpp", "c++", "clang++"} <= langs
    for case in TABLE:
        assert "expected" in case or "expected_start" in case, case["name"]
        if case["deviation"] is None and "expected" in case:
            assert case["expected"] == case["original"], case["name"]


@pytest.mark.root
@pytest.mark.skipif(_missing() is not None, reason=_missing() or "")
@pytest.mark.parametrize("case", [
    pytest.param(case, id=case["name"], marks=[pytest.mark.slow] if case["name"] in SLOW else [])
    for case in TABLE])
def test_guest_answers_as_the_original(case: dict) -> None:
    text = run(to_request(case["request"])).text
    if "expected" in case:
        assert normalise(text) == normalise(case["expected"])
    if "expected_start" in case:
        assert normalise(text).startswith(normalise(case["expected_start"]))
    if "expected_end" in case:
        assert text.endswith(case["expected_end"])


def _symbols_read(request: Request) -> dict[str, str]:
    """Each library's "Syms Read" column, from the program's gdb("info sharedlibrary")."""
    rows = re.findall(r"^0x\S+\s+0x\S+\s+(Yes|No)\b.*?/([^/\s]+)$", run(request).text, re.M)
    return {library.split(".so")[0]: read for read, library in rows}


@pytest.mark.root
@pytest.mark.skipif(_missing() is not None, reason=_missing() or "")
def test_gdb_leaves_the_cxx_runtime_unread_only_for_a_program_without_it() -> None:
    # symbols.py: a C program meets the C++ runtime only as UBSan's, and never runs it.
    c_case = next(case["request"] for case in TABLE if case["request"]["lang"] == "c2x")
    header, _ = c_case["code"].split("int main(", 1)
    c = _symbols_read(dataclasses.replace(
        to_request(c_case),
        code=header + 'int main(void) { gdb("info sharedlibrary"); return 0; }\n'))
    assert c["libstdc++"] == "No"
    assert c["libc"] == c["libm"] == c["libubsan"] == "Yes", c
    cxx_case = next(case["request"] for case in TABLE if case["request"]["lang"] == "cpp")
    cxx = _symbols_read(dataclasses.replace(
        to_request(cxx_case), code=cxx_case["code"].split("int main(", 1)[0]
        + 'int main() { std::cout << 1; gdb("info sharedlibrary"); }\n'))
    assert cxx["libstdc++"] == cxx["libc"] == "Yes", cxx


def _case(name: str) -> Request:
    return to_request(next(case["request"] for case in TABLE if case["name"] == name))


@pytest.mark.skipif(_missing() is not None, reason=_missing() or "")
def test_a_gdb_that_cannot_load_its_driver_is_an_error_answer(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # As with pbotvm installed under /root: gdb warns, exits 0, and the answer to every code
    # gdb evaluates was "Success (no output).". The directory only root enters is where the
    # box leaves it (not under /tmp).
    with tempfile.TemporaryDirectory(dir=pch.PCH_DIR.parent) as closed:
        os.chmod(closed, 0o700)
        driver = Path(closed, "gdb_driver.py")
        driver.write_text(gdb_ahead.DRIVER.read_text())
        monkeypatch.setattr(gdb_ahead, "GDB_ARGV", (*gdb_ahead.GDB_ARGV[:-1], str(driver)))
        text = run(_case("declarations_only")).text
    assert re.fullmatch(rf"\[gdb failed: .*{re.escape(str(driver))}: Permission denied\.?\]\n",
                        text), text


@pytest.mark.skipif(_missing() is not None, reason=_missing() or "")
def test_gdb_out_of_cpu_time_is_its_time_out() -> None:
    # gdb walking up 200000 frames for its report spends as much CPU as time: when the CPU
    # limit came first, it had answered "Success (no output).".
    result = run(_case("deep_recursion"), RunSettings(limits=Limits(cpu_seconds=1)))
    assert result.text == "[gdb time-out]\n"
