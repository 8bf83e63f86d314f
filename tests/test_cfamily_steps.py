"""The pure steps of the C-family and Java preprocessing, without astyle.

The expectations follow the original's code (host/lib/Languages/_c_base.pm, java.pm and
Text::Balanced), read rule by rule: they are inferred, not observed. The observed whole-program
table is in test_cfamily_preprocess.py.
"""

from __future__ import annotations

import pytest

from pbotvm.host.request import java
from pbotvm.host.request.cfamily.preprocess import (
    Dialect,
    clean_up,
    has_unterminated_directive,
    insert_newlines,
    is_printable_statement,
    preprocess,
    split_header,
    wrap_last_statement,
)
from pbotvm.host.request.statements.analysis import (
    analysis_copy,
    blank_literals,
    strip_block_comments,
    strip_line_comments,
)
from pbotvm.host.request.statements.custom_options import (
    CustomOptions,
    take_custom_options,
    take_java_options,
)
from pbotvm.host.request.statements.functions import (
    C_SYNTAX,
    JAVA_SYNTAX,
    UnmatchedBrackets,
    extract_functions,
    take_braced,
)
from pbotvm.host.request.statements.program import main_body

PLAIN = Dialect("#include <stdio.h>\n\n")


# --- custom options (-nomain -noheaders -include) -------------------------------------------

@pytest.mark.parametrize(("code", "rest", "options"), [
    ("-nomain int x;", "int x;", CustomOptions(nomain=True)),
    ("int x; -NoMain", "int x; ", CustomOptions(nomain=True)),
    ("x-nomain y", "x-nomain y", CustomOptions()),  # only at the start or after whitespace
    ("-nomainly x", "ly x", CustomOptions(nomain=True)),  # a prefix is enough
    ("-noheaders -nomain f();", "f();", CustomOptions(nomain=True, noheaders=True)),
    ("-include stdio.h -include math.h x", "x", CustomOptions(includes=("stdio.h", "math.h"))),
    ("x -include stdio.h", "x -include stdio.h", CustomOptions()),  # whitespace must follow
    ("-INCLUDE a.h x", "-INCLUDE a.h x", CustomOptions()),  # -include is case-sensitive
])
def test_custom_options(code: str, rest: str, options: CustomOptions) -> None:
    assert take_custom_options(code) == (rest, options)


def test_java_knows_no_include_option() -> None:
    assert take_java_options("-include a.h -nomain x") == ("-include a.h x",
                                                          CustomOptions(nomain=True))


# --- newline insertion after ; and #include -------------------------------------------------

@pytest.mark.parametrize(("code", "expected"), [
    ("a; b; c", "a;\n b;\n c"),
    ("a;\nb;", "a;\nb;\n"),  # not twice, but after the last one
    ("for (i = 0; i < 3; i++) x;", "for (i = 0; i < 3; i++) x;\n"),
    ('puts("a;b"); c = \';\';', 'puts("a;b");\n c = \';\';\n'),
    ("#include <stdio.h> x;", "#include <stdio.h>\n x;\n"),
    ('#include "a.h" x;', '#include "a.h"\n x;\n'),
    ("#define A 1; x; y", "#define A 1; x; y"),  # a directive runs to the end of its line
    ("#define A 1\nx; y", "#define A 1\nx;\n y"),
    # A search, not a match: the include after the #define gets the newline.
    ("#define A 1; #include <b.h> x;", "#define A 1; #include <b.h>\n x;\n"),
    # The quoted-include search starts from the beginning of the code.
    ('f("include", "x"); #define Z', 'f("include", "\nx");\n #define Z'),
    # \n outside quotes becomes a newline, and the scan skips the next character.
    ("x\\n;y", "x\n;y"),
    ('"a\\n;"; b', '"a\\n;";\n b'),
])
def test_insert_newlines(code: str, expected: str) -> None:
    assert insert_newlines(code) == expected


@pytest.mark.parametrize(("code", "expected"), [
    ("int x; x++;", "int x;\n x++;\n"),
    ("if (x) {y;}", "if (x) {\ny;\n}\n"),
    ("a {\n}; b", "a {\n};\n b"),  # no newline between } and ;
    ('s = "{;}";', 's = "{;}";\n'),
])
def test_java_insert_newlines(code: str, expected: str) -> None:
    assert java.insert_newlines(code) == expected


# --- literals, header, unterminated directive -----------------------------------------------

def test_blank_literals_keeps_lengths() -> None:
    assert blank_literals('a = "x\\"y"; c = \'z\';') == 'a = "----"; c = \'-\';'
    # Double quotes go first, so a '"' opens a string up to the next double quote.
    assert blank_literals('c = \'"\'; d = "\'";') == 'c = \'---------\'";'


