"""The last statement's value printed by the program: which statements qualify, the code the
program is built from, and the printer's record (pure; the runs are in test_cfamily_stack)."""

from __future__ import annotations

import pytest

from pbotvm.guest.cfamily import last_value
from pbotvm.guest.cfamily.last_value import Mode, Program, Site, Value

MAIN = ("#include <prelude.h>\n\nint main(int argc, char *argv[])\n{\n{decls}\n    {line}\n"
        "    return 0;\n}\n")


def code(line: str, decls: str = "") -> str:
    return MAIN.replace("{decls}", decls).replace("{line}", line)


@pytest.mark.parametrize(("expression", "names"), [
    ("1 + 1", []),
    ("1+1", []),
    ("sizeof(int)", []),
    ("sizeof(unsigned long long) * 2", []),
    ("x * 2", ["x"]),
    ("(a + b) / 2.5", ["a", "b"]),
    ("-c % 3 != 0 && !d", ["c", "d"]),
    ("1e3 + .5 + 2.", []),
    ("x * -y", ["x", "y"]),
    ("(a) * (b)", ["a", "b"]),
    ("2147483647", []),
])
def test_statements_it_answers_for(expression: str, names: list[str]) -> None:
    assert last_value.expression_names(expression) == names


@pytest.mark.parametrize("expression", [
    "f(1)",  # a call: gdb calls it in the program, with its own errors
    "(int) x",  # a cast
    "sizeof x",  # only sizeof of a basic type
    "sizeof(size_t)",
    "x << 3",  # shift counts past the width differ
    "'a'",  # a char constant is an int to C and a char to gdb
    '"hi"',
    "x = 1",
    "*p",  # through pointers
    "2 * *p",
    "&x",
    "x++",
    "a ? b : c",
    "a, b",
    "s.f",
    "p->f",
    "a[1]",
    "0x10",  # hexadecimal and octal literals, suffixes: not worth the doubt
    "010",
    "1u",
    "2147483648",  # no longer an int
    "true",
    "",
    "x $ y",
])
def test_statements_left_to_gdb(expression: str) -> None:
    assert last_value.expression_names(expression) is None


def test_the_program_keeps_every_line_number_and_prints_after_main() -> None:
    source = code("print_last_statement(x * 2);", "    int x = 5;\n    print(x); dump(x + 1);")
    program = last_value.program(source)
    assert program is not None
    assert program.sites == (Site(Mode.PRINT, "x"), Site(Mode.PRINT, "x + 1"),
                             Site(Mode.LAST, "x * 2"))
    lines, printed = source.splitlines(), program.source.splitlines()
    at = lines.index("    print_last_statement(x * 2);")
    assert printed[:at - 1] == lines[:at - 1] and printed[at + 1:len(lines)] == lines[at + 1:]
    assert printed[at - 1].startswith("    int x = 5;\n"[:-1]) or "do {" in printed[at - 1]
    assert "__builtin_constant_p(x)" in printed[at] and "switch" in printed[at]
    assert program.source.endswith(last_value.PRINTER)


def test_names_merely_multiplied_elsewhere_still_qualify() -> None:
    assert last_value.program(code("print_last_statement(x * 3);",
                                   "    int x = 2, y = 2 * x;\n    int *p = &y;")) is not None


def test_stringised_as_the_preprocessor_does() -> None:
    program = last_value.program(code("print_last_statement( 1  +\t1 );"))
    assert program is not None and program.sites == (Site(Mode.LAST, "1 + 1"),)


def test_a_print_in_a_string_or_a_comment_is_no_print() -> None:
    program = last_value.program(code('puts("print(x);"); /* print(y); */ print(1 + 1);'))
    assert program is not None and program.sites == (Site(Mode.PRINT, "1 + 1"),)


