"""Last statements and print()s of each scalar type, against the original's replies
(tests/data/cfamily_values.json, recorded from it by record_cfamily_values.py): through the
whole local stack; and in the guest's runner with a gdb that cannot run, where the program
itself must answer the statements it prints (``last_value``) and leave the others to gdb.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from pbotvm.guest import runner
from pbotvm.guest.cfamily import gdb_ahead, last_value, pch, run
from pbotvm.host.request import options
from pbotvm.host.request.languages import find_language
from pbotvm.host.request.vmexec import make_request
from pbotvm.protocol import Request
from tests.support.stack import LocalStack

ROWS = json.loads((Path(__file__).parent / "data" / "cfamily_values.json").read_text())["rows"]
# Rows gdb answers: a value the program cannot show to print as gdb does, a statement that is
# not plain arithmetic or not wrapped (main's locals), C++ (no _Generic), or a run the
# sanitizer stops.
BY_GDB = {
    "cpp_comparison", "signed_overflow", "clang_unsigned_wraps", "int_by_zero",
    "inner_scope_gone", "enum_constant", "enum_constant_minus_one", "enum_unnamed_value",
    "enum_typedef", "enum_plus_one",
    "null_deref", "array", "nan", "macro_int_max", "macro_eof", "wide_char", "shift",
    "char_literal", "hex_literal", "uninitialised", "pointer_deref", "bool_sum", "bool_not",
    "unsigned_short_product", "print_nothing_else", "enum_shadowed",
    # a type gdb names otherwise (a typedef's name, sizeof as int) or that is not a basic one
    "whatis_size_t", "ptype_size_t", "whatis_uint8", "whatis_array", "whatis_sizeof",
    "whatis_char_literal", "whatis_second_declarator", "whatis_volatile", "whatis_enumerator",
    "whatis_double_pointer_sum",
    "print_in_string",  # a helper's name anywhere in the code runs it under gdb
    # a pointer gdb names (<g>), one that is not a bare name, a string gdb shows otherwise
    # (repeats, bytes beyond ASCII), a function pointer
    "global_pointer", "string_pointer_sum", "string_eleven_same", "string_utf8",
    "string_escape_byte", "string_in_static_array", "function_pointer",
}
# The original's test instance had its prelude.h outside the system headers: its warnings
# showed (as in test_cfamily_stack); the value after them is compared all the same.
HARNESS = {"c89", "clang89"}
# name -> (why, our reply), as in test_cfamily_stack
DIFFERENT = {"cpp_comparison": ("the original never shipped prelude.hpp (README: C++ runs)",
                                "no output: x > 2 = true\n")}
_LANG = re.compile(r"-lang=(\S+) ")
# An address of a program's data differs from the original's (ours links with gold) and
# between our two programs of a request (the one that prints its values has the printer);
# on the stack, with the environment it runs in.
_ADDRESS = re.compile(r"0x[0-9a-f]{5,}")


def _addressless(text: str) -> str:
    return _ADDRESS.sub("0x…", text)


def _params() -> list[object]:
    return [pytest.param(row["name"], row["code"], row["reply"], id=row["name"])
            for row in ROWS]


def test_the_table_has_both_kinds_of_rows() -> None:
    names = {row["name"] for row in ROWS}
    assert names > BY_GDB and len(names - BY_GDB) >= 40


@pytest.mark.root
@pytest.mark.parametrize(("name", "code", "reply"), _params())
def test_replies_as_the_original(stack: LocalStack, name: str, code: str, reply: str) -> None:
    got = stack.client(json.dumps({"nick": "alice", "channel": f"#{name}", "code": code}))
    if name in HARNESS:
        assert got.stdout.splitlines()[-1] == reply.splitlines()[-1]
    else:
        assert _addressless(got.stdout) == _addressless(
            DIFFERENT[name][1] if name in DIFFERENT else reply)


def _request(code: str) -> Request:
    match = _LANG.match(code)
    lang = match[1] if match else "c2x"
    language = find_language(lang)
    assert language is not None
    parsed = options.parse_standard_options(code[match.end():] if match else code,
                                    language.take_custom_options)
    source = language.preprocess(parsed.code, parsed.custom)
    return make_request(language, lang, parsed, source, stdin="")


def _answer_without_gdb(monkeypatch: pytest.MonkeyPatch, request: Request) -> str:
    """The guest's answer with a gdb that fails at once: the program's own, where it prints
    its values."""
    with monkeypatch.context() as broken:
        broken.setattr(gdb_ahead, "GDB_ARGV", ("false",))
        return runner.run_request(request, runner.RunSettings()).text


@pytest.fixture
def pch_dir(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The prelude built where the user reads it (pytest's directories only root may
    enter)."""
    made = Path(tempfile.mkdtemp(prefix="pbotvm-pch-"))
    made.chmod(0o755)
    monkeypatch.setattr(pch, "PCH_DIR", made)
    yield
    shutil.rmtree(made)


