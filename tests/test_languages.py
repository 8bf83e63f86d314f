import dataclasses

import pytest

from pbotvm.host.request.languages import (
    Language,
    Shown,
    Source,
    find_language,
    unsupported_message,
)
from pbotvm.host.request.statements.custom_options import CustomOptions
from pbotvm.langspec import LANGUAGES, LangSpec, RunMode, find, supported_names
from pbotvm.langspec.markers import DEFAULT as DEFAULT_MARKERS
from pbotvm.langspec.markers import SHELL as SHELL_MARKERS

SUPPORTED = ("bash, bc, bf, c11, c2x, c89, c99, clang, clang11, clang2x, clang89, clang99, "
             "clang++, clisp, c++, freebasic, go, haskell, java, javascript, ksh, lua, perl, php, "
             "python, python3, qbasic, ruby, scheme, sh, tcl, tendra, zsh")


def lang(name: str) -> LangSpec:
    spec = find(name)
    assert spec is not None
    return spec


def behaviour(name: str) -> Language:
    language = find_language(name)
    assert language is not None
    return language


def test_all_33_original_modules_in_file_order() -> None:
    names = [language.name for language in LANGUAGES]
    assert names == sorted(names) and len(set(names)) == 33
    assert ", ".join(supported_names()) == SUPPORTED


def test_unsupported_message_is_the_original_text() -> None:
    assert unsupported_message("cobol") == (
        f"Language 'cobol' is not supported.\nSupported languages are: {SUPPORTED}")


@pytest.mark.parametrize(("given", "key"), [
    ("sh", "sh"), ("c2x", "c2x"), ("cpp", "cpp"), ("c++", "cpp"), ("clang++", "clangpp"),
    ("clangpp", "clangpp"), ("python3", "python3"),
])
def test_lookup_by_key_then_display_name(given: str, key: str) -> None:
    assert lang(given).name == key


@pytest.mark.parametrize("given", ["?", "", "SH", " sh", "_default", "_c_base", "../../tmp/x",
                                   "Languages/sh", "sh.pm", "c#"])
def test_lookup_is_an_allow_list(given: str) -> None:
    assert find_language(given) is None


@pytest.mark.parametrize(("name", "source", "exe", "cmdline", "defaults"), [
    ("bash", "prog.bash", "prog.bash", "bash $options $sourcefile", ""),
    ("bf", "prog.bf", "prog.bf", "beef $options $sourcefile", ""),
    ("clisp", "prog.lisp", "prog.lisp", "clisp $options $sourcefile", ""),
    ("go", "prog.go", "prog", "go $options run $sourcefile", ""),
    ("java", "prog.java", "prog", "javac $options $sourcefile", ""),
    ("lua", "prog.lua", "prog.lua", "lua $options $sourcefile", ""),
    ("perl", "prog.pl", "prog.pl", "perl $options $sourcefile", "-w"),
    ("python3", "prog.py3", "prog.py3", "python3 $options $sourcefile", ""),
    ("freebasic", "prog.bas", "prog", "fbc -g $options $sourcefile", ""),
    ("ruby", "prog.rb", "prog.rb", "ruby $options $sourcefile", "-w"),
    ("scheme", "prog.scm", "prog.scm", "guile $options $sourcefile", "--no-auto-compile"),
    ("tcl", "prog.tcl", "prog.tcl", "tclsh $options $sourcefile", ""),
    ("tendra", "prog.c", "prog", "tcc $sourcefile $options -o $execfile", "-Xp -Yansi"),
    # Deliberate fixes: the original named clang++-3.7 and bf, found on no current system.
    ("clangpp", "prog.cpp", "prog", "clang++ -gdwarf-2 -g3 $sourcefile $options -o $execfile",
     lang("cpp").default_options),
])
def test_table_values(name: str, source: str, exe: str, cmdline: str, defaults: str) -> None:
    language = lang(name)
    assert (language.sourcefile, language.execfile, language.cmdline,
            language.default_options) == (source, exe, cmdline, defaults)


def test_c_family() -> None:
    gcc = {"c11", "c2x", "c89", "c99", "cpp"}
    for name in ("c11", "c2x", "c89", "c99", "clang", "clang11", "clang2x", "clang89",
                 "clang99", "clangpp", "cpp"):
        language = lang(name)
        assert language.run is RunMode.CFAMILY and language.gdb
        caret = "-fdiagnostics-show-caret" if name in gcc else "-fcaret-diagnostics"
        assert (language.options_paste, language.options_nopaste) == (caret, "-fno-" + caret[2:])
        assert "-Wno-unused " in language.default_options  # 2023, not HEAD's split warnings
        assert language.prelude.endswith(">\n\n")
    tendra = lang("tendra")
    assert tendra.run is RunMode.CFAMILY and not tendra.gdb
    assert tendra.options_paste == tendra.options_nopaste == ""
    assert tendra.prelude.endswith("\n#define print_last_statement(s) s\n\n")
    clang, clang2x = lang("clang"), lang("clang2x")
    assert dataclasses.replace(clang, name="clang2x", display="clang2x") == clang2x
    assert "-std=c2x" in lang("c2x").default_options
    assert "-std=c99" in lang("clang99").default_options


