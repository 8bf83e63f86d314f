"""The last statement's value printed by the program: which statements qualify, the code the
program is built from, and the printer's record (pure; the runs are in test_cfamily_stack)."""

from __future__ import annotations

import pytest

from pbotvm.guest.cfamily import last_value
from pbotvm.guest.cfamily.last_value import Value

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
    source = code("print_last_statement(x * 2);", "    int x = 5;")
    program = last_value.program(source)
    assert program is not None
    assert program.expression == "x * 2"
    lines, printed = source.splitlines(), program.source.splitlines()
    at = lines.index("    print_last_statement(x * 2);")
    assert printed[:at] == lines[:at] and printed[at + 1:len(lines)] == lines[at + 1:]
    assert "__builtin_constant_p(x)" in printed[at] and "switch" in printed[at]
    assert program.source.endswith(last_value.PRINTER)


def test_names_merely_multiplied_elsewhere_still_qualify() -> None:
    assert last_value.program(code("print_last_statement(x * 3);",
                                   "    int x = 2, y = 2 * x;\n    int *p = &y;")) is not None


def test_stringised_as_the_preprocessor_does() -> None:
    program = last_value.program(code("print_last_statement( 1  +\t1 );"))
    assert program is not None and program.expression == "1 + 1"


@pytest.mark.parametrize("source", [
    code("print_last_statement(1 + 1);", "    int x = 5;\n    print(x);"),  # gdb runs anyway
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


def test_the_record_and_the_line_gdb_would_have_given() -> None:
    found = last_value.read_value(b"0 8 1 1234\n97 'a'\nc\n")
    assert found == Value(0, (8, 1), 1234, "97 'a'", "c")
    assert last_value.line_for(found, "c") == "no output: c = 97 'a'"
    printed = last_value.read_value(b"6 8 1 1234\n2\n1 + 1\n")
    assert printed is not None and last_value.line_for(printed, "1 + 1") == ""
    # A macro: gdb expands it too, but into anything; the record does not count.
    macro = last_value.read_value(b"0 8 1 1234\n-1\n(-1)\n")
    assert macro is not None and last_value.line_for(macro, "EOF") is None


@pytest.mark.parametrize("data", [
    b"", b"0 8 1\n2\n1\n", b"0 8 1 x\n2\n1\n", b"0 8 1 2\n2\n1\nmore"])
def test_no_record_or_a_broken_one(data: bytes) -> None:
    assert last_value.read_value(data) is None
