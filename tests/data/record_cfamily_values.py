"""Record, from a running original, its replies to last statements of every scalar type and
of pointers (not a test): the rows of tests/data/cfamily_values.json, which
test_cfamily_values asks of ours.

    PBOT_GIT=… sudo -E ../shared/tools/original/up
    .venv/bin/python tests/data/record_cfamily_values.py > tests/data/cfamily_values.json
    sudo ../shared/tools/original/down

Each row is asked in a channel of its own, so that "Same output." never answers it. The code
is written as astyle formats it (the original's astyle 3.1 fails on a relative file name
here, and sends the code as typed).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ASK = Path(__file__).resolve().parents[3] / "shared" / "tools" / "original" / "ask"

# (name, code as a channel types it): the program prints the value (or the type, for whatis
# and ptype) itself for the first group, but where test_cfamily_values.BY_GDB says; gdb
# answers the second (a type, a value or a statement the printer leaves to it). A whatis is
# never the last statement: there, the original hung until its gdb time-out (a defect).
CASES: list[tuple[str, str]] = [
    ("sum", "1 + 1"),
    ("sizeof_int", "sizeof(int)"),
    ("sizeof_long_double", "sizeof(long double)"),
    ("division", "10 / 3"),
    ("negative_remainder", "-7 % 3"),
    ("double_division", "1.0 / 3"),
    ("int_name", "int x = 5; x"),
    ("int_comparison", "int x = 5; x > 2"),
    ("int_not", "int x = 3; !x"),
    ("int_complement", "int x = 3; ~x"),
    ("argc", "argc"),
    ("inner_scope_gone", "int x = 1; { int x = 2; } x"),
    ("char_letter", "char c = 'a'; c"),
    ("char_newline", "char c = '\\n'; c"),
    ("char_nul", "char c = 0; c"),
    ("char_escape", "char c = 27; c"),
    ("char_backslash", "char c = '\\\\'; c"),
    ("char_quote", "char c = '\\''; c"),
    ("char_double_quote", "char c = '\"'; c"),
    ("char_negative", "char c = -61; c"),
    ("char_delete", "char c = 127; c"),
    ("char_plus_one", "char c = 'a'; c + 1"),
    ("unsigned_char", "unsigned char c = 200; c"),
    ("signed_char", "signed char c = -1; c"),
    ("bool_true", "_Bool b = 1; b"),
    ("bool_false", "bool b = false; b"),
    ("short_negative", "short s = -5; s"),
    ("unsigned_short", "unsigned short us = 65535; us"),
    ("long_negative", "long l = 1; l - 5"),
    ("unsigned_long_wraps", "unsigned long ul = 0; ul - 1"),
    ("unsigned_wraps", "unsigned u = 0; u - 1"),
    ("long_long", "long long ll = -3; ll"),
    ("int8", "int8_t i = 65; i"),
    ("uint64", "uint64_t u = 18446744073709551615u; u"),
    ("float_tenth", "float f = 0.1f; f"),
    ("float_times_int", "float f = 1.5f; f * 2"),
    ("float_big", "float f = 1e10f; f"),
    ("double_tenth", "double d = 0.1; d"),
    ("double_whole", "double d = 100; d"),
    ("double_big", "double d = 123456789012345678; d"),
    ("negative_zero", "double d = -0.0; d"),
    ("infinity", "double d = 1e300; d * 1e10"),
    ("negative_infinity", "double d = -1e300; d * 1e10"),
    ("double_by_zero", "double x = 5; x / 0"),
    ("mixed", "int x = 7, y = 2; x / y * 1.0"),
    ("signed_against_unsigned", "int x = -1; unsigned u = 0; x < u"),
    ("unsigned_negated", "unsigned u = 5; -u"),
    ("short_product", "short s = 300; s * s"),
    ("float_sum", "float f = 0.1f; f + f + f"),
    ("float_times_double", "float f = 3; double d = 0.1; f * d"),
    ("denormal", "double d = 1e-320; d"),
    ("size_t_wraps", "size_t n = 3; n - 4"),
    ("libc_global", "optind"),
    ("libc_global_sum", "opterr + 1"),
    ("parenthesised", "int x = 4; ((x))"),
    ("printed_first", 'puts("hi"); 1 + 1'),
    ("printed_first_no_newline", 'int x = 5; printf("%d", x); x + 1'),
    ("stderr_first", 'fprintf(stderr, "e\\n"); 1 + 1'),
    ("c89", "-lang=c89 int x = 5; x * 2"),
    ("c99", "-lang=c99 double d = 2.5; d * 2"),
    ("c11", "-lang=c11 char c = 'z'; c"),
    ("clang", "-lang=clang int x = 5; x * 2"),
    ("clang_char", "-lang=clang char c = 'q'; c"),
    ("clang89", "-lang=clang89 float f = 0.1f; f"),
    ("cpp_comparison", "-lang=c++ int x = 5; x > 2"),
    ("print_int", "int x = 5; print(x);"),
    ("print_then_puts", 'int x = 5; print(x); puts("done");'),
    ("puts_then_print", 'puts("a"); int x = 5; print(x);'),
    ("print_in_loop", "for (int i = 0; i < 3; i++) print(i);"),
    ("print_char", "char c = 'a'; print(c);"),
    ("print_sum", "int x = 2; print(x * 3 + 1);"),
    ("dump_double", "double d = 0.25; dump(d);"),
    ("print_then_last", "int x = 5; print(x); x * 2"),
    ("print_in_function", "void f(int n) { print(n); } int main(void) { f(3); f(4); return 0; }"),
    ("print_bool", "_Bool b = 1; print(b);"),
    ("print_not_reached", 'int x = 1; if (x > 5) print(x); puts("no");'),
    ("print_stderr_between", 'int x = 5; fprintf(stderr, "e\\n"); print(x);'),
    ("print_in_string", 'puts("print(x);");'),
    ("enum_variable", "enum e { A, B } v = B; v"),
    ("print_enum", "enum e { A, B } v = B; print(v);"),
    ("enum_values", "enum color { RED = -2, GREEN, BLUE = 7, } c = GREEN; c"),
    ("enum_declared_apart", "enum e { A, B }; enum e v = A; v"),
    ("enum_same_values", "enum e { A = 1, B = 1 } v = B; print(v);"),
    ("enum_parameter", "enum e { A, B }; void f(enum e v) { print(v); } "
     "int main(void) { f(A); f(B); return 0; }"),
    ("enum_shadowed", "enum e { A, B } v = B; { int v = 3; print(v); }"),
    ("whatis_int", "int x = 5; whatis(x); puts(\"-\");"),
    ("ptype_int", "int x = 5; ptype(x);"),
    ("whatis_unsigned", "unsigned u = 5; whatis(u); puts(\"-\");"),
    ("whatis_long", "long l = 5; whatis(l); puts(\"-\");"),
    ("whatis_unsigned_long", "unsigned long ul = 5; whatis(ul); puts(\"-\");"),
    ("whatis_short", "short s = 5; whatis(s); puts(\"-\");"),
    ("whatis_unsigned_short", "unsigned short us = 5; whatis(us); puts(\"-\");"),
    ("whatis_long_long", "long long ll = 5; whatis(ll); puts(\"-\");"),
    ("whatis_unsigned_long_long", "unsigned long long ull = 5; whatis(ull); puts(\"-\");"),
    ("whatis_char", "char c = 'a'; whatis(c); puts(\"-\");"),
    ("whatis_signed_char", "signed char c = 'a'; whatis(c); puts(\"-\");"),
    ("whatis_unsigned_char", "unsigned char c = 'a'; whatis(c); puts(\"-\");"),
    ("whatis_bool_keyword", "_Bool b = 1; whatis(b); puts(\"-\");"),
    ("whatis_bool", "bool b = true; whatis(b); puts(\"-\");"),
    ("whatis_float", "float f = 1; whatis(f); puts(\"-\");"),
    ("whatis_double", "double d = 1; whatis(d); puts(\"-\");"),
    ("whatis_long_double", "long double d = 1; whatis(d); puts(\"-\");"),
    ("whatis_long_int", "long int l = 5; whatis(l); puts(\"-\");"),
    ("whatis_const_int", "const int k = 5; whatis(k); puts(\"-\");"),
    ("ptype_const_int", "const int k = 5; ptype(k);"),
    ("whatis_size_t", "size_t n = 5; whatis(n); puts(\"-\");"),
    ("ptype_size_t", "size_t n = 5; ptype(n);"),
    ("whatis_uint8", "uint8_t u = 5; whatis(u); puts(\"-\");"),
    ("whatis_char_pointer", 'char *s = "hi"; whatis(s); puts("-");'),
    ("whatis_const_char_pointer", 'const char *s = "hi"; whatis(s); puts("-");'),
    ("whatis_int_pointer", "int x = 1; int *p = &x; whatis(p); puts(\"-\");"),
    ("whatis_void_pointer", "void *p = 0; whatis(p); puts(\"-\");"),
    ("whatis_char_pointer_pointer", "char **pp = 0; whatis(pp); puts(\"-\");"),
    ("whatis_array", "int a[3] = {1, 2, 3}; whatis(a); puts(\"-\");"),
    ("whatis_enum", "enum e { A, B } v = B; whatis(v); puts(\"-\");"),
    ("ptype_enum", "enum e { A, B } v = B; ptype(v);"),
    ("whatis_sum", "whatis(1 + 1); puts(\"-\");"),
    ("whatis_sizeof", "whatis(sizeof(int)); puts(\"-\");"),
    ("whatis_char_plus_one", "char c = 'a'; whatis(c + 1); puts(\"-\");"),
    ("whatis_long_plus_one", "long l = 5; whatis(l + 1); puts(\"-\");"),
    ("whatis_unsigned_minus_one", "unsigned u = 5; whatis(u - 1); puts(\"-\");"),
    ("whatis_int_times_double", "int x = 5; whatis(x * 2.0); puts(\"-\");"),
    ("whatis_float_times_int", "float f = 1; whatis(f * 2); puts(\"-\");"),
    ("whatis_short_times_short", "short s = 5; whatis(s * s); puts(\"-\");"),
    ("whatis_comparison", "int x = 5; whatis(x > 2); puts(\"-\");"),
    ("whatis_char_literal", "whatis('a'); puts(\"-\");"),
    ("whatis_then_print", "int x = 5; whatis(x); print(x);"),
    ("whatis_in_function", "void f(long n) { whatis(n); } int main(void) { f(3); return 0; }"),
    ("ptype_double_expression", "double d = 1; ptype(d / 2);"),
    ("ptype_enum_values", "enum color { RED = -2, GREEN, BLUE = 7, X = 7 } c = GREEN; ptype(c);"),
    ("whatis_second_declarator", "int x = 1, y = 2; whatis(y); puts(\"-\");"),
    ("whatis_inner_scope", "int x = 1; { long x = 2; whatis(x); } puts(\"-\");"),
    ("whatis_unsigned_char_pointer", "unsigned char *p = 0; whatis(p); puts(\"-\");"),
    ("whatis_volatile", "volatile int v = 1; whatis(v); puts(\"-\");"),
    ("whatis_enumerator", "enum e { A, B }; whatis(A); puts(\"-\");"),
    ("whatis_double_pointer_sum", "double d = 1, *p = &d; whatis(p + 1); puts(\"-\");"),
    ("ptype_parameter",
     "void f(unsigned short u) { ptype(u); } int main(void) { f(1); return 0; }"),
    # pointers, and the strings at char pointers (2026-12-07)
    ('string_pointer', 'char *s = "hi"; s'),
    ('string_escapes', 'char *s = "a\\tb\\"c\\\\"; s'),
    ('string_controls', 'char *s = "x\\ay\\bz\\fw\\rv\\vq\\n"; s'),
    ('string_single_quote', 'char *s = "it\'s"; s'),
    ('print_string', 'char *s = "a b"; print(s);'),
    ('string_empty', 'char *s = ""; s'),
    ('string_ten_same', 'char *s = "aaaaaaaaaa"; s'),
    ('string_on_heap_200', "char *s = malloc(300); "
     "for (int i = 0; i < 200; i++) s[i] = 'a' + i % 26; s[200] = 0; s"),
    ('string_on_heap_250', "char *s = malloc(300); "
     "for (int i = 0; i < 250; i++) s[i] = 'a' + i % 26; s[250] = 0; s"),
    ('string_on_stack', 'char buf[8] = "ab"; char *p = buf; p'),
    ('null_char_pointer', 'char *s = 0; s'),
    ('null_int_pointer', 'int *p = 0; p'),
    ('null_pointer_pointer', 'char **pp = 0; pp'),
    ('void_pointer_heap', 'void *p = malloc(4); p'),
    ('int_pointer_stack', 'int x = 4; int *p = &x; p'),
    ('const_int_pointer', 'int x = 4; const int *p = &x; p'),
    ('unsigned_char_pointer', 'unsigned char *u = (unsigned char *) "hi"; u'),
    ('signed_char_pointer', 'signed char *s = (signed char *) "hi"; s'),
    ('const_char_pointer', 'const char *s = "hi"; s'),
    ('unreadable_char_pointer', 'char *s = (char *) 1; s'),
    ('unreadable_int_pointer', 'int *p = (int *) 1; p'),
    ('double_pointer_stack', 'double d = 1; double *p = &d; p'),
    ('argv', 'argv'),
    ('print_pointer', 'int x = 4; int *p = &x; print(p);'),
    ('pointer_then_value', 'int x = 4; int *p = &x; print(p); x'),
    # gdb's answer, whatever the program could print
    ("signed_overflow", "int x = 2147483647; x + 1"),
    ("clang_unsigned_wraps", "-lang=clang unsigned u = 0; u - 1"),
    ("int_by_zero", "int x = 5, z = 0; x / z"),
    ("enum_constant", "enum e { A, B }; B"),
    ("enum_constant_minus_one", "enum e { A, B }; B - 1"),
    ("null_deref", "int *p = 0; *p"),
    ("pointer_deref", "int x = 4; int *p = &x; *p"),
    ("array", "int a[3] = {1, 2, 3}; a"),
    ("nan", "double d = 0.0; d / d"),
    ("macro_int_max", "INT_MAX"),
    ("macro_eof", "EOF"),
    ("wide_char", "wchar_t w = L'a'; w"),
    ("const_int", "const int k = 4; k"),
    ("bool_sum", "_Bool b = 1; b + b"),
    ("bool_not", "_Bool b = 1; !b"),
    ("unsigned_short_product", "unsigned short us = 65535; us * us"),
    ("uninitialised", "int x; x"),
    ("enum_unnamed_value", "enum e { A, B } v = 5; v"),
    ("enum_typedef", "typedef enum { A, B } E; E v = B; v"),
    ("enum_plus_one", "enum e { A, B } v = B; v + 1"),
    ("print_nothing_else", "int x = 1; if (x > 5) print(x);"),
    ("print_and_ptype", "int x = 1; print(x); ptype(x);"),
    ("set_later", "int x; x = 3; x"),
    ("set_through_pointer", "int x; int *p = &x; *p = 7; x"),
    ("shift", "int x = 1; x << 3"),
    ("char_literal", "'a'"),
    ("hex_literal", "0x10 + 1"),
    # a pointer gdb names, or a string it shows otherwise (2026-12-07)
    ('global_pointer', 'static int g = 3; int *p = &g; p'),
    ('string_pointer_sum', 'const char *s = "hi"; s + 1'),
    ('string_eleven_same', 'char *s = "aaaaaaaaaaa"; s'),
    ('string_utf8', 'char *s = "\\xc3\\xa9"; s'),
    ('string_escape_byte', 'char *s = "\\033[1m"; s'),
    ('string_in_static_array', 'static const char msg[] = "hi"; const char *p = msg; p'),
    ('function_pointer', 'int (*f)(void) = 0; f'),
]


def ask(name: str, code: str) -> str:
    out = subprocess.run([str(ASK), "--channel", f"#{name}", code], capture_output=True,
                         text=True, check=True, timeout=120).stdout
    return str(ast.literal_eval(out))


def main() -> None:
    rows = [{"name": name, "code": code, "reply": ask(name, code)} for name, code in CASES]
    json.dump({"about": "Replies of the original (620ebe0e, Perl host and guest on PTYs) to "
               "last statements of each scalar type and of pointers; recorded by "
               "record_cfamily_values.py.",
               "rows": rows}, sys.stdout, indent=1, ensure_ascii=False)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
