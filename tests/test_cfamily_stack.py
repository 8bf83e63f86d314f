"""C as channels type it, through the whole local stack (vm-client -> vm-server -> PTY guest),
against the replies the original gave for the same lines.

The rows come from two tables recorded from a running original (Perl host and guest on PTYs,
620ebe0e): tests/data/cfamily_preprocess.json (the preprocessing: bare statements, functions,
main wrapping, options, each dialect) and tests/data/cfamily_filters.json (the output:
warnings, errors, crashes, sanitizers, gdb helpers). Where our reply differs, ``DIFFERENT``
says why and what we answer, and ``NOT_COMPARABLE`` names the rows whose reply depends on
the machine (addresses, stack garbage, the test instance's paths).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import make_stack
from tests.support.stack import LocalStack

DATA = Path(__file__).parent / "data"
# The original's harness ran programs as user orig2 in /home/orig2/<pid>/; our filters remove
# our own work directory, so a link error does not leak it (the original's did).
_ORIGINAL_WORKDIR = re.compile(r"/home/orig\d+/\d+/")
# Addresses and pids, and the offsets in a sanitizer's backtrace (our prelude.h is our own,
# so the code's layout differs).
_VOLATILE = [(re.compile(r"0x[0-9a-f]{5,}"), "0x…"), (re.compile(r"==\d+=="), "==PID=="),
             (re.compile(r"\(prog\+0x[0-9a-f]+\)"), "(prog+0x…)")]

HARNESS = "the test instance's prelude.h was not a system header: its warnings showed"
GARBAGE = "prints an uninitialised value, whatever the environment left on the stack"
PRELUDE_LINES = "names a line of prelude.h, and ours is our own header"
MISSING_TENDRA = ("[Notice: TenDRA is missing support for candide extensions; use `cc` or "
                  "`clang` instead.]\n[tendra is not installed in this guest: no 'tcc' (Debian "
                  "does not package it)]\n")
JAVA_2023 = "the 2023 Java prelude did not compile (import java.*;); ours is HEAD's"

NOT_COMPARABLE = {
    "clang99_sum": HARNESS, "werror_no_fatal": HARNESS, "c89_comment": HARNESS,
    "format_b_c89_lang": HARNESS, "gdb_too_many_args_clang": HARNESS,
    "define_null_unterminated": HARNESS,
    "warning_in_f_then_main": GARBAGE, "unused_and_uninit": GARBAGE,
    "clang_unused_warning": GARBAGE, "main_first_then_f": GARBAGE,
    "format_int_string": "prints a string's address as %d",
    "format_b_c99_pedantic": GARBAGE,
    "gdb_info_macro_prelude": PRELUDE_LINES, "gdb_bt": PRELUDE_LINES,
    "tendra_private": "recorded as a private message",
}
# name -> (why, our reply)
DIFFERENT: dict[str, tuple[str, str]] = {
    "tendra_sum": ("TenDRA is not packaged: one line says so", MISSING_TENDRA),
    "tendra_hello": ("TenDRA is not packaged: one line says so", MISSING_TENDRA),
    "java_println": (JAVA_2023, "hi\n"),
    "java_statements": (JAVA_2023, "10\n"),
    "java_method": (JAVA_2023, "16\n"),
    "java_for_loop": (JAVA_2023, "012\n"),
    "java_comments": (JAVA_2023, "2\n"),
    "java_import": ("the original's Java run step was broken (Success (no output).)", "[1]\n"),
    "java_noheaders": ("the original's Java run step was broken (Success (no output).)", "1\n"),
    "java_nomain_class": ("fix 23: the code after the last function is kept", "x\n"),
    "java_class_with_main": ("fix 23: the code after the last function is kept", "x\n"),
    "cpp_error": ("the original never shipped prelude.hpp",
                  " In function 'int main()':\n error: 'foo' was not declared in this scope\n"),
    "watch_timeout": ("fix 24: a watchpoint reports and the run goes on, no 8 s time-out",
                      "\nHardware watchpoint 4: x\n\n\n\nHardware watchpoint 4: x\n\n"
                      "Old value = 0\nNew value = 1\n"),
    "whatis_char_literal": ("fix 25a: whatis is not wrapped, and no Perl warnings",
                            "\n'a' = int\n"),
    "ptype_then_whatis_last": ("fix 25a: whatis is not wrapped, and no Perl warnings",
                               "\ns = char *\n\n\ns + 1 = char *\n"),
    "whatis_inside_last_statement": (
        "no Perl warnings (the user wrapped whatis; gdb expands it and waits, as there)",
        "\nThe program being debugged stopped while in a function called from GDB.\n"
        "Evaluation of the expression containing the function\n will be abandoned.\n"
        "When the function is done executing, GDB will silently stop.\n\n[gdb time-out]\n"),
}


def _rows() -> list[Any]:
    rows = []
    for row in json.loads((DATA / "cfamily_preprocess.json").read_text()):
        if row.get("portable", True):
            rows.append((row["name"], row["lang"], row["input"], row["stdin"], row["reply"]))
    for row in json.loads((DATA / "cfamily_filters.json").read_text())["rows"]:
        # Its code was sent as written: -lang= in it, or the default language.
        if row["source"] == "observed" and not row["paste"] and row.get("code"):
            lang = re.match(r"(?:-lang=(\S+) )?", row["code"])[1] or "c2x"  # type: ignore[index]
            rows.append((row["name"], lang, row["code"], None, row["reply"]))
    return [pytest.param(*row, id=row[0], marks=[pytest.mark.skip(NOT_COMPARABLE[row[0]])]
                         if row[0] in NOT_COMPARABLE else []) for row in rows]


def _comparable(text: str) -> str:
    text = _ORIGINAL_WORKDIR.sub("", text)
    for pattern, replacement in _VOLATILE:
        text = pattern.sub(replacement, text)
    return text


def test_the_table_is_big_and_covers_each_dialect() -> None:
    rows = [param.values for param in _rows()]
    assert len(rows) >= 150
    assert {"c89", "c99", "c11", "c2x", "clang", "clang99", "clang11", "cpp", "c++",
            "java"} <= {row[1] for row in rows}


@pytest.mark.root
@pytest.mark.parametrize(("name", "lang", "code", "stdin", "reply"), _rows())
def test_c_as_channels_type_it(stack: LocalStack, name: str, lang: str, code: str,
                               stdin: str | None, reply: str) -> None:
    line = code if lang == "c2x" or code.startswith("-lang=") else f"-lang={lang} {code}"
    if stdin:
        line += f" -stdin {stdin}"
    # A channel per row: "Same output." must not answer a repeated long reply.
    got = stack.client(json.dumps({"nick": "alice", "channel": f"#{name}", "code": line})).stdout
    want = DIFFERENT[name][1] if name in DIFFERENT else reply
    assert _comparable(got) == _comparable(want)


@pytest.mark.root
@pytest.mark.slow
def test_a_spinning_program_under_gdb_ends_at_guest_gdbs_time_out(tmp_path: Path) -> None:
    # The original's limits: 8 s for guest-gdb, within vm-server's 10 s.
    with make_stack(tmp_path, PBOTVM_TIMEOUT="10") as stack:
        assert stack.ask("int x = 1; print(x); for (;;) ;") == "\nx = 1\n\n[gdb time-out]"
        assert stack.ask("1+1") == "no output: 1 + 1 = 2"


@pytest.mark.root
@pytest.mark.parametrize(("code", "reply"), [
    # Megabytes under gdb: cut, with the count of what was left out.
    ("int x = 1; print(x); for (int i = 0; i < 3000000; i++) putchar('x');",
     re.compile(r"\nx = 1\n\nx+\n\[\.\.\. output truncated: \d+ more bytes\]", re.DOTALL)),
    # Forks while gdb follows the parent: the child's line and the parent's both come back.
    ('int x = 1; print(x); if (fork() == 0) { puts("child"); return 0; } sleep(1); '
     'puts("parent");', "\nx = 1\n\nchild\nparent"),
])
def test_gdb_runs_that_misbehave_get_a_bounded_answer(stack: LocalStack, code: str,
                                                      reply: str | re.Pattern[str]) -> None:
    got = stack.ask(code, channel="alice")
    if isinstance(reply, str):
        assert got == reply
    else:
        assert reply.fullmatch(got), got[:200] + "..." + got[-200:]
    assert stack.ask("1+1", channel="alice") == "no output: 1 + 1 = 2"
