import time

import pytest

from pbotvm.host.request.languages import Language, find_language
from pbotvm.host.request.newlines import newlines_outside_quotes
from pbotvm.host.request.options import (
    USAGE,
    ParsedOptions,
    fortune_to_stdin,
    parse_standard_options,
    strip_exec_options,
    take_cmdline_options,
    unescape_stdin,
)

C2X = find_language("c2x")
MB = 1 << 20


def parse(code: str) -> ParsedOptions:
    return parse_standard_options(code)


# --- vm-exec's own options, from the start of the code (-lang= -vm= ...) --------------------

def test_exec_options_are_taken_from_the_start_and_lower_cased() -> None:
    code, found = strip_exec_options("-lang=C2X -vm=Test -vm-cid=7  -vm-serial=5555 "
                                     "-vm-vport=9 code -lang=sh")
    assert code == "code -lang=sh"
    assert found == {"lang": "c2x", "vm": "test", "vm-cid": "7", "vm-serial": "5555",
                     "vm-vport": "9"}


@pytest.mark.parametrize("code", ["echo -lang=sh", " -lang=sh x", "-lang= x", "-language=x y", ""])
def test_exec_options_elsewhere_are_code(code: str) -> None:
    assert strip_exec_options(code) == (code, {})


def test_exec_option_value_stops_at_any_whitespace() -> None:
    # The original's [^ ]+ took "7;touch\t/tmp/x" whole; a tab ends the value here.
    assert strip_exec_options("-vm-cid=7;touch\t/tmp/x") == ("/tmp/x", {"vm-cid": "7;touch"})
    assert strip_exec_options("-lang=sh\necho hi") == ("echo hi", {"lang": "sh"})


def test_later_exec_option_wins() -> None:
    assert strip_exec_options("-lang=sh -lang=BASH x") == ("x", {"lang": "bash"})


# --- standard options (-info -args -paste) --------------------------------------------------

@pytest.mark.parametrize("code", [
    "echo hi",
    "  echo   hi  \t",
    "if x:\n    if y:\n        z\n",  # Python indentation (the original collapsed it)
    'echo "a".txt',  # the original split this into "a" .txt
    'printf("%d\\n", 1);',
    "echo don't stop",
    'echo "unbalanced',
    "echo my-stdin-var",
    "ls -l /tmp",
    "x = a - b",
    "echo 'héllo' 😀",
    "",
])
def test_code_without_options_is_unchanged(code: str) -> None:
    assert parse(code) == ParsedOptions(code=code)


@pytest.mark.parametrize(("code", "expected"), [
    ("-paste echo hi", ParsedOptions("echo hi", paste=True)),
    ("echo hi -paste", ParsedOptions("echo hi", paste=True)),
    ("--paste echo hi", ParsedOptions("echo hi", paste=True)),
    ("-paste -nopaste x", ParsedOptions("x", paste=False)),  # the last one wins
    ("-paste x -no-paste", ParsedOptions("x", paste=False)),
    ("-info", ParsedOptions("", info=True)),
    ("echo -info", ParsedOptions("echo", info=True)),
    ("-info -noinfo x", ParsedOptions("x")),
    ("-paste\nif x:\n    y", ParsedOptions("if x:\n    y", paste=True)),
    ("echo hi  \n -paste", ParsedOptions("echo hi", paste=True)),
])
def test_flags_at_either_end(code: str, expected: ParsedOptions) -> None:
    assert parse(code) == expected


@pytest.mark.parametrize("code", ["echo -paste hi", "echo -info x", 'echo "-paste"', "a-paste"])
def test_flags_inside_the_code_are_code(code: str) -> None:
    assert parse(code) == ParsedOptions(code)


@pytest.mark.parametrize(("code", "arguments", "rest"), [
    ('-args "a b" echo', "a b", "echo"),
    ("-args 'a b' echo", "a b", "echo"),
    ("-args='a b' echo", "a b", "echo"),
    ('-args="a b" echo', "a b", "echo"),
    ("-args=x echo", "x", "echo"),
    ("--args=x echo", "x", "echo"),
    ('-arguments "1 2" echo', "1 2", "echo"),
    ("-arguments=1 echo", "1", "echo"),
    ('echo "$@" -args "1 2"', "1 2", 'echo "$@"'),
    ("-args '\"a\"' x", '"a"', "x"),  # one pair of quotes only
    ('-args "a x', '"a', "x"),  # unbalanced: kept
    ('-args "a\\"b" x', 'a\\"b', "x"),  # escapes stay for the guest to read
    ("-args -paste x", "-paste", "x"),  # a value is taken whatever it is, as Getopt::Long did
    ("-args a -args b x", "b", "x"),
    ("-args= x", "", "x"),
])
def test_args(code: str, arguments: str, rest: str) -> None:
    parsed = parse(code)
    assert (parsed.arguments, parsed.code) == (arguments, rest)


def test_args_without_value_stays_in_the_code() -> None:
    assert parse("echo hi -args") == ParsedOptions("echo hi -args")
    # Leading and alone it is then a leading "-" word, as in the original.
    assert parse("-args") == ParsedOptions("", cmdline_options="-args")


