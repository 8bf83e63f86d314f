"""The text rules of the original's guest-gdb, as pure functions: how it read gdb's answers
(main's first and last lines, locals, backtraces, source lines) and how it worded its reports.

guest-gdb talked to gdb over GDB/MI and picked each console line apart with regexes; the gdb
driver gets the same lines from gdb's Python API (``gdb.execute(..., to_string=True)``), and
these functions apply the original's regexes to them, so the answers come out the same, quirks
included. Nothing here imports gdb: the driver imports this module inside gdb, tests outside.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

# `info functions -q ^main$`: "42:\tint main(int, char **);"
_LINE_NUMBER = re.compile(r"^(\d+)")
# `list main`, when `info functions` found nothing: a line that calls or defines main.
# (The original's character class held \b, which Perl reads as a backspace.)
_MAIN_CALL = re.compile(r"\bmain[\x08\s)]*\(")
_DOUBLE_QUOTED = re.compile(r'"((?:\\"|(?!").)*)"')
_SINGLE_QUOTED = re.compile(r"'((?:\\'|(?!').)*)'")
# `info locals`: "name = value"
_LOCAL = re.compile(r"([^=]+)\s+=\s+(.*)")
# `bt`: "#1  0x... in f (x=1) at prog.c:3"; greedy, so the arguments run to the last " at".
_FRAME = re.compile(r"in (\w+) (.*) at")
# `list N,N`: "42\t    x = 1;" (a line without indentation does not count).
_LISTED = re.compile(r"\t\s+(.*)")
# `up`: the source line under the frame line.
_UP_SOURCE = re.compile(r"^\d+\t\s+(.*)")
# `print`: "$1 = 42"
_VALUE = re.compile(r"^\$\d+\s*=\s*(.*)")
# `ptype`/`whatis`: "type = int"
_TYPE = re.compile(r"type\s*=\s*(.*)")
_LEADING_SPACE = re.compile(r"^\s+")
_TRAILING_SPACE = re.compile(r"\s+$")
_COMMAND_SPLIT = re.compile(r"\s+")
_UNESCAPES = {"\\n": "\n", "\\t": "\t", "\\\\": "\\", '\\"': '"'}
_ESCAPE = re.compile(r"\\n|\\t|\\\\|\\\"")
# A run of backslashes before three digits: GDB/MI's octal escapes, as guest-gdb decoded them.
_OCTAL = re.compile(rb"\\+(\d{3})")
_CONTROL = re.compile(r"[\x10-\x1f]")
_MI_NAMED_ESCAPES = {0x08, 0x09, 0x0A, 0x0C, 0x0D}  # \b \t \n \f \r: JSON decodes them back
_OCTAL_DIGITS = re.compile(r"[0-7]*")
# What gdb's `file` command splits or unquotes at (libiberty's buildargv).
_ARGV_SPECIAL = re.compile(r"""[\s'"\\]""")

# The commands of prelude.h's macros that guest-gdb handled itself; any other text from gdb()
# is run as a gdb command and its output shown as is.
PRINT_COMMANDS = frozenset({"print", "dump"})
LAST_STATEMENT = "print_last_statement"
EMIT_PREFIX = "\n"
EMIT_SUFFIX = "\n\n"
TIME_OUT = "[gdb time-out]\n"


def file_argument(path: str) -> str:
    """``path`` as one argument of gdb's ``file`` command."""
    return _ARGV_SPECIAL.sub(lambda match: "\\" + match.group(), path)


def records(text: str) -> list[str]:
    """gdb's output as guest-gdb saw it: one console record per line."""
    return text.splitlines()


def _perl_oct(digits: str) -> int:
    match = _OCTAL_DIGITS.match(digits)
    return int(match.group(), 8) if match and match.group() else 0


def _octal_escape(match: re.Match[bytes]) -> bytes:
    digits = match.group(1).decode()
    # guest-gdb compared the digits as a decimal number with 0x20.
    if int(digits) < 0x20:
        return b"\\" + match.group(1)
    value = _perl_oct(digits)
    return bytes([value]) if value < 0x100 else match.group()


def _mi_escape(raw: bytes) -> bytes:
    """GDB/MI's quoting of a console line, up to what guest-gdb undid again: control and
    8-bit bytes become octal escapes (``set print sevenbit-strings on``)."""
    out = bytearray()
    for byte in raw:
        if (byte < 0x20 and byte not in _MI_NAMED_ESCAPES) or byte >= 0x7F:
            out += b"\\%03o" % byte
        else:
            out.append(byte)
    return bytes(out)


def mi_text(text: str) -> str:
    """A line of gdb output as guest-gdb ended up with it after the GDB/MI round trip: octal
    escapes (gdb's own, such as ``'\\310'``, and those MI adds) turned into bytes when the
    digits read as a decimal number of at least 32, the bytes decoded as UTF-8 with ``\\xNN``
    for malformed ones, and the characters 0x10-0x1f written ``\\xNN``."""
    raw = _OCTAL.sub(_octal_escape, _mi_escape(text.encode("utf-8", "surrogateescape")))
    decoded = raw.decode("utf-8", "surrogateescape")
    decoded = re.sub(r"[\udc80-\udcff]", lambda m: f"\\x{ord(m.group()) - 0xDC00:02X}", decoded)
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02X}", decoded)


