"""The quicker C compile (the prelude precompiled, gold linking) answers exactly as the usual
one, and root never compiles with options a user chose."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from pbotvm.guest import runner
from pbotvm.guest.cfamily import command_line, gdb_choice, pch
from pbotvm.guest.cfamily.run import _Job
from pbotvm.host import options
from pbotvm.host.languages import find_language
from pbotvm.host.vmexec import make_request
from pbotvm.langspec import LangSpec, find
from pbotvm.protocol import Request


def _c2x() -> LangSpec:
    spec = find("c2x")
    assert spec is not None
    return spec


C2X = _c2x()


def test_only_the_languages_own_command_line_is_trusted() -> None:
    assert pch.default_command_line(C2X, C2X.command_line("", paste=False))
    assert pch.default_command_line(C2X, C2X.command_line("", paste=True))
    assert not pch.default_command_line(C2X, C2X.command_line("-include /etc/shadow", False))
    assert not pch.default_command_line(C2X, C2X.command_line("-O2", paste=False))


def test_the_prelude_becomes_blank_lines() -> None:
    code = C2X.prelude + "int main(void)\n{\n}\n"
    blanked = pch.split_prelude(code, C2X.prelude)
    assert blanked is not None and blanked.splitlines()[-3:] == ["int main(void)", "{", "}"]
    assert blanked.count("\n") == code.count("\n") and not blanked.strip("\n").startswith("#")
    assert pch.split_prelude("#include <stdio.h>\n" + code, C2X.prelude) is None


def test_the_functions_are_compiled_after_the_preludes_macros() -> None:
    assert pch.functions_source(C2X.prelude).splitlines() == [
        "#define _XOPEN_SOURCE 9001", "#define __USE_XOPEN", *[""] * 4, "#include <prelude.h>"]
    cpp = find("cpp")
    assert cpp is not None
    source = pch.functions_source(cpp.prelude)
    assert "#include" not in source.replace("#include <prelude.h>", "")
    assert source.endswith("#endif\n\n\n#include <prelude.h>\n")


def test_header_options_drop_source_output_and_libraries() -> None:
    argv = ["gcc", "-g3", "prog.c", "-std=c2x", "-lm", "-o", "prog", "-Wall"]
    assert pch.header_options(argv, "prog.c") == ["-g3", "-std=c2x", "-Wall"]
    assert pch.header_options(["clang", "prog.c"], "prog.c") is None


@pytest.mark.parametrize(("text", "spoke"), [
    ("/tmp/ccZLCsMg.o:w.c:function main: warning: the use of `tmpnam' is dangerous", True),
    ("/usr/bin/ld.gold: error: cannot find -lfoo", True),
    ("prog.c:3:5: warning: unused variable 'x' [-Wunused-variable]", False),
    ("", False),
])
def test_what_gold_says_is_recognised(text: str, spoke: bool) -> None:
    assert command_line.gold_spoke(text) is spoke


def request(code: str) -> Request:
    language = find_language("c2x")
    assert language is not None
    parsed = options.parse_standard_options(code, language.take_custom_options)
    source = language.preprocess(parsed.code, parsed.custom)
    return make_request(language, "c2x", parsed, source, stdin="")


@pytest.fixture
def pch_dir(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The prelude's build directory, as in the guest: the user reads it (tmp_path's parents
    only root may enter)."""
    made = Path(tempfile.mkdtemp(prefix="pbotvm-pch-"))
    made.chmod(0o755)
    monkeypatch.setattr(pch, "PCH_DIR", made)
    yield made
    shutil.rmtree(made)


# Names that differ from run to run: the compiler's object file, the work directory.
_RANDOM_NAMES = re.compile(r"/tmp/cc\w+\.o|/run-\w+/")


def answer(code: str) -> str:
    return _RANDOM_NAMES.sub("…", runner.run_request(request(code), runner.RunSettings()).text)