def test_preludes() -> None:
    c89 = lang("c89").prelude.splitlines()
    assert c89[:3] == ["#define _XOPEN_SOURCE 9001", "#define __USE_XOPEN", "#include <stdio.h>"]
    assert c89[-2:] == ["#include <prelude.h>", ""] and len(c89) == 22
    assert lang("clang99").prelude == lang("c99").prelude.replace("#define __USE_XOPEN\n", "")
    assert lang("c2x").prelude.count("#include") == 32 and "<threads.h>" in lang("c2x").prelude
    assert lang("cpp").prelude == lang("clangpp").prelude
    assert lang("cpp").prelude.startswith("#if 0\n")
    assert lang("cpp").prelude.endswith(
        "using namespace std;\n#endif\n\n#include <prelude.hpp>\n\n")
    assert lang("java").prelude == "import java.lang.*;\nimport java.util.*;\n\n"  # HEAD's fix
    assert all(not language.prelude for language in LANGUAGES
               if language.run is not RunMode.CFAMILY and language.name != "java")


def test_display_names() -> None:
    assert (lang("cpp").display, lang("clangpp").display, lang("sh").display) == (
        "c++", "clang++", "sh")


def test_paste_markers() -> None:
    for name in ("bash", "ksh", "sh", "zsh"):
        assert lang(name).markers == SHELL_MARKERS
    assert SHELL_MARKERS.cmdline_open == ": <<'____CMDLINE____'\n"
    assert SHELL_MARKERS.output_open == ": << '____OUTPUT____'\n"
    for name in ("bc", "bf", "c2x", "go", "java", "javascript", "php", "ruby", "tendra"):
        assert lang(name).markers == DEFAULT_MARKERS
    assert DEFAULT_MARKERS.cmdline_close == "************** CMDLINE *************/\n"
    assert lang("python").markers.cmdline_open == "'''\n=============== CMDLINE ===============\n"
    assert lang("python3").markers.output_close == "=============== OUTPUT ===============\n'''\n"
    assert lang("haskell").markers.cmdline_open == "{-|\n=============== CMDLINE ===============\n"
    assert lang("qbasic").markers.output_close == "=============== OUTPUT ===============\n'/\n"
    assert lang("clisp").markers.cmdline_close == "================= CMDLINE ===============|#\n"
    assert lang("scheme").markers == lang("clisp").markers
    assert lang("lua").markers.output_open == "--[[--------------- OUTPUT ---------------\n"
    assert lang("perl").markers.cmdline_open == "=cut =============== CMDLINE ===============\n"
    assert lang("perl").markers.output_close == "=cut\n"
    assert (lang("tcl").markers.cmdline_open, lang("tcl").markers.output_close) == (
        "set CMDLINE {\n", "}\n")


def preprocess(name: str, code: str) -> str:
    return behaviour(name).preprocess(code, CustomOptions()).code


def postprocess(name: str, text: str) -> str:
    return behaviour(name).postprocess_output(text, Source(""), Shown())


def test_base_preprocess_converts_newlines_outside_quotes() -> None:
    code = 'echo a\\nprintf "b\\n"'
    assert preprocess("sh", code) == 'echo a\nprintf "b\\n"'
    assert preprocess("python3", code) == 'echo a\nprintf "b\\n"'


def test_bc_appends_quit_without_converting() -> None:
    assert preprocess("bc", "1+1\\n2") == "1+1\\n2\nquit\n"


def test_perl_output_filter() -> None:
    text = ('syntax error at prog.pl line 1, near "1 +;"\n'
            "Execution of prog.pl aborted due to compilation errors.")
    assert postprocess("perl", text) == "syntax error"
    twice = 'a at prog.pl line 1, near "x"\nb at prog.pl line 2, near "y"'
    assert postprocess("perl", twice) == 'a\nb at prog.pl line 2, near "y"'


@pytest.mark.parametrize("name", ["clisp", "scheme"])
def test_lisp_output_loses_one_leading_newline(name: str) -> None:
    assert postprocess(name, "\n\n3") == "\n3"
    assert postprocess(name, "3\n") == "3\n"


@pytest.mark.parametrize("name", ["sh", "java", "python"])
def test_other_output_is_unchanged(name: str) -> None:
    assert postprocess(name, "\nx at prog.pl line 1, near \"y\"") == (
        "\nx at prog.pl line 1, near \"y\"")


def test_languages_are_immutable() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        lang("sh").cmdline = "rm -rf /"  # type: ignore[misc]
