"""The C family's host output filters (the original's _c_base.pm) and TenDRA's (tendra.pm).

They run after the base post-processing (``pbotvm.host.request.output.postprocess``) and tidy the
compiler, sanitizer and gdb text for IRC: file names, line numbers and work-directory paths
go, curly quotes become plain, gdb's char and string quirks are corrected. The rules are the
original's, in its order; most are plain substitutions, kept as a table.

Two choices differ from the original on purpose:
* the source and program names are matched literally, where the original put them into its
  regexes as regex text (so ``prog.c`` also matched ``progXc``);
* our guest's work directory (``/home/<user>/run-XXXXXXXX/``, from ``guest/workdir.py``) is
  removed wherever the original removed ``/home/compiler/``. The original's 2023 guest ran in
  ``/home/vm/<pid>/``, which its filters never matched, so it leaked that path.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass

from pbotvm.tokenizer import PERL_SPACE

# The original's patterns are Perl's: there \s is Unicode whitespace but not \x1c-\x1f,
# which Python's \s also matches and which the base post-processing lets through.
_PERL_SPACE_CLASS = f"[{re.escape(PERL_SPACE)}]"
_PERL_NON_SPACE_CLASS = f"[^{re.escape(PERL_SPACE)}]"
_ESCAPE_PAIR = re.compile(r"\\(.)", re.DOTALL)


def _perl_space(escape: re.Match[str]) -> str:
    if escape[1] == "s":
        return _PERL_SPACE_CLASS
    if escape[1] == "S":
        return _PERL_NON_SPACE_CLASS
    return escape[0]


def _perl_regex(pattern: str, flags: re.RegexFlag = re.NOFLAG) -> re.Pattern[str]:
    """``pattern`` compiled with Perl's meaning of ``\\s`` and ``\\S`` (written outside
    ``[...]``, where a class cannot nest)."""
    return re.compile(_ESCAPE_PAIR.sub(_perl_space, pattern), flags)


# Where the program was compiled and run: the original's old /home/compiler/ (its filters
# still remove it, even from a program's own output), and our guest's per-request directory,
# tempfile.mkdtemp(prefix="run-") in the user's home. A request with a persist key runs in
# <home>/<key>/ instead, which is not matched: the filters are not told the key.
_WORK_DIRECTORY = r"(?:/home/compiler/|/home/[\w.-]+/run-[a-z0-9_]{8}/)"


@dataclass(frozen=True)
class _Substitution:
    """One of the original's ``s///``, as data.

    ``pattern`` is written as Perl wrote it (``\\s`` and ``\\S`` are translated) and may say
    ``{source}``, ``{exe}`` and ``{workdir}``; ``replacement`` is a Python one and may say
    ``{source}``. ``paste``: ``None`` applies always, otherwise only when pasting is that.
    """

    name: str
    pattern: str
    replacement: str = ""
    flags: re.RegexFlag = re.NOFLAG
    once: bool = False
    paste: bool | None = None


@dataclass(frozen=True)
class _Context:
    sourcefile: str
    execfile: str
    paste: bool
    unterminated_directive: bool


_Step = _Substitution | Callable[[str, _Context], str]

_MD = re.MULTILINE | re.DOTALL
_COLUMNS = r"(\d+:\d+:\s*)*"  # "LINE:COL: " prefixes that some messages come with
_CANDIDE_B = "note: %b is a candide extension"
_UNTERMINATED = ("warning: preprocessor directive not terminated by \\n, the remainder of "
                 "the line will be part of this directive")

_MAIN_HEADING = _perl_regex(r"In function '([^']+)':")
_MAIN_HEADING_DROPPED = _perl_regex(_COLUMNS + r"\s?In function .main.:\s*")
_MAIN_HEADING_KEPT = _perl_regex(_COLUMNS + r"\s?In function .main.:\s?")


def _main_heading(text: str, _context: _Context) -> str:
    """Rule 20: "In function 'main':" says nothing when main is the only function named
    first; when another function comes first, main's heading is kept, tidied."""
    first = _MAIN_HEADING.search(text)
    if first is None:
        return text
    if first[1] == "main":
        return _MAIN_HEADING_DROPPED.sub("", text)
    return _MAIN_HEADING_KEPT.sub("In function 'main':", text)


_NESTED_FUNCTIONS = _perl_regex(r"\s*warning: ISO C forbids nested functions \[-pedantic\]\s*")
_GDB_ARGUMENTS = _perl_regex(
    r"\s*warning: too many arguments in call to 'gdb'\s+note: expanded from macro '.*?'\s*", _MD)