@pytest.mark.root
@pytest.mark.skipif(shutil.which("gcc") is None or shutil.which("clang") is None,
                    reason="needs gcc and clang")
@pytest.mark.parametrize(("name", "code", "reply"), _params())
def test_the_program_answers_as_gdb_would(pch_dir: None, monkeypatch: pytest.MonkeyPatch,
                                          name: str, code: str, reply: str) -> None:
    """With a gdb that fails at once, the guest's answer is the one gdb gives when the
    program does not print the value (or gdb's failure, for the rows gdb answers)."""
    request = _request(code)
    without_gdb = _answer_without_gdb(monkeypatch, request)
    if name in BY_GDB:
        assert "[gdb failed: exit status 1]" in without_gdb
        return
    with monkeypatch.context() as gdb_only:
        gdb_only.setattr(last_value, "program", lambda code: None)
        by_gdb = runner.run_request(request, runner.RunSettings()).text
    assert _addressless(without_gdb) == _addressless(by_gdb)


@pytest.mark.root
@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")
@pytest.mark.parametrize("code", [
    'char *s = "hi"; printf("%p\\n", (void *) s); print(s);',
    'int x = 4; int *p = &x; printf("%p\\n", (void *) p); print(p);',
    'char *s = malloc(4); strcpy(s, "ab"); printf("%p\\n", (void *) s); print(s);',
])
def test_a_pointer_the_program_prints_is_where_it_points(
        pch_dir: None, monkeypatch: pytest.MonkeyPatch, code: str) -> None:
    """The address is the program's own (that program's: not the original's, nor that of
    the program gdb would have run), with a gdb that cannot run."""
    text = _answer_without_gdb(monkeypatch, _request(code))
    addresses = _ADDRESS.findall(text)
    assert len(addresses) == 2 and addresses[0] == addresses[1], text


@pytest.mark.root
@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")
@pytest.mark.parametrize(("code", "compiles", "warning", "value"), [
    # the program that prints its value said nothing as it built: its compile is the only one
    ("1 + 1", 1, "", "no output: 1 + 1 = 2"),
    ('char *s = "hi"; print(s);', 1, "", 's = 0x… "hi"'),
    # a warning: the code without the printer is compiled for it, the printer's program kept
    ("double x = 5; x / 0", 2, "warning: division by zero", "no output: x / 0 = inf"),
])
def test_a_value_program_that_builds_without_a_word_is_the_only_compile(
        pch_dir: None, monkeypatch: pytest.MonkeyPatch, code: str, compiles: int,
        warning: str, value: str) -> None:
    argvs: list[list[str]] = []
    compile_once = run._Job.compile_once

    def counted(job: run._Job, argv: list[str]) -> object:
        argvs.append(argv)
        return compile_once(job, argv)

    monkeypatch.setattr(run._Job, "compile_once", counted)
    text = _addressless(_answer_without_gdb(monkeypatch, _request(code)))
    assert text.strip("\n").endswith(value) and len(argvs) == compiles
    assert (warning in text) if warning else "warning" not in text
