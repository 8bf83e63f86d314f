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

from pbotvm.guest import runner, running
from pbotvm.guest.cfamily import command_line, gdb_choice, last_statement, pch
from pbotvm.guest.cfamily.run import _Job
from pbotvm.host.request import options
from pbotvm.host.request.languages import find_language
from pbotvm.host.request.vmexec import make_request
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


def request(code: str, lang: str = "c2x") -> Request:
    language = find_language(lang)
    assert language is not None
    parsed = options.parse_standard_options(code, language.take_custom_options)
    source = language.preprocess(parsed.code, parsed.custom)
    return make_request(language, lang, parsed, source, stdin="")


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


def answer(code: str, lang: str = "c2x") -> str:
    return _RANDOM_NAMES.sub("…", runner.run_request(request(code, lang),
                                                     runner.RunSettings()).text)


@pytest.mark.root
@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")
@pytest.mark.parametrize(("code", "precompiles"), [
    ('puts("hello");', True),
    ('printf("%b %\'#b %08b\\n", 10u, 300u, 5u);', True),  # prelude.h's functions, linked
    ("prelude_binary_t b = 5; printf(\"%llb\\n\", b);", True),  # its type stays declared
    ("int prelude_binary_split; puts(\"x\");", False),  # a name of its own: as usual
    # gdb is defined there too: the quick compile fails, the usual one answers
    ("void gdb(char *c) { } puts(\"x\");", True),
    ('int x; printf("%d\\n", 3 / 1); return 2;', True),
    ('#define _XOPEN_SOURCE 700\\nputs("a note names the prelude\'s line");', True),
    ("char *p = 0; strcpy(p, \"x\");", True),  # a crash: gdb reports on this binary
    # Built without debugging information, crashes, is built again with it for gdb.
    ("puts(\"before\"); char *p = 0; *p = 1;", True),
    ("int x = 5, y = 6;", True),  # prints nothing: gdb shows the locals
    ("int x = 5; fprintf(stderr, \"%d\\n\", x);", True),  # prints nothing on stdout after all
    ("int f(void) { return undefined(); } puts(\"link error\");", True),
    # gdb evaluates these: precompiled where it needs no macro (the prelude's or the code's)
    ("1+1", True),
    ("INT_MAX", True),  # the first compile only: gdb's program has the whole prelude
    ("int x; x = 5; print(x);", True),
    ('char *s = "hi"; ptype(s); whatis(s + 1);', True),
    ("int a[3] = {1, 2, 3}; print(a); dump(a[1]);", True),
    ("struct tm t = {0}; t.tm_year = 5; print(t); ptype(t);", True),
    ("int x = 3; x * 2", True),
    ("double d = 2; sqrt(d)", True),  # gdb cannot: built and run again without the wrapper
    ('int x = 1; watch(x); x = 2; x = 3; puts("done");', True),
    ('gdb("print sizeof(long)");', True),
    ('gdb("print INT_MAX");', True),
    ("print(EOF);", True),
    # gdb expands the inner whatis(x), calls gdb(), and waits: guest-gdb's time-out
    ("int x = 5; print_last_statement(whatis(x));", True),
    ("#define X 5\nprint(X);", True),
    ("puts(\"x\"); print(stdout);", True),
])
def test_quick_compile_answers_as_the_usual_one(code: str, precompiles: bool, pch_dir: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    quick = answer(code)
    assert bool(list(pch_dir.glob("*.h.gch"))) is precompiles
    assert bool(list(pch_dir.glob("*.o"))) is precompiles
    monkeypatch.setattr(_Job, "quick_compile", lambda *args, **kwargs: None)
    assert quick == answer(code)


def test_the_macros_gdb_could_miss(tmp_path: Path) -> None:
    assert pch.macro_names("#define EOF (-1)\n#define assert(e) ((void) 0)\n#define __x86_64__ 1\n"
                           ) == ["EOF", "assert", "__x86_64__"]
    prelude = pch.Prelude(tmp_path / "p.h", tmp_path / "p.o", tmp_path / "p.macros")
    assert prelude.hides_macros("print(x);")  # no list: as if it named one
    prelude.macros.write_text("EOF\nINT_MAX\nprint\nprint_last_statement\n")
    assert not prelude.hides_macros("\n\nint x = 5; print(x); print_last_statement(1 + 1);")
    assert prelude.hides_macros("print(EOF);")
    assert prelude.hides_macros('gdb("print INT_MAX");')  # gdb's commands come as strings
    assert prelude.hides_macros("#define X 5\nprint(X);")  # the code's own macros
    assert prelude.hides_macros("  #  include <sys/mman.h>\nprint(MAP_SHARED);")
    # Within what gdb evaluates, a helper is a macro gdb expands.
    prelude.macros.write_text("whatis\nprint_last_statement\n")
    assert not prelude.hides_macros("int x = 5;\n{ whatis(x); }\nprint_last_statement(x);")
    assert prelude.hides_macros("int x = 5;\n    print_last_statement(whatis(x));")
    assert prelude.hides_macros("int x = 5; if (x) whatis(x);")


@pytest.mark.root
@pytest.mark.skipif(shutil.which("gcc") is None or shutil.which("gdb") is None,
                    reason="needs gcc and gdb")
@pytest.mark.parametrize(("code", "precompiled"), [
    ("1+1", True),
    ("int x = 5; print(x);", True),
    ('int x = 5; gdb("info locals");', True),
    ("INT_MAX", False),
    ("print(EOF);", False),
    ('gdb("print INT_MAX");', False),
    ("#define X 5\nprint(X);", False),
])
def test_gdbs_program_is_precompiled_unless_gdb_may_need_a_macro(
        code: str, precompiled: bool, pch_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    compiles: list[list[str]] = []
    compile_once = _Job.compile_once

    def recorded(job: _Job, argv: list[str]) -> object:
        compiles.append(argv)
        return compile_once(job, argv)

    monkeypatch.setattr(_Job, "compile_once", recorded)
    answer(code)
    assert ("-include" in compiles[-1]) is precompiled


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
@pytest.mark.parametrize("lang", ["cpp", "clangpp"])
@pytest.mark.parametrize("code", [
    'std::cout << "hello" << std::endl;',
    "int x = 5; print(x);",
    "int x = 3; x * 2",
    "std::vector<int> v{1, 2}; std::cout << v.size() << '\\n'; undefined_name;",
])
def test_cplusplus_quick_compile_answers_as_the_usual_one(lang: str, code: str, pch_dir: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """clang++ takes the precompiled prelude.hpp too (its own build)."""
    spec = find(lang)
    assert spec is not None
    if shutil.which(spec.toolchain.program) is None:
        pytest.skip(f"needs {spec.toolchain.program}")
    plain_compiles = []
    compile_plainly = _Job.compile_plainly

    def counted(job: _Job, code: str) -> object:
        plain_compiles.append(code)
        return compile_plainly(job, code)

    monkeypatch.setattr(_Job, "compile_plainly", counted)
    quick = answer(code, lang)
    # The last code fails to compile: the usual compile says why.
    assert bool(plain_compiles) is ("undefined_name" in code)
    monkeypatch.setattr(_Job, "quick_compile", lambda *args, **kwargs: None)
    assert quick == answer(code, lang)


@pytest.mark.root
@pytest.mark.parametrize("lang", ["cpp", "clangpp"])
@pytest.mark.parametrize(("code", "gdb_runs"), [
    ('std::cout << "hello" << std::endl;', False),
    ('using namespace std; cout << "a" << 1 + 2 << endl;', False),
    ('std::cout << "out "; std::cerr << "err\\n";', False),
    # A cout of its own, which gdb finds, and a name gdb would meet in a string: gdb runs.
    ("int cout = 3; cout << 1", True),
    ('std::cout << "cout is " << 1;', True),
])
def test_a_stream_statement_skips_the_gdb_run_that_would_fail(
        lang: str, code: str, gdb_runs: bool, pch_dir: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """gdb has no symbol for std::cout: the run under gdb only ever led to the run without
    the wrapper, ~6 s of a C++ hello's 11 under TCG."""
    spec = find(lang)
    assert spec is not None
    if shutil.which(spec.toolchain.program) is None or shutil.which("gdb") is None:
        pytest.skip(f"needs {spec.toolchain.program} and gdb")
    ran = []
    under_gdb = _Job.under_gdb

    def counted(job: _Job, args: list[str]) -> object:
        ran.append(job)
        return under_gdb(job, args)

    monkeypatch.setattr(_Job, "under_gdb", counted)
    skipped = answer(code, lang)
    assert bool(ran) is gdb_runs
    monkeypatch.setattr(last_statement, "beyond_gdb", lambda code: False)
    assert skipped == answer(code, lang)


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
    env = {"PATH": running.PATH}
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
        [new.header.name, f"{new.header.name}.gch", new.macros.name, new.functions.name])
    assert "INT_MAX" in new.macros.read_text().split()