def test_trailing_options_combine() -> None:
    assert parse('echo x -args "1 2" -paste -info') == ParsedOptions(
        "echo x", info=True, arguments="1 2", paste=True)


def test_leading_double_dash_ends_option_recognition() -> None:
    assert parse("-- -paste x -info") == ParsedOptions("x -info", cmdline_options="-- -paste")


# --- -stdin ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("code", "stdin", "rest"), [
    ("cat -stdin hello world", "hello world", "cat"),
    ("cat -stdin=hello", "hello", "cat"),
    ("cat -stdin  two", " two", "cat"),  # one separator goes, as in the original
    ("cat -stdin", "", "cat"),
    ("-stdin abc echo hi", "abc echo hi", ""),  # the spec's example: the code is empty
    ("cat -stdin -paste -args x", "-paste -args x", "cat"),  # verbatim: no options in stdin
    ("cat -stdin a\\nb\\x41", "a\\nb\\x41", "cat"),  # raw; unescape_stdin comes later
    ("cat -stdin 'it's", "'it's", "cat"),
    ("echo a\ncat -stdin x", "x", "echo a\ncat"),
    ("cat -stdin x\n", "x", "cat\n"),
    ("cat -stdin x -stdin y", "x -stdin y", "cat"),
    ("cat\t-stdin\tx", "\tx", "cat"),
])
def test_stdin_takes_the_rest_of_the_line(code: str, stdin: str, rest: str) -> None:
    parsed = parse(code)
    assert (parsed.stdin, parsed.code) == (stdin, rest)


@pytest.mark.parametrize("code", [
    "echo my-stdin-var",  # the original cut this into code "echo my" and stdin "-var"
    "echo -stdinx",
    "cat -stdin x\necho not the last line",
])
def test_stdin_elsewhere_is_code(code: str) -> None:
    assert parse(code) == ParsedOptions(code)


def test_options_before_stdin_still_count() -> None:
    assert parse("cat -paste -stdin x") == ParsedOptions("cat", paste=True, stdin="x")


# --- compiler/interpreter options (leading -words) ------------------------------------------

def test_leading_dash_words_are_cmdline_options() -> None:
    assert parse("-Wall -O2 int x;") == ParsedOptions("int x;", cmdline_options="-Wall -O2")


def test_standard_options_among_cmdline_options() -> None:
    parsed = parse('-Wall -paste -args "1 2" -O2 int x; -info')
    assert parsed == ParsedOptions("int x;", info=True, arguments="1 2", paste=True,
                                   cmdline_options="-Wall -O2")


def test_cmdline_option_keeps_its_quotes_as_one_word() -> None:
    assert take_cmdline_options('-DMSG="a b" int x;') == ("int x;", '-DMSG="a b"')


def test_cmdline_options_then_indented_code() -> None:
    assert take_cmdline_options("-O\nprint(1)\n    x") == ("print(1)\n    x", "-O")


@pytest.mark.parametrize("code", ["int x;", "- 1", "", "x -Wall"])
def test_no_cmdline_options(code: str) -> None:
    assert take_cmdline_options(code) == (code, "")


def test_spec_example_c89_options_replace_the_defaults() -> None:
    parsed = parse("-Wall -std=c89 int x = 1; x")
    assert C2X is not None
    assert parsed.code == "int x = 1; x"
    assert C2X.spec.command_line(parsed.cmdline_options, parsed.paste) == (
        "gcc -gdwarf-2 -g3 prog.c -Wall -std=c89 -fno-diagnostics-show-caret -o prog")


# --- \n outside quotes becomes a newline (the original's preprocess_code) -------------------

@pytest.mark.parametrize(("code", "expected"), [
    ("echo a\\nb", "echo a\nb"),
    ('printf("a\\n");\\nputs("b");', 'printf("a\\n");\nputs("b");'),
    ("echo 'a\\nb'\\nx", "echo 'a\\nb'\nx"),
    ("echo a\\\\nb", "echo a\\\\nb"),  # \\n is an escaped backslash, then n
    ("echo \\\"\\nx", 'echo \\"\nx'),  # an escaped quote opens nothing
    ("don't\\nstop", "don't\\nstop"),  # the apostrophe opens a quote (as the original)
    ("a\\tb", "a\\tb"),
    ("a\\", "a\\"),  # a lone trailing backslash is kept (the original dropped it)
    ("ö\\n😀", "ö\n😀"),
    ("", ""),
])
def test_newlines_outside_quotes(code: str, expected: str) -> None:
    assert newlines_outside_quotes(code) == expected


# --- stdin escapes --------------------------------------------------------------------------

@pytest.mark.parametrize(("raw", "expected"), [
    ("a\\nb\\rc\\td\\be", "a\nb\rc\td\be"),
    ("\\x41\\X42\\x4a", "ABJ"),  # greedy hex, case-insensitive
    ("\\101\\60\\0", "A0\x00"),
    ("\\\\n stays", "\\\\n stays"),
    ("\\xe9t\\xE9", "ét\u00e9"),
    ("\\x110000 \\xd800", "\\x110000 \\xd800"),  # no such character: kept as written
    ("no escapes", "no escapes"),
    ("\\q", "\\q"),
])
def test_unescape_stdin(raw: str, expected: str) -> None:
    assert unescape_stdin(raw) == expected


