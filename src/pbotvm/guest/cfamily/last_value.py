"""The value of a C snippet's last statement, or of its ``print(x)``, printed by the
program itself, not by gdb.

The host wraps a last statement such as ``1 + 1`` as ``print_last_statement(1 + 1);`` and the
original's gdb printed ``no output: 1 + 1 = 2`` when the program had printed nothing; for
prelude.h's ``print(x)`` and ``dump(x)`` it printed ``x = 5`` where the program was. gdb cost
most of such an answer (about 2 s of 3 in a TCG guest). Where the program can be shown to
print each value as gdb's ``print`` does, each of those places becomes a call of a small
printer appended to the source, and the program runs directly. It answers for scalars (the
integer types, ``char`` as ``97 'a'``, ``_Bool``, ``float`` and ``double`` but NaN, and a
variable of an enum as its enumerator's name), for a variable that is a pointer of a basic
type (``(int *) 0x7fffffffe394``; a ``char *`` with its string, ``0x555555558043 "hi"``), and
for the types ``whatis(x)`` and ``ptype(x)`` show when they are made of basic type words alone
(``type_names``); for anything else it declines and the request goes to gdb as before.

A pointer's address is the one in the program that ran. It is not the original's (our quick
compile links with gold), nor the one gdb's program would have had (the printer moves the
program's data): as with any program that prints an address, it holds for that run. The
printer records the line of ``/proc/self/maps`` that holds it, so that gdb keeps every
address it would name (``<g>``: a symbol of the program, ``elf_symbols``, or a library's),
and the bytes a ``char *`` points at, read through a pipe (an unreadable address gives gdb's
``<error: Cannot access memory…>``); gdb's string rules (200 characters, ``<repeats N
times>`` beyond 10 alike, escapes) are kept where they are plain and left to gdb otherwise.

What keeps the two the same:
* the statement is plain arithmetic on variables and decimal literals (``sizeof`` of a basic
  type too), or a pointer variable alone: no calls, casts, pointer arithmetic, strings,
  assignments, shifts (gdb and C differ on shift counts past the width), arithmetic on a
  ``_Bool`` (gdb refuses it) or macros (gdb expands them too, but into anything: the
  program reports the statement as its preprocessor expanded it, and an expansion is
  refused). A name the compiler sees as a constant (an enumerator: gdb prints its name, and
  types it as its enum) is refused, as is a name of enum type, and a variable read before it
  is set (``OPTIONS``): all of these when it compiles, so that at run time the printer
  declines NaN, and a pointer or string gdb would show otherwise (above). A statement that is
  just a variable of a tagged enum whose enumerators read plainly from the code (``enums``)
  is printed as a number, named here by its enumerator (none: gdb answers), once the compile
  has checked that the variable has that type;
* no wide character types in the code (gdb prints a ``wchar_t`` as ``97 L'a'``), no
  macro named as a keyword (the printer is C that the code's macros must not rewrite), and
  no function of the code's own named as one of the C library's that the printer calls;
* the compiler is the language's own, with its default options: a C compiler with
  ``_Generic``, and UndefinedBehaviorSanitizer, which the printer makes stop the program at
  its first report (gdb evaluates without it): the run is then done again under gdb;
* the printer writes its value to a descriptor of its own, with the size of its stdout and
  which file that is; the runner puts ``no output: …`` into the output at that place, as gdb's
  driver did, only when that file was the program's output and empty;
* the program then ends by itself; a signal or the sanitizer's stop sends the request to gdb.

tests/test_cfamily_values.py checks each case against the original's replies and against
our own gdb path.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable
from dataclasses import dataclass

from pbotvm.guest.cfamily import elf_symbols, enums, gdb_choice, guest_gdb, type_names

VALUE_FD = 1000  # the printer's descriptor: high, so the program's own open() calls do not see it
HALT_STATUS = 97  # how the sanitizer ends a program at its first report (see PRINTER)
# The printer's compile: the preprocessor's expansion of the statement as a string; the
# probe that an integer-typed name is no enum (gdb prints an enum's value by name); and no
# variable read before it is set: the program gdb runs does not contain the statement, so a
# variable only the statement names may not exist there (gdb: ``x = <optimized out>``).
OPTIONS = ("-D__pbotvm_s(x)=#x", "-D__pbotvm_xs(x)=__pbotvm_s(x)", "-Werror=switch-enum",
           "-Werror=uninitialized")

_LINE = re.compile(r"^([ \t]*)print_last_statement\((.*)\);[ \t]*$", re.MULTILINE)
_ANY_WRAPPER = re.compile(r"\bprint_last_statement\b")
# prelude.h's print() and dump(): gdb's print, shown where the program is.
_PRINT_CALL = re.compile(r"(?<![\w.>])(print|dump|whatis|ptype)\s*\(")
_LITERAL_OR_COMMENT = re.compile(
    r'"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\'|/\*.*?\*/|//[^\n]*', re.DOTALL)
_MACRO = re.compile(r"^[ \t]*#[ \t]*(?:define|undef)[ \t]+(\w+)", re.MULTILINE)
_WIDE = re.compile(r"\b(?:wchar_t|wint_t|char8_t|char16_t|char32_t)\b")
# A function of the code's own with the name of one the printer calls (PRINTER's __asm__
# names): the printer would call it.
_OWN_LIBC = re.compile(r"\b(?:statx|write|snprintf|open|read|close|pipe)\s*\([^;{}()]*\)\s*\{")
_TOKEN = re.compile(r"""
    \s*(?:
      (?P<float>(?:\d+\.\d*(?:[eE][-+]?\d+)?|\d*\.\d+(?:[eE][-+]?\d+)?|\d+[eE][-+]?\d+)
                (?![\w.]))
    | (?P<int>(?:0|[1-9]\d*)(?![\w.]))
    | (?P<name>[A-Za-z_]\w*)
    | (?P<other><<|>>|\+\+|--|->|[-+*/%&|^]=)
    | (?P<op>&&|\|\||[<>=!]=|[-+*/%<>!~&|^()])
    )""", re.VERBOSE)
_TYPE_WORDS = frozenset({"char", "short", "int", "long", "signed", "unsigned", "float",
                         "double", "_Bool"})
_KEYWORDS = _TYPE_WORDS | {
    "auto", "break", "case", "const", "continue", "default", "do", "else", "enum", "extern",
    "for", "goto", "if", "inline", "register", "restrict", "return", "sizeof", "static",
    "struct", "switch", "typedef", "union", "void", "volatile", "while", "bool", "true",
    "false", "nullptr", "typeof", "constexpr", "alignof", "_Alignof", "_Generic", "asm",
    "__asm__"}
_INT_MAX = 2**31 - 1
_DECLARED_TYPES = r"char|short|int|long|float|double|void|unsigned|signed|_Bool|bool|\w+_t"
_BARE_NAME = re.compile(r"[\s(]*[A-Za-z_]\w*[\s)]*")
MAX_EXPRESSION = 150  # gdb shows the command text of a longer one cut short
# The printer's kinds (PRINTER's cases) of a value this module gives it ready made.
_INT_KIND = 4
_POINTER_KIND = 12
_TEXT_KIND = 15
# A pointer to a character type: gdb shows the string there too.
_TEXTUAL = ("_Generic(({e}), char *: 1, const char *: 1, signed char *: 1, "
            "const signed char *: 1, unsigned char *: 1, const unsigned char *: 1, default: 0)")
_STRING_LIMIT = 200  # gdb's ``print elements``
_REPEATS = 10  # gdb's ``repeat-count-threshold``: a longer run is shown as <repeats N times>
_ESCAPES = {7: "\\a", 8: "\\b", 12: "\\f", 10: "\\n", 13: "\\r", 9: "\\t", 11: "\\v",
            ord('"'): '\\"', ord("\\"): "\\\\"}

# Types as the printer reads them back from its variable arguments (after their promotions).
_KIND = ("(__builtin_classify_type({e}) == 3 ? 0 : _Generic(({e}), _Bool: 1, "
         "char: ((char) -1 < 0 ? 2 : 3), signed char: 2, unsigned char: 3, short: 4, "
         "unsigned short: 4, int: 4, unsigned int: 5, long: 6, unsigned long: 7, long long: 8, "
         "unsigned long long: 9, float: 10, double: 11, default: 0))")

# Appended after the code, so that every line keeps its number. Only reserved names and
# keywords: the code's macros cannot reach it. statx's struct is the same on every
# architecture: stx_ino at byte 32, stx_size at 40, stx_dev_major and _minor at 136 and 140.
PRINTER = r"""
extern int __pbotvm_statx(int, const char *, int, unsigned int, void *) __asm__("statx");
extern long __pbotvm_write(int, const void *, unsigned long) __asm__("write");
extern int __pbotvm_snprintf(char *, unsigned long, const char *, ...) __asm__("snprintf");
const char *__ubsan_default_options(void);
const char *__ubsan_default_options(void) { return "halt_on_error=1:exitcode=@HALT@"; }
static int __pbotvm_char(char *to, unsigned long room, int byte)
{
    static const char escapes[] = "\a\b\f\n\r\t\v";
    static const char letters[] = "abfnrtv";
    int k;
    for (k = 0; escapes[k]; k++)
        if (byte == escapes[k])
            return __pbotvm_snprintf(to, room, "'\\%c'", letters[k]);
    if (byte == '\\' || byte == '\'')
        return __pbotvm_snprintf(to, room, "'\\%c'", byte);
    if (byte >= 0x20 && byte < 0x7f)
        return __pbotvm_snprintf(to, room, "'%c'", byte);
    return __pbotvm_snprintf(to, room, "'\\%03o'", byte);
}
static int __pbotvm_real(char *to, unsigned long room, double value, int digits)
{
    char check[8];
    if (__builtin_isnan(value))
        return -1;
    if (__builtin_isinf(value))
        return __pbotvm_snprintf(to, room, value < 0 ? "-inf" : "inf");
    if (__pbotvm_snprintf(check, sizeof check, "%.1f", 0.5) != 3 || check[1] != '.')
        return -1;
    return __pbotvm_snprintf(to, room, "%.*g", digits, value);
}
#ifdef __PBOTVM_POINTERS
static int __pbotvm_pointer(char *, unsigned long, const char *, const void *, int);
#endif
static void __pbotvm_decline(void)
{
    __pbotvm_write(@FD@, "declined\n", 9);
}
void __pbotvm_value(int site, int mode, const char *expanded, int kind, ...);
void __pbotvm_value(int site, int mode, const char *expanded, int kind, ...)
{
    unsigned long long stx[32];
    unsigned int device[2];
    char value[2048], record[4096];
    const char *text, *type;
    const void *pointer;
    int n = -1, v;
    __builtin_va_list args;
    if (kind == 0 || __pbotvm_statx(1, "", 0x1000, 0x300, stx) != 0) {
        __pbotvm_decline();
        return;
    }
    __builtin_va_start(args, kind);
    switch (kind) {
    case 1:
        n = __pbotvm_snprintf(value, sizeof value, "%s",
                              __builtin_va_arg(args, int) ? "true" : "false");
        break;
    case 2: case 3:
        v = __builtin_va_arg(args, int);
        v = kind == 2 ? (signed char) v : (unsigned char) v;
        n = __pbotvm_snprintf(value, sizeof value, "%d ", v);
        n = __pbotvm_char(value + n, sizeof value - n, v & 0xff) < 0 ? -1 : 0;
        break;
    case 4:
        n = __pbotvm_snprintf(value, sizeof value, "%d", __builtin_va_arg(args, int));
        break;
    case 5:
        n = __pbotvm_snprintf(value, sizeof value, "%u", __builtin_va_arg(args, unsigned));
        break;
    case 6:
        n = __pbotvm_snprintf(value, sizeof value, "%ld", __builtin_va_arg(args, long));
        break;
    case 7:
        n = __pbotvm_snprintf(value, sizeof value, "%lu",
                              __builtin_va_arg(args, unsigned long));
        break;
    case 8:
        n = __pbotvm_snprintf(value, sizeof value, "%lld", __builtin_va_arg(args, long long));
        break;
    case 9:
        n = __pbotvm_snprintf(value, sizeof value, "%llu",
                              __builtin_va_arg(args, unsigned long long));
        break;
    case 10:
        n = __pbotvm_real(value, sizeof value, (float) __builtin_va_arg(args, double), 9);
        break;
    case 11:
        n = __pbotvm_real(value, sizeof value, __builtin_va_arg(args, double), 17);
        break;
#ifdef __PBOTVM_POINTERS
    case 12:
        type = __builtin_va_arg(args, const char *);
        pointer = __builtin_va_arg(args, const void *);
        n = __pbotvm_pointer(value, sizeof value, type, pointer, __builtin_va_arg(args, int));
        break;
#endif
    case 15:
        text = __builtin_va_arg(args, const char *);
        n = text ? __pbotvm_snprintf(value, sizeof value, "%s", text) : -1;
        break;
    }
    __builtin_va_end(args);
    if (n < 0) {
        __pbotvm_decline();
        return;
    }
    __builtin_memcpy(device, (char *) stx + 136, sizeof device);
    n = __pbotvm_snprintf(record, sizeof record, "%d %d %llu %u %u %llu\t%s\t%s\n", site, mode,
                          stx[5], device[0], device[1], stx[4], value, expanded);
    if (n > 0 && (unsigned long) n < sizeof record)
        __pbotvm_write(@FD@, record, (unsigned long) n);
    else
        __pbotvm_decline();
}
""".replace("@HALT@", str(HALT_STATUS)).replace("@FD@", str(VALUE_FD))
# After PRINTER, where a pointer is printed (a bigger printer is a slower compile): the line
# of /proc/self/maps that holds it, and the bytes there, read through a pipe.
POINTERS = "#define __PBOTVM_POINTERS 1\n"
POINTER_PRINTER = r"""
extern int __pbotvm_open(const char *, int, ...) __asm__("open");
extern long __pbotvm_read(int, void *, unsigned long) __asm__("read");
extern int __pbotvm_close(int) __asm__("close");
extern int __pbotvm_pipe(int *) __asm__("pipe");
static unsigned long __pbotvm_hex(const char *text, const char **end)
{
    unsigned long v = 0;
    int d;
    for (;; text++) {
        d = *text;
        if (d >= '0' && d <= '9')
            d -= '0';
        else if (d >= 'a' && d <= 'f')
            d -= 'a' - 10;
        else
            break;
        v = v * 16 + (unsigned long) d;
    }
    *end = text;
    return v;
}
static int __pbotvm_maps(unsigned long address, char *first, char *found, unsigned long room)
{
    static char maps[1 << 16];
    unsigned long size = 0, length, low, high;
    long got;
    const char *at;
    char *line, *end;
    int fd = __pbotvm_open("/proc/self/maps", 0);
    if (fd < 0)
        return -1;
    while (size < sizeof maps - 1
           && (got = __pbotvm_read(fd, maps + size, sizeof maps - 1 - size)) > 0)
        size += (unsigned long) got;
    __pbotvm_close(fd);
    if (size == sizeof maps - 1)
        return -1;
    maps[size] = 0;
    first[0] = found[0] = 0;
    for (line = maps; *line; line = *end ? end + 1 : end) {
        for (end = line; *end && *end != '\n'; end++)
            ;
        length = (unsigned long) (end - line);
        if (length >= room)
            return -1;
        low = __pbotvm_hex(line, &at);
        high = *at == '-' ? __pbotvm_hex(at + 1, &at) : 0;
        if (line == maps) {
            __builtin_memcpy(first, line, length);
            first[length] = 0;
        }
        if (low <= address && address < high) {
            __builtin_memcpy(found, line, length);
            found[length] = 0;
        }
    }
    return 0;
}
static int __pbotvm_pointer(char *to, unsigned long room, const char *type, const void *p,
                            int textual)
{
    static char first[512], found[512];
    unsigned char bytes[201];
    int ends[2], n, k;
    long got = -1;
    unsigned long address = (unsigned long) p;
    first[0] = found[0] = 0;
    if (address != 0 && __pbotvm_maps(address, first, found, sizeof first) != 0)
        return -1;
    n = __pbotvm_snprintf(to, room, "*%s|%lx|%s|%s|", type, address, first, found);
    if (n < 0 || (unsigned long) n + 2 * sizeof bytes + 2 > room)
        return -1;
    if (!textual || address == 0) {
        to[n] = '-';
        to[n + 1] = 0;
        return 0;
    }
    if (__pbotvm_pipe(ends) != 0)
        return -1;
    got = __pbotvm_write(ends[1], p, sizeof bytes);
    if (got > 0)
        got = __pbotvm_read(ends[0], bytes, (unsigned long) got);
    __pbotvm_close(ends[0]);
    __pbotvm_close(ends[1]);
    if (got < 0) {
        to[n] = '!';
        to[n + 1] = 0;
        return 0;
    }
    for (k = 0; k < got; k++) {
        to[n++] = "0123456789abcdef"[bytes[k] >> 4];
        to[n++] = "0123456789abcdef"[bytes[k] & 15];
    }
    to[n] = 0;
    return 0;
}
"""


def expression_names(expression: str) -> list[str] | None:
    """The names of variables in a statement the printer may answer for; None unless the
    statement is one (see the module's text)."""
    names: list[str] = []
    tokens = _tokens(expression)
    if tokens is None or not tokens:
        return None
    k = 0
    while k < len(tokens):
        kind, text = tokens[k]
        if kind == "int" and int(text) > _INT_MAX:
            return None
        if (kind, text) in (("op", "*"), ("op", "&")) and (
                k == 0 or (tokens[k - 1][0] == "op" and tokens[k - 1][1] != ")")):
            return None  # through a pointer: to a _Bool, say (see ``program``)
        if kind == "name":
            if text == "sizeof":
                end = _sizeof_end(tokens, k)
                if end is None:
                    return None
                k = end
                continue
            if text in _KEYWORDS or (k + 1 < len(tokens) and tokens[k + 1] == ("op", "(")):
                return None
            names.append(text)
        k += 1
    return names


def _tokens(expression: str) -> list[tuple[str, str]] | None:
    tokens, at = [], 0
    expression = expression.rstrip()
    while at < len(expression):
        match = _TOKEN.match(expression, at)
        if match is None or match.lastgroup in (None, "other"):
            return None
        tokens.append((match.lastgroup, match.group(match.lastgroup)))
        at = match.end()
    return tokens


def _sizeof_end(tokens: list[tuple[str, str]], at: int) -> int | None:
    """After ``sizeof ( basic type words )``, or None when that is not what follows."""
    if at + 1 >= len(tokens) or tokens[at + 1] != ("op", "("):
        return None
    k = at + 2
    while k < len(tokens) and tokens[k][0] == "name" and tokens[k][1] in _TYPE_WORDS:
        k += 1
    if k == at + 2 or k >= len(tokens) or tokens[k] != ("op", ")"):
        return None
    return k + 1


def _unprintable_names(code: str, names: list[str]) -> bool:
    """Whether the code most likely declares a name as a pointer, an array or a struct: the
    compile would refuse it (it is not a scalar), one compile later (0.3 s under TCG)."""
    for name in names:
        if re.search(rf"(?:\b(?:{_DECLARED_TYPES})\s*\*+|\*\s*const)\s*{name}\b"
                     rf"|\b{name}\s*\[|\b(?:struct|union)\s+\w*\s*(?:{{[^}}]*}}\s*)?{name}\b",
                     code):
            return True
    return False


def stringised(expression: str) -> str:
    """The statement as ``#`` makes a string of it (no literals in it: spaces only)."""
    return " ".join(expression.split())


class Mode(enum.IntEnum):
    LAST = 0  # print_last_statement(X): shown when nothing was
    PRINT = 1  # print(X), dump(X): shown where the program is
    WHATIS = 2  # whatis(X): its type, shown where the program is
    PTYPE = 3  # ptype(X): the same, where a type differs (an enum's enumerators)


_CALL_MODES = {"print": Mode.PRINT, "dump": Mode.PRINT, "whatis": Mode.WHATIS,
               "ptype": Mode.PTYPE}


@dataclass(frozen=True)
class Site:
    mode: Mode
    expression: str  # as the preprocessor stringises it: gdb's command text
    enum: enums.Enum | None = None  # a variable of this enum: its value is shown by name


@dataclass(frozen=True)
class Program:
    """The code with its values printed by the program, and the places that print them."""

    source: str
    sites: tuple[Site, ...]


def _blanked(code: str) -> str:
    """The code with comments and the insides of literals blanked (the same length)."""
    return _LITERAL_OR_COMMENT.sub(lambda m: m.group()[0] + " " * (len(m.group()) - 1), code)


def _closing(text: str, opening: int) -> int | None:
    """Where the parenthesis opened at ``opening`` closes."""
    depth = 0
    for at in range(opening, len(text)):
        depth += {"(": 1, ")": -1}.get(text[at], 0)
        if depth == 0:
            return at
    return None


def _sites(code: str) -> list[tuple[int, int, Mode, str]] | None:
    """(start, end, mode, statement) of each place the code asks gdb for a value, in the
    code's order; None when one of them is not a call the printer can stand for."""
    blanked = _blanked(code)
    found = []
    lines = list(_LINE.finditer(blanked))
    if len(lines) != len(_ANY_WRAPPER.findall(blanked)) or len(lines) > 1:
        return None
    for line in lines:
        found.append((line.start(), line.end(), Mode.LAST, code[line.start(2):line.end(2)]))
    for call in _PRINT_CALL.finditer(blanked):
        end = _closing(blanked, call.end() - 1)
        if end is None or not blanked[end + 1:].lstrip().startswith(";"):
            return None
        found.append((call.start(), end + 1, _CALL_MODES[call[1]], code[call.end():end]))
    return sorted(found)


def program(code: str) -> Program | None:
    """The code for a run that prints its values itself; None unless every place the code asks
    gdb for a value is one the printer can stand for (see the module's text), and the code
    asks gdb for nothing else."""
    if (_WIDE.search(code) or _OWN_LIBC.search(_blanked(code))
            or any(name in _KEYWORDS for name in _MACRO.findall(code))):
        return None
    sites = _sites(code)
    if not sites:
        return None
    # The code without those places: no word in it may ask gdb for anything (a word in a
    # string or a comment does not).
    rest = _blanked(code)
    for start, end, _, _ in reversed(sites):
        rest = rest[:start] + rest[end:]
    if gdb_choice.needs_gdb(rest):
        return None
    source, at, kept, pointers = [], 0, [], False
    for index, (start, end, mode, expression) in enumerate(sites):
        names = expression_names(expression)
        if names is None or len(expression) > MAX_EXPRESSION or "??" in expression:
            return None
        bare = len(names) == 1 and _BARE_NAME.fullmatch(expression) is not None
        enum = enums.enum_of(rest, names[0]) if bare else None
        if mode in (Mode.WHATIS, Mode.PTYPE):
            call = _type_call(index, mode, expression, names, bare, rest, enum)
            site = Site(mode, stringised(expression))
        elif not _unprintable_names(rest, names):
            call = (_enum_call(index, mode, expression, names[0], enum.tag) if enum
                    else _call(index, mode, expression, names, bare))
            site = Site(mode, stringised(expression), enum)
        elif bare and _pointer_declared(rest, names[0]):
            call, pointers = _pointer_call(index, mode, expression, names[0]), True
            site = Site(mode, stringised(expression))
        else:
            return None
        if call is None:
            return None
        kept.append(site)
        if mode is Mode.LAST:
            indent = code[start:end][: len(code[start:end]) - len(code[start:end].lstrip())]
            call = f"{indent}{{ {call} }}"
        else:
            call = f"do {{ {call} }} while (0)"
        source += [code[at:start], call]
        at = end
    source += [code[at:], "\n"]
    source += [POINTERS, PRINTER, POINTER_PRINTER] if pointers else [PRINTER]
    return Program("".join(source), tuple(kept))


def _printing(index: int, mode: Mode, expression: str, printable: str, kind: str | int,
              value: str, probes: str = "") -> str:
    """The statements that print one place's value (in a block of their own): only where
    ``printable`` holds as it compiles. What it does not print (an array, a struct, a sum of
    _Bools) stops the compile, which then ends sooner than the run would have."""
    return (f"extern void __pbotvm_value(int, int, const char *, int, ...); "
            f"typedef char __pbotvm_printable[({printable}) ? 1 : -1]; "
            f"{probes}__pbotvm_value({index}, {int(mode)}, __pbotvm_xs({expression}), {kind}, "
            f"{value});")


def _variables(names: list[str]) -> str:
    """A condition's start: no name is one the compiler sees as a constant, such as an
    enumerator (gdb prints its name, and types it as its enum) or a macro's constant. A
    variable is none, whatever its value."""
    return "".join(f"!__builtin_constant_p({name}) && " for name in names)


def _pointer_declared(code: str, name: str) -> bool:
    """Whether the name is declared as a pointer with basic type words alone (``char *s``,
    or a parameter ``char *argv[]``), not as an array or a struct: a pointer whose type gdb
    names as ``type_names`` does. (The compile checks it; this spares a compile.)"""
    return (type_names.declared_plainly(code, name)
            and re.search(rf"\*\s*{name}\b", code) is not None
            and re.search(rf"\b(?:{_DECLARED_TYPES})[\s*]*{name}\s*\[(?!\s*\]\s*[,)])",
                          code) is None)


def _pointer_call(index: int, mode: Mode, expression: str, name: str) -> str:
    """The statements that print a pointer's value (with the string there, for a character
    type), where ``type_names`` names its type."""
    printable = (_variables([name]) + f"__builtin_classify_type({expression}) == 5 && "
                 + type_names.known(expression, True))
    value = (f"{type_names.generic(expression, True)}, (const void *) ({expression}), "
             + _TEXTUAL.format(e=expression))
    return _printing(index, mode, expression, printable, _POINTER_KIND, value)


def _call(index: int, mode: Mode, expression: str, names: list[str], bare: bool) -> str:
    """The statements that print one value."""
    kind = _KIND.format(e=expression)
    printable = _variables(names) + kind
    if not bare:
        # gdb: "Invalid operation on booleans." for arithmetic on a _Bool (b + b).
        printable += "".join(f" && !_Generic(({name}), _Bool: 1, default: 0)" for name in names)
    # An enum is an integer to _Generic; a switch on it does not compile (see OPTIONS).
    probes = "".join(f"switch (__builtin_choose_expr(__builtin_classify_type({name}) == 1, "
                     f"{name}, 0)) {{ default: break; }} " for name in dict.fromkeys(names))
    return _printing(index, mode, expression, printable, kind, f"({expression})", probes)


def _type_call(index: int, mode: Mode, expression: str, names: list[str], bare: bool,
               code: str, enum: enums.Enum | None) -> str | None:
    """The statements that print gdb's name of the statement's type (``type_names``); None
    when it cannot be told without gdb."""
    if enum is not None:
        named = type_names.enum_name(enum, full=mode is Mode.PTYPE)
        return _printing(index, mode, expression, _of_enum(names[0], enum.tag), _TEXT_KIND,
                         f'"{named}"')
    if re.search(r"\bsizeof\b", expression) or not all(
            type_names.declared_plainly(code, name)
            and not re.search(rf"\b{name}\s*\[", code) for name in names):
        return None
    return _printing(index, mode, expression,
                     _variables(names) + type_names.known(expression, bare), _TEXT_KIND,
                     type_names.generic(expression, bare))


def _enum_call(index: int, mode: Mode, expression: str, name: str, tag: str) -> str:
    """The statements that print an enum variable's value, as a number (``shown`` names
    it)."""
    return _printing(index, mode, expression, _variables([name]) + _of_enum(name, tag),
                     _INT_KIND, f"(int) ({expression})")


def _of_enum(name: str, tag: str) -> str:
    """The condition that the name here is a variable of that enum."""
    return f"__builtin_types_compatible_p(__typeof__({name}), enum {tag})"


@dataclass(frozen=True)
class Value:
    """What the printer wrote for one place: its stdout's size and identity then, and the
    value."""

    site: int
    mode: Mode
    size: int
    device: tuple[int, int]
    inode: int
    value: str
    expanded: str


def read_values(data: bytes) -> list[Value] | None:
    """The printer's records, in order; None when one is not one, or says the printer
    declined (gdb has to answer)."""
    values = []
    try:
        for line in data.decode("ascii").splitlines():
            head, value, expanded = line.split("\t")
            site, mode, size, major, minor, inode = (int(field) for field in head.split(" "))
            values.append(Value(site, Mode(mode), size, (major, minor), inode, value, expanded))
    except ValueError:
        return None
    return values


def pointer_text(value: str, symbols: Callable[[], elf_symbols.Program | None]) -> str | None:
    """gdb's ``print`` of a pointer from the printer's record of it (``*type|address|the
    program's first line of /proc/self/maps|the line holding the address|the bytes there``):
    ``(int *) 0x7fffffffe394``, or ``0x555555558043 "hi"`` for a ``char *``; None where gdb
    would say more than this knows: a symbol (``<g>``), an address in a library or an
    anonymous mapping, a string it shows otherwise (repeats, bytes not plain ASCII, memory
    that ends before its end)."""
    try:
        type_name, address_hex, first, line, data = value.removeprefix("*").split("|")
        address = int(address_hex, 16)
        read = None if data in ("-", "!") else bytes.fromhex(data)
    except ValueError:
        return None
    if address and line and _may_be_named(address, first, line, symbols):
        return None
    # gdb leaves out the type where it points at a char: the string says it.
    prefix = "" if type_name in ("char *", "const char *") else f"({type_name}) "
    shown = f"{prefix}{address:#x}"
    if data == "-" or not address:
        return shown
    if read is None:
        if line:
            return None  # mapped, yet not readable
        return f"{shown} <error: Cannot access memory at address {address:#x}>"
    string = _string(read)
    return None if string is None else f"{shown} {string}"


def _may_be_named(address: int, first: str, line: str,
                  symbols: Callable[[], elf_symbols.Program | None]) -> bool:
    """Whether gdb may print a symbol after this address: anywhere but the stack, the heap
    and a place in the program that no symbol of it covers (``first``: the program's first
    line of /proc/self/maps, ``line`` the one that holds the address)."""
    region, start = line.split(maxsplit=5), first.split(maxsplit=5)
    if len(region) == 6 and region[5] in ("[stack]", "[heap]"):
        return False
    program = symbols()
    if (program is None or len(region) != 6 or len(start) != 6 or start[2] != "0" * 8
            or region[5] != start[5]):
        return True  # a library's or an anonymous mapping
    return program.may_name(address - int(start[0].split("-")[0], 16) + program.first_load)


def _string(read: bytes) -> str | None:
    """gdb's string at an address, from the bytes read there (up to one past gdb's limit);
    None for what this does not show as gdb does."""
    end = read.find(0, 0, _STRING_LIMIT)
    if end < 0 and len(read) <= _STRING_LIMIT:
        return None  # memory ends before the string does: gdb shows an error after it
    text = read[:end] if end >= 0 else read[:_STRING_LIMIT]
    if re.search(rb"(.)\1{%d}" % _REPEATS, text, re.DOTALL):
        return None
    if any(byte >= 0x7F or (byte < 0x20 and byte not in _ESCAPES) for byte in text):
        return None
    quoted = "".join(_ESCAPES.get(byte, chr(byte)) for byte in text)
    ellipsis = "..." if end < 0 and read[_STRING_LIMIT] != 0 else ""
    return f'"{quoted}"{ellipsis}'


def shown(program: Program, values: list[Value],
          symbols: Callable[[], elf_symbols.Program | None] = lambda: None,
          ) -> list[tuple[int, str]] | None:
    """What guest-gdb's driver would have put into the output, and where (after how many of
    the program's bytes), for these records (``symbols``: the program's, for a pointer into
    it); None when they cannot be trusted to say it: a record of another place, a statement
    that came out of a macro, or a pointer gdb shows otherwise. The values are as gdb's
    console lines came out of guest-gdb's GDB/MI round trip (``97 'a'`` stays, ``27 '\\033'``
    became ``27 '\\x1B'``)."""
    lines: list[tuple[int, str]] = []
    for found in values:
        if found.site >= len(program.sites):
            return None
        site = program.sites[found.site]
        if site.mode is not found.mode or stringised(found.expanded) != site.expression:
            return None
        if found.value.startswith("*"):
            pointer = pointer_text(found.value, symbols)
            if pointer is None:
                return None
            value = guest_gdb.mi_text(pointer)
        else:
            value = guest_gdb.mi_text(found.value)
        if site.enum is not None:
            named = site.enum.name_of(int(value)) if re.fullmatch(r"-?\d+", value) else None
            if named is None:
                return None  # gdb's (A | B) or a bare number: gdb answers
            value = named
        if site.mode is not Mode.LAST:
            lines.append((found.size, f"{site.expression} = {value}"))
        elif not lines and found.size == 0:  # guest-gdb: nothing in the output yet
            lines.append((0, f"no output: {site.expression} = {value}"))
    return lines
