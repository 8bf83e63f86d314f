"""The C family's pure rules: guest-gdb's text handling, the driver's records, the
print_last_statement passes, when gdb is needed, and the answer's shape. No processes.

gdb output lines and expected texts below were observed from gdb 13.1 and the original guest
(see tests/data/cfamily_guest.json), unless a comment says they follow the original's code.
"""

import re
import signal

import pytest

from pbotvm.guest.cfamily import channel, command_line, gdb_choice, last_statement
from pbotvm.guest.cfamily import guest_gdb as rules
from pbotvm.guest.cfamily.answer import answer, diagnostics_prefix, gdb_failed, gdb_failure
from pbotvm.guest.cfamily.gdb_choice import AfterDirectRun
from pbotvm.provision.payload import PACKAGE

# -- guest-gdb's reading of gdb's answers ------------------------------------------------------

LISTING = [
    "39\t#include <prelude.h>",
    "40\t",
    "41\tint main(int argc, char *argv[])",
    "42\t{",
    '43\t    char *s = "}{";',
    "44\t    if (argc) {",
    "45\t        puts('}' == 0 ? s : \"x\");",
    "46\t    }",
    "47\t    return 0;",
    "48\t}",
]


def test_main_span_counts_braces_outside_literals() -> None:
    start = rules.main_start(["", "File prog.c:", "41:\tint main(int, char **);"])
    assert start == 41
    assert rules.main_span(start, LISTING) == (41, 47)


def test_main_start_is_decided_by_the_last_line_of_the_answer() -> None:
    assert rules.main_start(["41:\tint main(int, char **);", "Non-debugging symbols:"]) is None
    # Then `list main` is searched for a line that names main.
    assert rules.main_span(None, LISTING) == (41, 47)


def test_main_span_without_an_end() -> None:
    assert rules.main_span(41, LISTING[:5]) == (41, None)


def test_locals_of_info_locals() -> None:
    lines = ['s = {a = 1, s = 0x555555556004 "a = b"}', "x = 5", "No locals."]
    assert rules.locals_of(lines) == [("s", '{a = 1, s = 0x555555556004 "a = b"}'), ("x", "5")]
    assert rules.locals_text([("x", "5"), ("y", "6")]) == "x = 5; y = 6"


def test_backtrace_frames_as_guest_gdb_read_them() -> None:
    lines = [
        "#0  0x0000555555555182 in f (p=0x0) at prog.c:41",
        "#1  0x0000555555555226 in g (x=3) at prog.c:46",
        "#2  0x00007ffff7c29e40 in __libc_start_main_impl () from /lib/x86_64-linux-gnu/libc.so.6",
    ]
    assert rules.backtrace(lines) == [("f", "(p=0x0)"), ("g", "(x=3)"), (None, None)]


def test_source_lines_from_list_and_up() -> None:
    assert rules.listed_statement(["42\t    *p = 1;"]) == "*p = 1;"
    # An unindented line, or a source file that is not there, gives nothing.
    assert rules.listed_statement(["44\tin ./nptl/pthread_kill.c"]) is None
    assert rules.listed_statement(["41\tint f(void) { return *p; }"]) is None
    up = ["#1  0x0000555555555226 in main (argc=1) at prog.c:44", "44\t    assert(1 == 2);"]
    assert rules.up_statement(up, None) == "assert(1 == 2);"
    # No source line: the previous one is carried along, as guest-gdb did.
    assert rules.up_statement(["#2  0x00007ffff7c in raise () at x.c:3"], "x = 1;") == "x = 1;"


@pytest.mark.parametrize(("argument", "command"), [
    ('0x55555555600b "print x"', "print x"),
    ('0x55555555600b "print s == \\"a\\\\n\\""', 'print s == "a\\n"'),
    ('0x55555555600b "watch x"', "watch x"),
    ('0x55555555600b "print ' + "a" * 195 + '"...', "print " + "a" * 195 + '"...'),
])
def test_the_command_of_gdb_calls(argument: str, command: str) -> None:
    assert rules.gdb_command(argument) == command


def test_commands_split_at_the_first_blank() -> None:
    assert rules.split_command("print a + b") == ("print", "a + b")
    assert rules.split_command("print ") == ("print", "")
    assert rules.split_command("trace") == ("trace", "")


def test_answers_of_print_ptype_whatis() -> None:
    assert rules.printed_values(["$1 = {a = 1, b = \"ab\"}"]) == ['{a = 1, b = "ab"}']
    assert rules.printed_values(["No symbol table is loaded."]) == []
    ptype = ["type = struct P {", "    int a;", "    char b[4];", "}"]
    assert rules.ptype_text("p", ptype) == "p = struct P { int a; char b[4]; }"
    assert rules.whatis_texts("p", ["type = struct P"]) == ["p = struct P"]
    assert rules.verbatim_text(["x = 3", 's = 0x5555 "hi"']) == 'x = 3\ns = 0x5555 "hi"\n'