@pytest.mark.parametrize("source", [
    code("puts(\"hi\");"),  # nothing to print
    code("print_last_statement(1 + 1);", "    size_t x = 5;\n    ptype(x);"),  # gdb runs anyway
    code("print_last_statement(1 + 1);", "    char *s = \"hi\";\n    print(s);"),
    code("print(x, y);", "    int x = 1, y = 2;"),
    code("if (print(x), 1) puts(\"\");", "    int x = 1;"),  # not a statement
    code("print_last_statement(c);", "    wchar_t c = L'a';"),  # gdb: 97 L'a'
    code("x = 1; print_last_statement(1 + 1);", "    int x;"),  # not a line of its own
    code("print_last_statement(f(1));"),
    # declared as what it cannot print: not worth a compile
    code("print_last_statement(a);", "    int a[3] = {1, 2, 3};"),
    code("print_last_statement(s);", "    char *s = \"hi\";"),
    code("print_last_statement(p);", "    int x, * const p = &x;"),
    code("print_last_statement(v);", "    struct { int a; } v = {1};"),
    code("print_last_statement(v);", "    struct S v;"),
    "#define int long\n" + code("print_last_statement(1 + 1);"),  # the printer's words
    code("print_last_statement(" + " + ".join(["1"] * 80) + ");"),  # gdb cuts the text
    code("print_last_statement(1 + 1);").replace("return 0;", "print_last_statement(2);"),
])
def test_code_left_to_gdb(source: str) -> None:
    assert last_value.program(source) is None


def _program(*sites: Site) -> Program:
    return Program("", sites)


def test_what_gdb_would_have_shown_and_where() -> None:
    found = last_value.read_values(b"0 0 0 8 1 1234\t97 'a'\tc\n")
    assert found == [Value(0, Mode.LAST, 0, (8, 1), 1234, "97 'a'", "c")]
    assert last_value.shown(_program(Site(Mode.LAST, "c")), found) == [
        (0, "no output: c = 97 'a'")]
    # The program printed first: gdb said nothing.
    printed = last_value.read_values(b"0 0 6 8 1 1234\t2\t1 + 1\n")
    assert printed is not None and last_value.shown(_program(Site(Mode.LAST, "1 + 1")),
                                                    printed) == []
    # print() is shown where the program was, each time; then the last statement is not.
    both = last_value.read_values(b"0 1 0 8 1 1\t5\tx\n0 1 3 8 1 1\t5\tx\n"
                                  b"1 0 3 8 1 1\t10\tx * 2\n")
    assert both is not None and last_value.shown(
        _program(Site(Mode.PRINT, "x"), Site(Mode.LAST, "x * 2")), both) == [
        (0, "x = 5"), (3, "x = 5")]
    # gdb's own escapes, as guest-gdb's MI round trip left them
    escape = last_value.read_values(b"0 1 0 8 1 1\t27 '\\033'\tc\n")
    assert escape is not None and last_value.shown(_program(Site(Mode.PRINT, "c")),
                                                   escape) == [(0, "c = 27 '\\x1B'")]


@pytest.mark.parametrize(("data", "sites"), [
    (b"0 0 0 8 1 1\t-1\t(-1)\n", (Site(Mode.LAST, "EOF"),)),  # a macro's expansion
    (b"1 0 0 8 1 1\t2\tx\n", (Site(Mode.LAST, "x"),)),  # no such place
    (b"0 1 0 8 1 1\t2\tx\n", (Site(Mode.LAST, "x"),)),  # another kind of place
])
def test_records_that_do_not_count(data: bytes, sites: tuple[Site, ...]) -> None:
    values = last_value.read_values(data)
    assert values is not None and last_value.shown(_program(*sites), values) is None


@pytest.mark.parametrize("data", [
    b"declined\n", b"0 0 0 8 1 1\t2\t1\ndeclined\n", b"0 0 8 1\t2\t1\n",
    b"0 0 0 8 1 x\t2\t1\n", b"0 9 0 8 1 1\t2\t1\n", b"0 0 0 8 1 1\t2\n"])
def test_a_printer_that_declined_or_a_broken_record(data: bytes) -> None:
    assert last_value.read_values(data) is None


def test_no_record_at_all_is_no_value() -> None:
    assert last_value.read_values(b"") == []