def test_header_is_the_leading_directives_and_using_lines() -> None:
    header, rest = split_header("#define A 1\n\n\n#include <a.h>\nusing namespace std;\nint x;")
    assert header == "#define A 1\n\n#include <a.h>\nusing namespace std;\n"
    assert rest == "int x;"


@pytest.mark.parametrize(("precode", "flag"), [
    ("#define X 1", True),
    ("int x;\n #define Y 2", True),  # the first line that is a directive, not the first line
    ("#define X 1\nint x;", False),
    ("#if 1\nint x;\n#endif", False),
    ("int x; #define Y 2", False),
])
def test_unterminated_directive(precode: str, flag: bool) -> None:
    assert has_unterminated_directive(precode) is flag


# --- comments and function extraction -------------------------------------------------------

@pytest.mark.parametrize(("code", "expected"), [
    ("a // b\nc", "a c"),
    ("a // b \\\n c\nd", "a d"),  # a backslash continues the comment
    ("a // b \\\n c", "a  c"),  # to the last newline when none ends it
    ("a // b", "a // b"),  # without a newline it stays
    ('s = "//"; t', 's = "//"; t'),
])
def test_strip_line_comments(code: str, expected: str) -> None:
    assert strip_line_comments(code) == expected


def test_strip_block_comments_leaves_a_space() -> None:
    assert strip_block_comments("a/* x ** y */b/**/c") == "a b c"


def test_comment_order_differs_for_c89() -> None:
    code = "/* // */ x\ny"
    assert analysis_copy(code, block_comments_first=True) == "  x\ny"
    assert analysis_copy(code) == "/* y"


@pytest.mark.parametrize(("text", "expected"), [
    ("{a{b}c}d", ("{a{b}c}", "d")),
    ("  {x} y", ("{x}", " y")),
    ("{\\}}x", ("{\\}}", "x")),  # a backslash escapes
    ('{"}"', ('{"}', '"')),  # quotes are not special
    ("{a", None),
    ("x{}", None),
])
def test_take_braced(text: str, expected: tuple[str, str] | None) -> None:
    assert take_braced(text) == expected


def _extract(code: str) -> tuple[str, str, bool]:
    found = extract_functions(code, analysis_copy(code), C_SYNTAX)
    return found.functions, found.rest, found.has_main


def test_functions_are_lifted_with_the_code_before_them() -> None:
    code = "int x = 1;\nint f(int a) { return a;\n } f(x)"
    assert _extract(code) == ("int x = 1;\n\nint f(int a) { return a;\n }\n", " f(x)", False)


def test_statements_with_braces_are_no_functions() -> None:
    code = "if (a) { }\nelse if(b){ c;\n }"
    # Put back as "<type> <name> (<parameters>) <body>".
    assert _extract(code) == ("", "if (a) { }\nelse if (b) { c;\n }", False)


@pytest.mark.parametrize("name", ["main", "(main)", " main "])
def test_main_is_found(name: str) -> None:
    assert _extract(f"int {name}(void) {{ return 0;\n }}")[2]


def test_digraph_and_trigraph_bodies() -> None:
    assert _extract("int f(void) <% return 1; %>\nx")[0] == "\nint f(void) { return 1; }\n"
    assert _extract("int f(void) ??< return 1; ??>")[0] == "\nint f(void) { return 1; }\n"


def test_unbalanced_body_is_an_error() -> None:
    with pytest.raises(UnmatchedBrackets, match=r"^error: unmatched brackets$"):
        _extract("int f(void) { return 1;\n f()")


# A comment before a candidate shifts its offset in the real text; when the re-read there
# fails, the original used the captures of its last match. Both outputs were checked by
# running the original's _c_base.pm on these inputs.
def test_failed_re_read_after_a_blanked_comment_puts_back_an_empty_candidate() -> None:
    result = preprocess("/* xxxxxxxx */ /**/ int f() {} 1", PLAIN, CustomOptions(noheaders=True))
    assert result.code == "int main(int argc, char *argv[]) {\n/* x  ()\n;\nreturn 0;\n}"


def test_failed_re_read_with_a_captured_comment_tail_is_an_error() -> None:
    with pytest.raises(UnmatchedBrackets):
        preprocess("/* xxxxxxxx */ /* a * b */ int f() {} 1", PLAIN, CustomOptions(noheaders=True))


