"""The last statement's value printed by the program: which statements qualify, the code the
program is built from, and the printer's record (pure; the runs are in test_cfamily_stack)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from pbotvm.guest.cfamily import elf_symbols, last_value
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


def test_a_pointer_named_alone_is_printed() -> None:
    program = last_value.program(code("print_last_statement(s);", "    char *s = \"hi\";"))
    assert program is not None and program.sites == (Site(Mode.LAST, "s"),)
    assert "__pbotvm_value(0, 0, __pbotvm_xs(s), 12, " in program.source
    # argv, declared as main's ``char *argv[]``, is a pointer too
    assert last_value.program(code("print_last_statement(argv);")) is not None
    # not through arithmetic: gdb prints the string from its own sum
    assert last_value.program(code("print_last_statement(s + 1);",
                                   "    char *s = \"hi\";")) is None


@pytest.mark.parametrize("source", [
    code("puts(\"hi\");"),  # nothing to print
    code("print_last_statement(1 + 1);", "    size_t x = 5;\n    ptype(x);"),  # gdb runs anyway
    code("print(x, y);", "    int x = 1, y = 2;"),
    code("if (print(x), 1) puts(\"\");", "    int x = 1;"),  # not a statement
    code("print_last_statement(c);", "    wchar_t c = L'a';"),  # gdb: 97 L'a'
    code("x = 1; print_last_statement(1 + 1);", "    int x;"),  # not a line of its own
    code("print_last_statement(f(1));"),
    # declared as what it cannot print: not worth a compile
    code("print_last_statement(a);", "    int a[3] = {1, 2, 3};"),
    code("print_last_statement(p);", "    int x, * const p = &x;"),
    code("print_last_statement(v);", "    struct { int a; } v = {1};"),
    code("print_last_statement(v);", "    struct S v;"),
    "#define int long\n" + code("print_last_statement(1 + 1);"),  # the printer's words
    "int read(void) { return 0; }\n" + code("print_last_statement(1 + 1);"),  # its calls
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


# The maps lines a PIE program run without address randomisation has.
_EXE = "555555554000-555555556000 r--p 00000000 08:01 1234 /home/vm/w/prog"
_RODATA = "555555558000-555555559000 r--p 00004000 08:01 1234 /home/vm/w/prog"
_STACK = "7ffffffde000-7ffffffff000 rw-p 00000000 00:00 0 [stack]"
_HEAP = "555555570000-555555591000 rw-p 00000000 00:00 0 [heap]"
_LIBC = "7ffff7c00000-7ffff7c28000 r--p 00000000 08:01 99 /usr/lib/x86_64-linux-gnu/libc.so.6"
# .rodata at 0x4000 (0x30 bytes) with one symbol, _IO_stdin_used (4 bytes at 0x4000)
_SYMBOLS = elf_symbols.Program(0, ((0x4000, 0x4030, 16),), ((0x4000, 4, 16),))


def _record(type_name: str, address: int, line: str, data: str) -> str:
    return f"*{type_name}|{address:x}|{_EXE}|{line}|{data}"


@pytest.mark.parametrize(("record", "shown"), [
    (_record("char *", 0x555555558011, _RODATA, b"hi\0".hex()), '0x555555558011 "hi"'),
    (_record("const char *", 0x555555558011, _RODATA, b"\0".hex()), '0x555555558011 ""'),
    (_record("unsigned char *", 0x7fffffffe390, _STACK, b"ab\0\0".hex()),
     '(unsigned char *) 0x7fffffffe390 "ab"'),
    (_record("int *", 0x7fffffffe394, _STACK, "-"), "(int *) 0x7fffffffe394"),
    (_record("void *", 0x555555572760, _HEAP, "-"), "(void *) 0x555555572760"),
    (_record("int *", 0, "", "-"), "(int *) 0x0"),
    (_record("char *", 0, "", "-"), "0x0"),
    (_record("char **", 0, "", "-"), "(char **) 0x0"),
    (_record("int *", 1, "", "-"), "(int *) 0x1"),
    (_record("char *", 1, "", "!"), "0x1 <error: Cannot access memory at address 0x1>"),
    (_record("char *", 0x555555558011, _RODATA, b'a\tb"c\\\0'.hex()),
     '0x555555558011 "a\\tb\\"c\\\\"'),
    (_record("char *", 0x555555558011, _RODATA, b"aaaaaaaaaa\0".hex()),
     '0x555555558011 "aaaaaaaaaa"'),
    # gdb's 200 characters, and "..." only when the string goes on after them
    (_record("char *", 0x555555572760, _HEAP, (bytes(range(65, 75)) * 20 + b"\0").hex()),
     '0x555555572760 "' + "ABCDEFGHIJ" * 20 + '"'),
    (_record("char *", 0x555555572760, _HEAP, (bytes(range(65, 75)) * 20 + b"K").hex()),
     '0x555555572760 "' + "ABCDEFGHIJ" * 20 + '"...'),
])
def test_a_pointer_as_gdb_prints_it(record: str, shown: str) -> None:
    assert last_value.pointer_text(record, lambda: _SYMBOLS) == shown


@pytest.mark.parametrize("record", [
    _record("int *", 0x555555558000, _RODATA, "-"),  # _IO_stdin_used: gdb says <…>
    _record("int *", 0x7ffff7c00010, _LIBC, "-"),  # a library's: its symbols
    _record("char *", 0x555555558011, _RODATA, b"aaaaaaaaaaa\0".hex()),  # <repeats 11 times>
    _record("char *", 0x555555558011, _RODATA, "c3a900"),  # not ASCII
    _record("char *", 0x555555558011, _RODATA, "1b00"),  # an escape byte: \033 after MI
    _record("char *", 0x555555558011, _RODATA, b"ab".hex()),  # memory ends first
    _record("char *", 0x555555558011, _RODATA, "!"),  # mapped, yet unreadable
    "*char *|zz|||-", "*char *|1|-",  # not a record
])
def test_a_pointer_left_to_gdb(record: str) -> None:
    assert last_value.pointer_text(record, lambda: _SYMBOLS) is None


def test_a_pointer_into_the_program_needs_its_symbols() -> None:
    record = _record("char *", 0x555555558011, _RODATA, b"hi\0".hex())
    assert last_value.pointer_text(record, lambda: None) is None


def test_the_program_s_symbols(tmp_path: Path) -> None:
    """gdb names an address a symbol covers, or one after a label; not one between."""
    if shutil.which("cc") is None:
        pytest.skip("needs a C compiler")
    (tmp_path / "p.c").write_text("int g[4] = {1};\nstatic const char t[] = \"hi\";\n"
                                  "int main(void) { return g[0] + t[0]; }\n")
    subprocess.run(["cc", "-O0", "-o", str(tmp_path / "p"), str(tmp_path / "p.c")],
                   check=True)
    program = elf_symbols.read(tmp_path / "p")
    assert program is not None and program.first_load == 0
    symbols = {line.split()[-1]: int(line.split()[0], 16) for line in subprocess.run(
        ["nm", str(tmp_path / "p")], check=True, capture_output=True,
        text=True).stdout.splitlines() if len(line.split()) == 3}
    assert program.may_name(symbols["g"]) and program.may_name(symbols["g"] + 12)
    assert program.may_name(symbols["t"] + 2)
    assert not program.may_name(0)  # in no section
    assert elf_symbols.read(tmp_path / "p.c") is None