@pytest.mark.parametrize(("gdb_says", "guest_gdb_had"), [
    ("$1 = -56 '\\310'", "$1 = -56 '\\xC8'"),  # an octal escape made a byte, not UTF-8
    ("$1 = 1 '\\001'", "$1 = 1 '\\001'"),  # below 32 (read as decimal digits): kept
    ("$1 = 26 '\\032'", "$1 = 26 '\\x1A'"),  # 032 read as decimal is 32: a byte, then \xNN
    ('$1 = "h\\303\\251"', '$1 = "hé"'),
    ('$1 = "hé"', '$1 = "hé"'),  # MI escaped it to octal, guest-gdb decoded it back
    ('$1 = "a\\tb\\n"', '$1 = "a\\tb\\n"'),
    ("a\x01b", "a\\001b"),  # a control character MI wrote in octal
])
def test_mi_round_trip(gdb_says: str, guest_gdb_had: str) -> None:
    assert rules.mi_text(gdb_says) == guest_gdb_had


def test_signal_report() -> None:
    # Observed: int f(int *p) { return *p; } int g(int x) { return f(0) + x; } ...
    outer = [rules.OuterFrame("g", "(x=3)", "return f(0) + x;"),
             rules.OuterFrame("main", "(argc=1, argv=0x7fffffffe438)",
                              'printf("%d\\n", g(3));')]
    assert rules.signal_report("SIGSEGV", "Segmentation fault", "f", [("p", "0x0")],
                               "return *p;", outer, []) == (
        "Program received signal SIGSEGV, Segmentation fault in f (p=0x0) at statement: "
        "return *p; called by g (x=3) at statement: return f(0) + x; called by main "
        '(argc=1, argv=0x7fffffffe438) at statement: printf("%d\\n", g(3));')
    assert rules.signal_report("SIGFPE", "Arithmetic exception", "main",
                               [("argc", "1")], "x = a / b;", [], [("a", "1"), ("b", "0")]) == (
        "Program received signal SIGFPE, Arithmetic exception in main (argc=1) at statement: "
        "x = a / b; <local variables: a = 1; b = 0>")


def test_emitted_text_is_framed_by_blank_lines() -> None:
    assert rules.emitted("x = 5") == "\nx = 5\n\n"


# -- the driver's records -----------------------------------------------------------------


def test_records_round_trip_and_splice() -> None:
    data = (channel.emit_record(0, "x = 5") + b"not a record\n" + b"[1, 2]\n"
            + channel.emit_record(3, "y") + channel.exited_record(4))
    transcript = channel.read_records(data)
    assert transcript.emits == [(0, "x = 5"), (3, "y")]
    assert (transcript.ended, transcript.stalled, transcript.status) == (True, False, 4)
    assert channel.read_records(channel.stalled_record()).stalled
    unfinished = channel.read_records(channel.emit_record(0, "x")[:-3])
    assert not unfinished.ended and unfinished.emits == []


def test_splice_puts_texts_at_their_offsets() -> None:
    assert channel.splice(b"abcdef", [(0, "<"), (3, "|"), (3, "|"), (99, ">")]) == b"<abc||def>"
    # An offset behind the previous one (a program that truncated its stdout) keeps order.
    assert channel.splice(b"abc", [(2, "1"), (1, "2")]) == b"ab12c"


# -- print_last_statement ---------------------------------------------------------------------

WRAPPED = "int main(void)\n{\n    int x = 5;\n    print_last_statement(x * 2);\n    return 0;\n}"


def test_the_passes_of_a_wrapped_statement() -> None:
    assert last_statement.has_wrapper(WRAPPED)
    assert "    x * 2;\n" in last_statement.unwrapped(WRAPPED)
    assert not last_statement.has_wrapper("print_last_statement(x); /* not at the end */")
    # The second try drops every wrapper, even one that does not end its line.
    assert last_statement.without_wrappers("print_last_statement(f(1)); x;") == "f(1); x;"
    assert last_statement.gdb_failed(
        "\n'strlen' has unknown return type; cast the call to its declared return type\n")
    assert last_statement.gdb_failed('No symbol "y" in current context.')
    # C++, which the original could not run: `std::cout << "hi" << std::endl` as last line.
    assert last_statement.gdb_failed('\nNo symbol "cout" in namespace "std".\n\n')
    assert not last_statement.gdb_failed("no output: 1 + 1 = 2")


# -- when gdb is needed -------------------------------------------------------------------------


@pytest.mark.parametrize(("code", "needed"), [
    ('#include <signal.h>\n#include <prelude.h>\nint main(void) { puts("hi"); }', False),
    ("int main(void) { int x = 1; print(x); }", True),
    ("int main(void) { gdb(\"info locals\"); }", True),
    ("int main(void) { print_last_statement(1 + 1); }", True),
    ("int main(void) { signal(SIGINT, h); }", True),
    ("int main(void) { raise(SIGINT); }", True),
    ("int main(void) { printf(\"%d\", 1); }", False),
    ("int main(void) { int printed = 1; }", False),
])
def test_needs_gdb(code: str, needed: bool) -> None:
    assert gdb_choice.needs_gdb(code) is needed