def test_a_candidate_is_located_by_its_first_occurrence() -> None:
    # Line 1 is no candidate (it starts with `=`), but it holds the text of line 2's, so the
    # extraction starts there. Checked by running the original's _c_base.pm.
    result = preprocess("=int f(){}\\nint f(){}", PLAIN, CustomOptions(noheaders=True))
    assert result.code == ("=\nint f() {}\n\n\nint f() {}\n\n"
                           "int main(int argc, char *argv[]) {\nreturn 0;\n}")


def test_java_methods() -> None:
    code = "static int sq(int x) {\nreturn x*x;\n}\nfor (;;) {\n}\n"
    found = extract_functions(code, analysis_copy(code), JAVA_SYNTAX)
    assert found.functions == "\nstatic int sq(int x) {\nreturn x*x;\n}\n"
    assert found.rest == "\nfor (;;) {\n}\n"


# --- the last statement (print_last_statement) ----------------------------------------------

@pytest.mark.parametrize(("statement", "printable"), [
    ("1 + 1", True),
    ("x == 1", True),
    ("c += 1", True),
    ("sizeof x", True),
    ("f(x)", True),
    ("x = 5", False),
    ("int a", False),
    ("printf(\"x\")", False),
    ("puts(s)", False),
    ("sscanf(s, \"%d\", &n)", False),
    ("execvp(a, b)", False),
    ("return 3", False),
    ("whatis(x)", False),  # deliberate fix: the original wrapped it, then hung in gdb
    ("x /* c */", False),
    ("1 ??! 2", False),
    ("a[0]{", False),
    ("", False),
    ("+-", False),
])
def test_printable_statements(statement: str, printable: bool) -> None:
    assert is_printable_statement(statement) is printable


@pytest.mark.parametrize(("functions", "body", "expected"), [
    ("", "int x = 1;\n x + 1", "int x = 1;\n print_last_statement(x + 1);"),
    ("", "x;", " print_last_statement(x);"),
    ("", "int x = 1;\n x = 2;", "int x = 1;\n x = 2;"),
    ("void f(void) { print(1); }", "f()", "f()"),  # a gdb command in a function
    ("void f(void) { whatis(1); }", "f()", "f()"),
    # A line that ends in whitespace lets the search start there: the newline goes too.
    ("", "a; \nb", "a; print_last_statement(b);"),
])
def test_wrap_last_statement(functions: str, body: str, expected: str) -> None:
    assert wrap_last_statement(functions, body) == expected


@pytest.mark.parametrize(("rest", "expected"), [
    ("{ x; }", ("", " x; ")),
    ("};\nx;", ("};", "\nx;")),
    ("} x", ("}", " x")),
    ("x", ("", "x")),
])
def test_main_body(rest: str, expected: tuple[str, str]) -> None:
    assert main_body(rest) == expected


def test_clean_up() -> None:
    assert clean_up("\n a|nb;;\n{\n ;\nc;\n\n\n\nd \n") == "a\nb;\n{\nc;\n\nd"


# --- whole preprocessing, without astyle ------------------------------------------------------


def test_statements_become_main() -> None:
    result = preprocess("int x = 1; x", PLAIN, CustomOptions())
    assert result.code == ("#include <stdio.h>\n\n\n#include <prelude.h>\n\n\n"
                           "int main(int argc, char *argv[]) {\nint x = 1;\n"
                           " print_last_statement(x);\nreturn 0;\n}")
    assert not result.unterminated_directive


def test_code_after_main_is_kept() -> None:  # deliberate fix: the original dropped it
    result = preprocess("int main(void) { return 0; } int y;", PLAIN, CustomOptions())
    assert result.code.endswith("int main(void) { return 0;\n }\n\nint y;")


def test_noheaders_means_no_prelude_and_no_wrapping() -> None:
    result = preprocess("1+1", PLAIN, CustomOptions(noheaders=True))
    assert result.code == "int main(int argc, char *argv[]) {\n1+1\n;\nreturn 0;\n}"


def test_include_options_replace_the_prelude() -> None:
    result = preprocess("x", PLAIN, CustomOptions(includes=("a.h", "b.h")))
    assert result.code.startswith("#include <a.h>\n#include <b.h>\n\n#include <prelude.h>\n")


def test_java_wraps_statements_in_class_prog() -> None:
    assert java.preprocess("int x = 1; f(x);", "import a.*;\n\n", CustomOptions()) == (
        "import a.*;\n\n\nclass prog {\n\npublic static void main(String[] args) {\n"
        "int x = 1;\n f(x);\n}\n}")


def test_java_loses_the_semicolon_of_a_statement_after_a_comment() -> None:
    # The original's clean-up joins `; // c` with the next statement and drops its `;`.
    assert java.clean_up("f(x);\n // c\ng();\n}") == "f(x);\n // c\ng()}"