def main_start(info_functions: Sequence[str]) -> int | None:
    """The line of main's definition: the number opening the last line of the answer."""
    if not info_functions:
        return None
    match = _LINE_NUMBER.search(info_functions[-1])
    return int(match.group(1)) if match else None


def _blank_literals(code: str) -> str:
    code = _DOUBLE_QUOTED.sub(lambda m: '"' + "-" * len(m.group(1)) + '"', code)
    return _SINGLE_QUOTED.sub(lambda m: "'" + "-" * len(m.group(1)) + "'", code)


def _perl_number(text: str) -> int:
    match = re.match(r"\s*(\d+)", text)
    return int(match.group(1)) if match else 0


def main_span(start: int | None, listing: Sequence[str]) -> tuple[int | None, int | None]:
    """main's first line and the line before its closing brace, from ``list main`` (the whole
    file, with ``set listsize unlimited``): braces are counted from the first line, with
    string and character literals blanked."""
    braces = 0
    for record in listing:
        fields = record.split("\t")
        line = _perl_number(fields[0])
        code = fields[1] if len(fields) > 1 else ""
        if start is None:
            if _MAIN_CALL.search(code):
                start = line
            continue
        if line < start:
            continue
        for char in _blank_literals(code):
            if char == "{":
                braces += 1
            elif char == "}":
                braces -= 1
                if braces == 0:
                    return start, line - 1
    return start, None


def locals_of(lines: Iterable[str]) -> list[tuple[str, str]]:
    """``info locals`` as (name, value) pairs."""
    found = []
    for line in lines:
        match = _LOCAL.search(line)
        if match:
            found.append((match.group(1), match.group(2)))
    return found


def locals_text(pairs: Sequence[tuple[str, str]]) -> str:
    return "; ".join(f"{name} = {value}" for name, value in pairs)


def backtrace(lines: Sequence[str]) -> list[tuple[str | None, str | None]]:
    """``bt`` as (function, arguments) per frame; None where the line does not say."""
    frames: list[tuple[str | None, str | None]] = []
    for line in lines:
        match = _FRAME.search(line)
        frames.append((match.group(1), match.group(2)) if match else (None, None))
    return frames


def listed_statement(lines: Sequence[str]) -> str | None:
    """The source text of ``list N,N``, decided by the last line of the answer."""
    statement = None
    for line in lines:
        match = _LISTED.search(line)
        statement = match.group(1) if match else None
    return statement


def up_statement(lines: Sequence[str], previous: str | None) -> str | None:
    """The source line shown by ``up``, or the previous one when it shows none."""
    for line in lines:
        match = _UP_SOURCE.search(line)
        if match:
            previous = match.group(1)
    return previous


def unescape(command: str) -> str:
    return _ESCAPE.sub(lambda m: _UNESCAPES[m.group()], command)


def gdb_command(argument: str) -> str:
    """The command text from gdb()'s argument as gdb shows it (``0x5555... "print x"``)."""
    start = argument.find('"')
    text = argument[start + 1 :] if start >= 0 else argument
    return unescape(text[:-1] if text.endswith('"') else text)


def split_command(command: str) -> tuple[str, str]:
    """The command word and the rest (empty when there is none)."""
    parts = _COMMAND_SPLIT.split(command, maxsplit=1)
    return parts[0], parts[1] if len(parts) > 1 else ""


def printed_values(lines: Iterable[str]) -> list[str]:
    """The values of ``print``'s ``$N = V`` lines."""
    return [m.group(1) for m in map(_VALUE.search, lines) if m]


def ptype_text(expression: str, lines: Iterable[str]) -> str:
    """``ptype`` on one line: ``s = struct S { int a; }``."""
    text = ""
    for line in lines:
        match = _TYPE.search(line)
        if match:
            text += f"{expression} = {match.group(1)}"
        else:
            text += " " + _LEADING_SPACE.sub("", line)
    return text


def whatis_texts(expression: str, lines: Iterable[str]) -> list[str]:
    return [f"{expression} = {m.group(1)}" for m in map(_TYPE.search, lines) if m]


def verbatim_text(lines: Iterable[str]) -> str:
    """Any other command's output: every line, each followed by a newline."""
    return "".join(f"{line}\n" for line in lines)


@dataclass(frozen=True)
class OuterFrame:
    function: str | None
    arguments: str | None
    statement: str | None  # the last source line seen so far, as guest-gdb carried it along


def signal_report(signal: str, meaning: str, function: str, arguments: Sequence[tuple[str, str]],
                  statement: str | None, outer: Sequence[OuterFrame],
                  local_values: Sequence[tuple[str, str]]) -> str:
    """``Program received signal SIGSEGV, Segmentation fault in main (argc=1, ...) at
    statement: *p = 1; <local variables: p = 0x0>``."""
    args = ", ".join(f"{name}={value}" for name, value in arguments)
    text = f"Program received signal {signal}, {meaning} in {function} ({args}) "
    if statement:
        text += f"at statement: {statement} "
    for frame in outer:
        if frame.function:
            text += f"called by {frame.function} {frame.arguments} "
        if frame.statement:
            text += f"at statement: {frame.statement} "
    if local_values:
        return text + f"<local variables: {locals_text(local_values)}>"
    return _TRAILING_SPACE.sub("", text)


def emitted(text: str) -> str:
    """How guest-gdb wrote its own lines into the program's output."""
    return f"{EMIT_PREFIX}{text}{EMIT_SUFFIX}"