def test_fortune_text_becomes_one_line() -> None:
    text = "Q:\tWhy?\r\n\n  A:  Because.\n"
    assert fortune_to_stdin(text) == "Q - Why? A - Because."


# --- the command line sent to the guest, -info ----------------------------------------------

def lang(name: str) -> Language:
    language = find_language(name)
    assert language is not None
    return language


@pytest.mark.parametrize(("name", "options", "paste", "cmdline"), [
    ("sh", "", False, "sh prog.sh"),
    ("sh", "-x", True, "sh -x prog.sh"),
    ("bc", "", False, "sh -c 'BC_LINE_LENGTH=2000000000 bc -q -l prog.bc'"),
    ("haskell", "", False, "ghc -v0 -o prog prog.hs"),
    ("go", "", False, "go run prog.go"),
    ("c2x", "", True, "gcc -gdwarf-2 -g3 prog.c -Wextra -Wall -Wno-unused -pedantic "
     "-Wfloat-equal -Wshadow -std=c2x -lm -Wfatal-errors -fsanitize=alignment,undefined "
     "-fsanitize-address-use-after-scope -fno-omit-frame-pointer -fdiagnostics-show-caret "
     "-o prog"),
    ("clang", "-O2", False, "clang -gdwarf-2 -g3 prog.c -O2 -fno-caret-diagnostics -o prog"),
    ("tendra", "", True, "tcc prog.c -Xp -Yansi -o prog"),
    ("c++", "-O1", False, "g++ -ggdb -g3 prog.cpp -O1 -fno-diagnostics-show-caret -o prog"),
    ("sh", "$sourcefile", False, "sh $sourcefile prog.sh"),  # options are not expanded again
])
def test_cmdline(name: str, options: str, paste: bool, cmdline: str) -> None:
    assert lang(name).spec.command_line(options, paste) == cmdline


@pytest.mark.parametrize(("name", "line"), [
    ("bc", "bc cmdline: sh -c 'BC_LINE_LENGTH=2000000000 bc -q -l prog.bc'"),
    ("javascript", "javascript cmdline: sh -c 'NODE_DISABLE_COLORS=1 node -p < prog.js'"),
    ("haskell", "haskell cmdline: ghc -v0 -o prog prog.hs"),
    ("qbasic", "qbasic cmdline: fbc -g -lang qb prog.bas"),
    ("tendra", "tendra cmdline: tcc prog.c -Xp -Yansi -o prog"),
    ("perl", "perl cmdline: perl -w prog.pl"),
    ("scheme", "scheme cmdline: guile --no-auto-compile prog.scm"),
    ("c89", "c89 cmdline: gcc -gdwarf-2 -g3 prog.c -Wextra -Wall -Wno-unused -pedantic "
     "-Wfloat-equal -Wshadow -std=c89 -lm -Wfatal-errors -fsanitize=alignment,undefined -o prog"),
    ("c++", "c++ cmdline: g++ -ggdb -g3 prog.cpp -std=c++14 -Wextra -Wall -Wno-unused -pedantic "
     "-Wfloat-equal -Wshadow -lm -Wfatal-errors -fsanitize=alignment,undefined -o prog"),
    # A deliberate fix: the original named clang++-3.7, found on no current system.
    ("clangpp", "clang++ cmdline: clang++ -gdwarf-2 "
     "-g3 prog.cpp -std=c++14 -Wextra -Wall -Wno-unused -pedantic -Wfloat-equal -Wshadow -lm "
     "-Wfatal-errors -fsanitize=alignment,undefined -o prog"),
])
def test_info_line(name: str, line: str) -> None:
    assert lang(name).spec.info_line() == line


def test_usage_text() -> None:
    assert USAGE == (
        'Usage: cc [-lang=<language>] [-vm=<virtual machine>] [-info] [-paste] [-args '
        '"command-line arguments"] [compiler/language options] <code> [-stdin <stdin input>]')


# --- size --------------------------------------------------------------------------------------

@pytest.mark.parametrize("code", [
    "x" * MB,
    "-paste " + "x" * MB + " -args 'a b'",
    "cat -stdin " + "y" * MB,
    '"' + "z " * (MB // 2),
    "-a " * (MB // 12),
])
def test_one_megabyte_takes_linear_time(code: str) -> None:
    # Well under 1 s when every step is linear; one quadratic step would take minutes. The bound is
    # loose so that a busy machine does not fail it (speed itself is for bench/).
    start = time.perf_counter()
    parse(code)
    newlines_outside_quotes(code)
    unescape_stdin(code)
    strip_exec_options(code)
    assert time.perf_counter() - start < 10.0


def test_one_megabyte_token_survives_intact() -> None:
    code = "ö" * MB
    assert parse(f"-paste {code} -info") == ParsedOptions(code, info=True, paste=True)
    assert newlines_outside_quotes(code) == code
