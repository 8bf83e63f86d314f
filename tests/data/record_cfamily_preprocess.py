"""Record the C-family and Java preprocessing table from a running original (not a test).

    /work/tools/orig N up
    .venv/bin/python tests/data/record_cfamily_preprocess.py N > tests/data/cfamily_preprocess.json

Every row is asked of the original (each in a fresh channel, so "Same output." never
triggers). ``expected`` is the code it sent to the guest, copied from the "---- executing"
section of its vm-exec log (after astyle; Java is sent as written); ``reply`` is its final
answer (``portable`` is false when it names the instance's own paths). ``tokenized`` is the
code as the original's preprocessing received it: its option parsing (2023) collapsed
whitespace and split words after a closing quote. ``expected`` is None when nothing was sent
(``error: unmatched brackets``).
``fix`` names the original's defect by which our output deliberately differs: "23" (it dropped
the code after the last function), "25a" (it wrapped a trailing ``whatis``).
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ORIG = "/work/tools/orig"
_TIMESTAMP = r"\w{3} \w{3} [ \d]\d \d{4} \d\d:\d\d:\d\d\.\d{3} :: "
_EXECUTING = re.compile(_TIMESTAMP + r"---- executing\n")
_NEXT_SECTION = re.compile(r"\n(?=" + _TIMESTAMP + ")")
# "<nick> <channel>: [<arguments>] <compiler options> <code>"; no row has compiler options.
_PREPROCESS = re.compile(_TIMESTAMP + r"---- preprocess\n\S+ \S+: \[\]  (.*)\n")

# (name, lang or None for the default c2x, code, stdin or None, fix or None)
Case = tuple[str, str | None, str, str | None, str | None]
CASES: list[Case] = [
    ("bare_sum", None, "1+1", None, None),
    ("printf_newline_in_string", None, r'printf("hello\n");', None, None),
    ("declarations_then_sum", None, "int x = 5, y = 6; x + y", None, None),
    ("declarations_only", None, "int x = 5, y = 6;", None, None),
    ("function_then_printf", None, r'int f(int x) { return x*2; } printf("%d\n", f(21));',
     None, None),
    ("function_then_last_statement", None, "int sq(int x) { return x*x; } sq(7)", None, None),
    ("two_functions", None, "int a(void) { return 1; } int b(void) { return 2; } a() + b()",
     None, None),
    ("user_main", None, 'int main(void) { puts("hi"); return 0; }', None, None),
    ("user_main_then_leftover", None, 'int main(void) { puts("hi"); } int y;', None, "23"),
    ("code_before_user_main", None, 'int g = 4; int main(void) { printf("%d\\n", g); }',
     None, None),
    ("nomain_leftover", None, "-nomain int x;", None, "23"),
    ("nomain_with_main", None, '-nomain int main(void) { puts("nomain"); return 0; }',
     None, None),
    ("nomain_upper_case", None, '-NOMAIN int main(void) { puts("u"); }', None, None),
    ("noheaders_with_include_option", None, '-noheaders -include stdio.h puts("n");', None,
     None),
    ("noheaders", None, '-noheaders int puts(const char *); puts("bare");', None, None),
    ("include_option", None, '-include stdio.h puts("inc");', None, None),
    ("two_include_options", None, "-include stdio.h -include string.h "
     'printf("%zu\\n", strlen("abc"));', None, None),
    ("include_inline", None, '#include <stdio.h> puts("x");', None, None),
    ("include_quoted_inline", None, '#include "stdio.h" puts("q");', None, None),
    ("define_unterminated", None, "#define SQ(x) ((x)*(x)) SQ(3)", None, None),
    ("define_with_newline_escape", None, r"#define N 5\nN*2", None, None),
    ("define_then_include_later", None, '#define X 1 #include <stdio.h> puts("y");', None,
     None),
    ("define_after_statement", None, "int x = 1; #define Y 2", None, None),
    ("newline_escapes", None, r"int x = 1;\nint y = 2;\nx + y", None, None),
    ("string_with_semicolon_and_braces", None, r'printf("a;b{c}\n");', None, None),
    ("char_semicolon", None, "char c = ';'; c", None, None),
    ("string_braces_in_function", None, 'void f(void) { puts("}{"); } f();', None, None),
    ("line_comment", None, r"// hello\nint x = 3; x", None, None),
    ("apostrophe_in_comment", None, r"// don't\nint x = 1;\nx", None, None),
    ("block_comments", None, "/* a */ int x = 4; /* b */ x", None, None),
    ("block_comment_before_function", None, "/* pre */ int f(void) { return 8; } f()", None,
     None),
    ("line_comment_before_function", None, r"// pre\nint f(void) { return 8; } f()", None,
     None),
    ("c89_block_comment_with_slashes", "c89",
     "/* // */ int f(void) { return 1; } f()", None, None),
    ("c2x_block_comment_with_slashes", None, "/* // */ int f(void) { return 1; } f()", None,
     None),
    ("digraph_function", None, "int f(void) <% return 5; %> f()", None, None),
    ("trigraph_function", None, "int f(void) ??< return 6; ??> f()", None, None),
    ("knr_function_c89", "c89", "int add(a, b) int a; int b; { return a + b; } add(2, 3)",
     None, None),
    ("pointer_returning_function", None,
     'char *greet(void) { return "hi"; } puts(greet());', None, None),
    ("pointer_returning_int", None, "int *p(void) { static int v = 7; return &v; } *p()",
     None, None),
    ("static_function", None, "static int twice(int x) { return 2*x; } twice(4)", None, None),
    ("parenthesised_main", None, 'int (main)(void) { puts("pm"); }', None, None),
    ("struct_definition", None, "struct p { int x, y; }; struct p a = {1, 2}; a.x + a.y", None,
     None),
    ("typedef_struct", None, "typedef struct { int v; } box; box b = { 9 }; b.v", None, None),
    ("switch_not_function", None,
     'int x = 2; switch (x) { case 2: puts("two"); break; }', None, None),
    ("for_not_function", None, 'for (int i = 0; i < 3; i++) { printf("%d", i); }', None,
     None),
    ("while_then_value", None, "int i = 0; while (i < 3) { i++; } i", None, None),
    ("if_else", None, 'int x = 1; if (x) { puts("yes"); } else { puts("no"); }', None, None),
    ("whole_code_braced", None, "{ int x = 2; x * 3; }", None, None),
    ("leading_close_brace_leftover", None, 'void f(void) { } }; puts("x");', None, None),
    ("sizeof_x", None, "int x; sizeof x", None, None),
    ("equality", None, "char c = 0; c == 1", None, None),
    ("compound_assignment", None, "int c = 1; c += 1", None, None),
    ("assignment_not_printed", None, "int x; x = 5", None, None),
    ("strlen_printed", None, 'strlen("abc")', None, None),
    ("puts_not_printed", None, 'puts("p")', None, None),
    ("scanf_not_printed", None, 'int n; scanf("%d", &n); printf("%d\\n", n*2); n',
     "21", None),
    ("scanf_last", None, 'int n; scanf("%d", &n)', "5", None),
    ("return_not_printed", None, "return 3", None, None),
    ("assert_not_printed", None, "assert(1)", None, None),
    ("memset_not_printed", None, "char b[4]; memset(b, 0, 4)", None, None),
    ("do_while_last", None, "int i = 0; do i++; while (i < 2)", None, None),
    ("ptype_not_printed", None, "int x = 3; ptype(x)", None, None),
    ("print_in_function", None, "void f(int x) { print(x); } f(5)", None, None),
    ("comment_in_last_statement", None, "int x = 1; x /* c */", None, None),
    ("trigraph_in_last_statement", None, "1 ??! 2", None, None),
    ("empty_last_statement", None, "int x = 1; ;", None, None),
    ("whatis_last_statement", None, "int x = 3; whatis(x)", None, "25a"),
    ("unmatched_brackets", None, "int f(void) { return 1; f()", None, None),
    ("include_search_from_start", None, 'printf("%s%s\\n", "include", "x"); #define Z 1', None,
     None),
    ("include_only_in_string", None, 'puts("#include");', None, None),
    ("block_comment_in_function_string", None, 'void f(void) { puts("/* x */"); } f();', None,
     None),
    ("doubled_semicolon", None, "1+1;;", None, None),
    ("utf8_string", None, 'puts("h\u00e9llo");', None, None),
    ("pipe_n_becomes_newline", None, 'printf("a|nb\\n");', None, None),
    ("c89_sum", "c89", "1+1", None, None),
    ("c99_sum", "c99", "1+1", None, None),
    ("c11_sum", "c11", "1+1", None, None),
    ("clang_sum", "clang", "1+1", None, None),
    ("clang89_sum", "clang89", "1+1", None, None),
    ("clang99_sum", "clang99", "1+1", None, None),
    ("clang11_sum", "clang11", "1+1", None, None),
    ("tendra_sum", "tendra", "1+1", None, None),
    ("cpp_sum", "cpp", "1+1", None, None),
    ("cpp_using_line", "cpp",
     r"#include <iostream>\nusing namespace std;\nint main() { cout << 1 << endl; }", None,
     None),
    ("java_println", "java", 'System.out.println("hi");', None, None),
    ("java_statements", "java", "int x = 5; System.out.println(x * 2);", None, None),
    ("java_method", "java", "static int sq(int x) { return x*x; } System.out.println(sq(4));",
     None, None),
    ("java_import", "java",
     "import java.util.*; List<Integer> l = new ArrayList<>(); l.add(1); "
     "System.out.println(l);", None, None),
    ("java_nomain_class", "java",
     '-nomain class prog { public static void main(String[] a) { System.out.println("x"); } }',
     None, "23"),
    ("java_class_with_main", "java",
     'class prog { public static void main(String[] a) { System.out.println("x"); } }', None,
     "23"),
    ("java_for_loop", "java", "for (int i = 0; i < 3; i++) { System.out.print(i); }", None,
     None),
    ("java_comments", "java", r"// c\nint y = 2; System.out.println(y); /* d */", None, None),
    ("java_noheaders", "java", "-noheaders System.out.println(1);", None, None),
]


def _ask(instance: str, channel: str, text: str) -> str:
    out = subprocess.run([ORIG, instance, "ask", "--channel", channel, text],
                         capture_output=True, text=True, check=True).stdout
    return str(ast.literal_eval(out))


def _ask_when_ready(instance: str, channel: str, text: str, log: Path) -> tuple[str, str]:
    """The reply and the log written meanwhile, asking again while the machine resets."""
    for attempt in range(10):
        offset = log.stat().st_size
        reply = _ask(instance, f"{channel}-{attempt}", text)
        if reply != "Virtual machine is resetting, try again soon.\n":
            with log.open(encoding="utf-8", errors="replace") as file:
                file.seek(offset)
                return reply, file.read()
        time.sleep(3)
    raise RuntimeError(f"the original kept resetting for {text!r}")


def _sent_code(log_part: str) -> str | None:
    """The code of the "---- executing" section: after the cmdline and stdin lines."""
    start = _EXECUTING.search(log_part)
    if start is None:
        return None
    section = log_part[start.end() :]
    end = _NEXT_SECTION.search(section)
    body = section[: end.start()] if end else section
    return body.split("\n", 2)[2]


def _tokenized(log_part: str) -> str | None:
    """The code as the original's preprocessing got it (after its option handling)."""
    found = _PREPROCESS.search(log_part)
    return None if found is None else found[1]


def main() -> None:
    instance = sys.argv[1]
    log = Path(subprocess.run([ORIG, instance, "log"], capture_output=True, text=True,
                              check=True).stdout.strip())
    run = int(time.time()) % 100000  # channels differ between runs too
    rows: list[dict[str, Any]] = []
    for number, (name, lang, code, stdin, fix) in enumerate(CASES):
        text = (f"-lang={lang} " if lang else "") + code + (f" -stdin {stdin}" if stdin else "")
        reply, part = _ask_when_ready(instance, f"#cprep{run}-{number}", text, log)
        rows.append({"name": name, "lang": lang or "c2x", "input": text, "code": code,
                     "stdin": stdin, "tokenized": _tokenized(part), "expected": _sent_code(part),
                     "reply": reply, "portable": "/tmp/pbotvm-original" not in reply,
                     "fix": fix})
        print(name, repr(reply)[:100], file=sys.stderr)
    json.dump(rows, sys.stdout, indent=1, ensure_ascii=False)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