@pytest.mark.parametrize(("code", "likely"), [
    ('#include <stdio.h>\nint main(void) { puts("hi"); }', False),
    ("int main(void) { printf(\"%d\", 1); }", False),
    ("int main() { std::cout << 1; }", False),
    ("int main(void) { int x = 5; }", True),  # prints nothing: gdb shows the locals
    ("#include <stdio.h>\nint main(void) { }", True),  # a header's name prints nothing
    ("int main(void) { int x = 1; print(x); }", True),
    ("int main(void) { puts(\"a\"); raise(SIGINT); }", True),
])
def test_likely_under_gdb(code: str, likely: bool) -> None:
    assert gdb_choice.likely_under_gdb(code) is likely


def test_the_helpers_are_prelude_hs() -> None:
    defined = re.findall(r"^#define (\w+)\(\.\.\.\)\s+gdb\(",
                         (PACKAGE / "guest" / "cfamily" / "include" / "prelude.h").read_text(),
                         re.MULTILINE)
    assert sorted(gdb_choice.HELPERS) == sorted(defined)


def test_after_a_direct_run() -> None:
    assert gdb_choice.after_direct_run(None, printed=True) is AfterDirectRun.KEEP
    assert gdb_choice.after_direct_run(None, printed=False) is AfterDirectRun.RERUN
    assert gdb_choice.after_direct_run(signal.SIGSEGV, printed=True) is AfterDirectRun.RERUN
    assert gdb_choice.after_direct_run(signal.SIGKILL, printed=True) is AfterDirectRun.STALL


# -- the command line ---------------------------------------------------------------------------


def test_command_line() -> None:
    assert command_line.compiler_argv("gcc -g3 prog.c '-DX=a b' -o prog") == [
        "gcc", "-g3", "prog.c", "-DX=a b", "-o", "prog"]
    assert command_line.compile_only("gcc prog.c --version -o prog")
    assert not command_line.compile_only("gcc prog.c -o prog")
    assert command_line.uses_address_sanitizer("gcc -fsanitize=undefined,address -o prog")
    assert command_line.uses_address_sanitizer("gcc -fsanitize=address -o prog")
    assert not command_line.uses_address_sanitizer("gcc -fsanitize=alignment,undefined -o p")


# -- the answer ---------------------------------------------------------------------------------


def test_answers() -> None:
    warning = "prog.c:44:14: warning: comparing floating-point with '==' or '!=' is unsafe"
    prefix = diagnostics_prefix(f"prog.c: In function 'main':\n{warning}\n")
    assert prefix == f"[prog.c: In function 'main':\n{warning}]\n"
    assert diagnostics_prefix("") == ""
    # Observed: warning_without_output, own_main_exit_code, exit_code_no_output.
    assert answer(prefix, "", 1, factoid=False) == f"{prefix}\nExit 1.\n"
    assert answer("", "x\n", 2, factoid=False) == "x\n [Exit 2]\n"
    assert answer("", "", 3, factoid=False) == "Exit 3.\n"
    assert answer("", "", 0, factoid=False) == "Success (no output).\n"
    # From the original's run_command: a factoid without output answers nothing.
    assert answer(prefix, "", 0, factoid=True) == "\n"
    assert answer("", "hi", 0, factoid=True) == "hi\n"


def test_a_gdb_that_failed_is_said_in_one_line() -> None:
    # Observed from gdb 13.1, run as a user who cannot read its driver: it exits 0.
    said = b"warning: /root/v/pbotvm/guest/cfamily/gdb_driver.py: Permission denied\n"
    assert gdb_failed(gdb_failure(said, None, 0)) == (
        "[gdb failed: warning: /root/v/pbotvm/guest/cfamily/gdb_driver.py: Permission denied]\n")
    assert gdb_failure(b" \n", signal.SIGSEGV, 139) == "Segmentation fault"
    assert gdb_failure(b"", None, 127) == "exit status 127"


@pytest.mark.parametrize(("code", "beyond"), [
    ('int main(void)\n{\n    print_last_statement(std::cout << "hello" << std::endl);\n}', True),
    ("using namespace std;\nprint_last_statement(cout << 1 + 2);", True),
    ("print_last_statement(std :: cerr << x);", True),
    ("print_last_statement(1 + 1);", False),
    ('std::cout << "a";\nprint_last_statement(x * 2);', False),
    # A cout of its own (gdb finds it), or the name where gdb would meet it as text.
    ("int cout = 3;\nprint_last_statement(cout << 1);", False),
    ('print_last_statement(std::cout << "cout is");', False),
    ('std::cout << "hello";', False),  # nothing wrapped: nothing to skip
])
def test_what_gdb_cannot_evaluate_is_known_before_it_runs(code: str, beyond: bool) -> None:
    """gdb has no symbol for the C++ standard streams: a wrapped statement writing to one
    always led to the run without the wrapper."""
    assert last_statement.beyond_gdb(code) is beyond