_EMPTY_BRACKETS = _perl_regex(r"^\[\s*\]\s")
_SPACE_AFTER_BRACKET = _perl_regex(r"^\[\s+", re.MULTILINE)
_SPACE_BEFORE_BRACKET = _perl_regex(r"\s+\]$", re.MULTILINE)


def _warnings_about_our_own_code(text: str, _context: _Context) -> str:
    """Rule 72: warnings caused by what the bot adds (functions nested in the main it wraps
    around the code, its gdb() macros) are dropped, and the diagnostics bracket is tidied
    (or dropped when it is left empty)."""
    text, nested = _NESTED_FUNCTIONS.subn(" ", text)
    text, gdb = _GDB_ARGUMENTS.subn(" ", text)
    if nested or gdb:
        text = _EMPTY_BRACKETS.sub("", text, count=1)
        text = _SPACE_AFTER_BRACKET.sub("[", text, count=1)
        text = _SPACE_BEFORE_BRACKET.sub("]", text, count=1)
    return text


_LEADING_DIAGNOSTIC = _perl_regex(r"\[(warning:|note:)")


def _unterminated_directive(text: str, context: _Context) -> str:
    """Rule 74: the compile never says that a directive without a newline swallowed the rest
    of the line, so the host says it, first among the diagnostics (or before the answer)."""
    if not context.unterminated_directive:
        return text
    if _LEADING_DIAGNOSTIC.match(text):
        return f"[{_UNTERMINATED} {text[1:]}"
    return f"[{_UNTERMINATED}] {text}"