@pytest.mark.root
@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")
@pytest.mark.parametrize(("code", "precompiles"), [
    ('puts("hello");', True),
    ('printf("%b %\'#b %08b\\n", 10u, 300u, 5u);', True),  # prelude.h's functions, linked
    ("prelude_binary_t b = 5; printf(\"%llb\\n\", b);", True),  # its type stays declared
    ("int prelude_binary_split; puts(\"x\");", False),  # a name of its own: as usual
    ("void gdb(char *c) { } puts(\"x\");", False),  # gdb is defined there
    ('int x; printf("%d\\n", 3 / 1); return 2;', True),
    ('#define _XOPEN_SOURCE 700\\nputs("a note names the prelude\'s line");', True),
    ("char *p = 0; strcpy(p, \"x\");", True),  # a crash: gdb reports on this binary
    # Built without debugging information, crashes, is built again with it for gdb.
    ("puts(\"before\"); char *p = 0; *p = 1;", True),
    ("int x = 5, y = 6;", True),  # prints nothing: gdb shows the locals
    ("int x = 5; fprintf(stderr, \"%d\\n\", x);", True),  # prints nothing on stdout after all
    ("int f(void) { return undefined(); } puts(\"link error\");", True),
    ("1+1", True),  # two compiles: the first precompiled, the second (for gdb) not
    ("INT_MAX", True),  # gdb needs the macro: its program is built the usual way
    ("int x; x = 5; print(x);", False),  # gdb runs it: no precompiled prelude
])
def test_quick_compile_answers_as_the_usual_one(code: str, precompiles: bool, pch_dir: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    quick = answer(code)
    assert bool(list(pch_dir.glob("*.h.gch"))) is precompiles
    assert bool(list(pch_dir.glob("*.o"))) is precompiles
    monkeypatch.setattr(_Job, "quick_compile", lambda *args, **kwargs: None)
    assert quick == answer(code)


@pytest.mark.root
@pytest.mark.skipif(shutil.which("gcc") is None or shutil.which("gdb") is None,
                    reason="needs gcc and gdb")
def test_a_direct_run_has_its_stack_where_gdb_puts_it(monkeypatch: pytest.MonkeyPatch) -> None:
    code = 'int x; printf("%p\\n", (void *) &x);'
    direct = answer(code)
    assert direct.startswith("0x7ff")
    monkeypatch.setattr(gdb_choice, "needs_gdb", lambda code: True)
    assert answer(code) == direct


@pytest.mark.root
@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")
def test_user_options_never_reach_a_compile_as_root(pch_dir: Path) -> None:
    # The compile is the user's: gcc cannot read the file.
    assert "fatal error: /etc/shadow: Permission denied" in answer(
        "-Wall -include /etc/shadow puts(\"x\");")
    assert not list(pch_dir.iterdir())


@pytest.mark.root
@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")
def test_a_program_that_cannot_be_executed_gets_the_shells_words() -> None:
    # -c: the "program" is an object file. The original's shell said why it could not run it.
    said = answer('-c puts("x");')
    assert said.startswith("/bin/sh: 1: exec: /home/") and ": Permission denied\n" in said


@pytest.mark.root
@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")
def test_a_snippet_takes_the_quick_compile(pch_dir: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    def no_plain_compile(*args: object) -> None:
        raise AssertionError("compiled the usual way")

    monkeypatch.setattr(_Job, "compile_plainly", no_plain_compile)
    assert answer('printf("%b %#b\\n", 10u, 300u);') == "1010 000100101100\n"


@pytest.mark.root
@pytest.mark.skipif(shutil.which("gcc") is None or shutil.which("gdb") is None,
                    reason="needs gcc and gdb")
def test_a_program_that_replaced_its_source_still_gets_its_crash_report() -> None:
    # Built again with debugging information for gdb, from a fresh source file.
    said = answer('puts("x"); remove("prog.c"); mkdir("prog.c", 0700); char *p = 0; *p = 1;')
    assert "Program received signal SIGSEGV" in said and "at statement: *p = 1;" in said


@pytest.mark.root
@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")
def test_an_upgrade_replaces_the_old_build(pch_dir: Path, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    argv = command_line.compiler_argv(C2X.command_line("", paste=False))
    env = {"PATH": runner.PATH}
    old = pch.built(argv, C2X.sourcefile, C2X.prelude, env)
    abandoned = pch_dir / "tmpkilled"
    abandoned.mkdir()
    os.utime(abandoned, (0, 0))
    header = tmp_path / "prelude.h"
    header.write_text("/* a new version */")
    monkeypatch.setattr(pch, "OUR_HEADERS", (header,))
    new = pch.built(argv, C2X.sourcefile, C2X.prelude, env)
    assert old is not None and new is not None and new != old
    assert sorted(path.name for path in pch_dir.iterdir()) == sorted(
        [new.header.name, f"{new.header.name}.gch", new.functions.name])