_C_STEPS: tuple[_Step, ...] = (
    _Substitution("1 include chain through prelude.h",
                  r"In file included from .*?from /usr/include/prelude.h.*?from {source}:\d+.\s*",
                  flags=_MD),
    _Substitution("2 include chain from the source",
                  r"In file included from .*?:\d+:\d+.\s*from {source}:\d+.\s*", flags=_MD),
    _Substitution("3 include chain", r"In file included from .*?:\d+:\d+.\s*", flags=_MD),
    _Substitution("4 included from the source", r"\s*from {source}:\d+.\s*"),
    _Substitution("5 assertion prefix", r"{exe}: {source}:\d+: [^:]+: Assertion", "Assertion"),
    _Substitution("6 system header positions", r"/usr/include/[^:]+:\d+:\d+:\s+"),
    _Substitution("7a Line N", r" Line \d+ :", paste=False),
    _Substitution("7a source positions", r"{source}:[:\d]*", paste=False),
    _Substitution("7b source lines on their own line", r"{source}:(\d+)", r"\n\g<1>", paste=True),
    _Substitution("7b source names", r"{source}:", paste=True),
    _Substitution("8 __PRETTY_FUNCTION__ local", r';?\s?__PRETTY_FUNCTION__ = "[^"]+"'),
    _Substitution("9 warnings as errors",
                  _COLUMNS + r"cc1: (all\s+)?warnings being treated as errors", once=True),
    _Substitution("10 first use", _COLUMNS + r" \(first use in this function\)"),
    _Substitution("11 reported only once (old gcc)",
                  _COLUMNS + r"error: \(Each undeclared identifier is reported only once.*?\)",
                  flags=_MD),
    _Substitution("12 no _start",
                  _COLUMNS + r"ld: warning: cannot find entry symbol _start; defaulting to [^ ]+",
                  once=True),
    _Substitution("13 object files", _COLUMNS + r"/tmp/.*\.o:"),
    _Substitution("14 collect2 (old)", _COLUMNS + r"collect2: ld returned \d+ exit status"),
    _Substitution("15 text offsets", r"\(\.text\+[^)]+\):"),
    _Substitution("16 bracket before In", r"\[ In", "[In", once=True),
    _Substitution("17 load map",
                  _COLUMNS + r"warning: Can't read pathname for load map: Input.output error."),
    _Substitution("18 mis-decoded left quote", "\u00e2\u0080\u0098", "'"),
    _Substitution("18 mis-decoded right quote", "\u00e2\u0080\u0099", "'"),
    _Substitution("18 curly quotes", "[\u2018\u2019]", "'"),
    _Substitution("18 backticks", "`", "'"),
    _Substitution("19 tabs", "\t", "   "),
    _main_heading,
    _Substitution("21 %b (gcc)",
                  _COLUMNS + r"warning: unknown conversion type character 'b' in format "
                  r"\[-Wformat=?\]\s+" + _COLUMNS
                  + r"warning: too many arguments for format \[-Wformat-extra-args\]", _CANDIDE_B),
    _Substitution("22 %b (clang)",
                  _COLUMNS + r"warning: invalid conversion specifier 'b' "
                  r"\[-Wformat-invalid-specifier\]", _CANDIDE_B),
    _Substitution("23 %b (gcc, alone)",
                  _COLUMNS + r"warning: unknown conversion type character 'b' in format "
                  r"\[-Wformat=?\]", _CANDIDE_B),
    _Substitution("24 core dumped", r"\s\(core dumped\)", ".", once=True),
    _Substitution("25 enabled by default", r" \[enabled by default\]"),
    _Substitution("26 initializer near", r"initializer\s+warning: \(near", "initializer (near"),
    _Substitution("27 reported only once",
                  _COLUMNS + r"note: each undeclared identifier is reported only once for each "
                  r"function it appears in"),
    _Substitution("28 gdb prompt", r"\(gdb\)"),
    _Substitution("29 repeated escape between strings",
                  r"\", '\\(\d{3})' <repeats \d+ times>,? ?\"", r"\\\g<1>"),
    _Substitution("30 trailing repeated escape", r", '\\(\d{3})' <repeats \d+ times>\s*"),
    _Substitution("31 NUL runs", r"(\\000)+", r"\\0"),  # 32 alone would give the same
    _Substitution("32 after a NUL", r"\\0[^\">']+", r"\\0"),
    _Substitution("33 NUL char value", r"= (\d+) '\\0'", r"= \g<1>"),
    _Substitution("34 NUL before closing quote", r'\\0"', '"'),
    _Substitution("35 NUL after opening quote", r'"\\0', '"'),
    _Substitution("36 elided value", r"\.\.\.>", ">"),
    _Substitution("37 included at the work directory", r"<\s*included at {workdir}>\s*"),
    _Substitution("38 fatal errors note", r"\s*compilation terminated due to -Wfatal-errors\."),
    _Substitution("39 glibc backtrace", r"^======= Backtrace.*\[vsyscall\]\s*$", flags=_MD,
                  once=True),
    _Substitution("40 glibc detected", r"glibc detected \*\*\* {workdir}{exe}: ", once=True),
    _Substitution("41 program terminated", r": {workdir}{exe} terminated", once=True),
    _Substitution("42 macro defined in the work directory", r"<Defined at {workdir}>",
                  "<Defined at /home/compiler/{source}:0>"),
    _Substitution("43 include from a system header",
                  r"\s*In file included from\s+/usr/include/.*?:\d+:\d+:\s*", ", "),
    _Substitution("44 collect2", r"\s*collect2: error: ld returned 1 exit status"),
    # The original's rule 45 looked for a backtick, which rule 18 has already replaced: it
    # never matched, and is left out.
    _Substitution("46 work directory", "{workdir}"),
    _Substitution("47 compilation terminated", r"compilation terminated.", once=True),
    # gdb takes 'a' for a char; in C it is an int (the cast back to char stays char).
    _Substitution("48 char literal type", r"'(.*?)' = char", r"'\g<1>' = int"),
    _Substitution("48 cast to char", r"(\(\s*char\s*\)\s*'.*?') = int", r"\g<1> = char",
                  once=True),
    _Substitution("49 sizeof char literal", r"sizeof '(.*?)' = 1", r"sizeof '\g<1>' = 4"),
    _Substitution("50 sizeof(char literal)", r"sizeof\('(.*?)'\) = 1", r"sizeof('\g<1>') = 4"),
    _Substitution("51 empty char", r"= (-?\d+) ''", r"= \g<1>"),
    _Substitution("52 incomplete sequence", r", <incomplete sequence >"),
    _Substitution("53 shadowed declaration warning",
                  r"\s*warning: shadowed declaration is here \[-Wshadow\]", paste=False),
    _Substitution("53 shadowed declaration note", r"\s*note: shadowed declaration is here",
                  paste=False),
    _Substitution("54 macro at", r"preprocessor macro>\s+<at\s+>", "preprocessor macro>"),
    _Substitution("55 no symbol table",
                  r'<No symbol table is loaded.  Use the "file" command.>\s*'),
    _Substitution("56 warnings as; errors", r"cc1: all warnings being treated as; errors"),
    _Substitution("57 previous definition", r", note: this is the location of the previous "
                  r"definition"),
    _Substitution("58 previous declaration", r"\s+note: previous declaration of '.*?' was here"),
    _Substitution("59 called by gdb",
                  r' called by gdb \(\) at statement: void gdb\(\) \{ __asm__\(""\); \}'),
    _Substitution("60 called by ??", r"called by \?\? \(\) "),
    _Substitution("61 sanitizer memory dump", r"\s0x[a-z0-9]+: note: pointer points here.*?\^",
                  flags=_MD),
    _Substitution("62 sanitizer memory not printable",
                  r"\s0x[a-z0-9]+: note: pointer points here\s+<memory cannot be printed>",
                  flags=_MD),
    _Substitution("63 store address", r"store to address 0x[a-z0-9]+ with insufficient space",
                  "store to address with insufficient space", flags=_MD),
    _Substitution("64 misaligned address", r"load of misaligned address 0x[a-z0-9]+ for type",
                  "load of misaligned address for type", flags=_MD),
    _Substitution("65 gdb copyright", r"Copyright \(C\) \d+ Free Software Foundation.*",
                  flags=_MD, once=True),
    _Substitution("66 printf interceptor",
                  r"==\d+==WARNING: unexpected format specifier in printf interceptor: %\S+\s*",
                  flags=_MD),
    _Substitution("67 defined at, included at", r"(Defined at .*?)\s+included at", r"\g<1>",
                  flags=_MD),
    _Substitution("68 blank line before no output", r"^\nno output", "no output",
                  flags=_MD, once=True),
    _Substitution("69 expands to", r"expand (\S+)expands to", r"expand \g<1> expands to"),
    _Substitution("70 %b notes once", r"(note: %b is a candide extension\s*)+",
                  _CANDIDE_B + "  "),
    _Substitution("71 %b note before the bracket", r"candide extension\s+\]",
                  "candide extension]", once=True),
    _warnings_about_our_own_code,
    _Substitution("73 space before the first diagnostic", r"^\[\s+(warning:|note:)", r"[\g<1>",
                  once=True),
    _unterminated_directive,
    _Substitution("75 macro at (gdb)", r"preprocessor macro\s+at", "preprocessor macro"),
)

_TENDRA_STEPS: tuple[_Substitution, ...] = (
    _Substitution("empty lines", r"^\n+", flags=re.MULTILINE),
    _Substitution("c89 directory notice alone",
                  r"^\[Warning: Directory 'c89' already defined.\]\s*", once=True),
    _Substitution("c89 directory notice", r"\s*Warning: Directory 'c89' already defined."),
    _Substitution("source positions", r"\"{source}\", line \d+:\s*", paste=False),
    _Substitution("Error spacing", r"Error:\s+\[", "Error: [", paste=False),
    _Substitution("Warning spacing", r"Warning:\s+\[", "Warning: [", paste=False),
    _Substitution("space before the first diagnostic", r"^\[\s+(Warning|Error)", r"[\g<1>",
                  once=True, paste=False),
)
TENDRA_NOTICE = ("[Notice: TenDRA is missing support for candide extensions; use `cc` or "
                 "`clang` instead.]\n")


def filter_c_output(text: str, *, sourcefile: str, execfile: str, paste: bool,
                    unterminated_directive: bool) -> str:
    """The C filters on text that has been through the base post-processing.

    ``paste``: the answer is uploaded (``-paste`` or the edit command ``paste``), so
    positions are kept. ``unterminated_directive``: the code ended inside a ``#`` line.
    """
    context = _Context(sourcefile, execfile, paste, unterminated_directive)
    return _run(_C_STEPS, text, context)


def filter_tendra_output(text: str, *, sourcefile: str, execfile: str, paste: bool,
                         unterminated_directive: bool, channel: str) -> str:
    """The C filters (TenDRA shares the C preprocessing, so the unterminated-directive
    warning too), then TenDRA's; in a channel, a notice that candide's extensions are
    missing (not when the answer is tcc's version)."""
    context = _Context(sourcefile, execfile, paste, unterminated_directive)
    text = _run((*_C_STEPS, *_TENDRA_STEPS), text, context)
    if channel.startswith("#") and not text.startswith("tcc: Version"):
        text = TENDRA_NOTICE + text
    return text


def _run(steps: tuple[_Step, ...], text: str, context: _Context) -> str:
    for step in steps:
        if not isinstance(step, _Substitution):
            text = step(text, context)
        elif step.paste is None or step.paste == context.paste:
            pattern = _compiled(step.pattern, step.flags, context.sourcefile, context.execfile)
            replacement = step.replacement.replace(
                "{source}", context.sourcefile.replace("\\", "\\\\"))
            text = pattern.sub(replacement, text, count=1 if step.once else 0)
    return text


@functools.cache
def _compiled(pattern: str, flags: re.RegexFlag, sourcefile: str,
              execfile: str) -> re.Pattern[str]:
    filled = (pattern.replace("{workdir}", _WORK_DIRECTORY)
              .replace("{source}", re.escape(sourcefile))
              .replace("{exe}", re.escape(execfile)))
    return _perl_regex(filled, flags)
