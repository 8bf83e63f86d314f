"""The host language table (spec languages.md §4-§5.1): one entry per original host module.

The entries are data: file names, the command line template (``$sourcefile``, ``$execfile``,
``$options``), default options, the extra options for paste and nopaste, the paste comment
markers and the prelude. The few languages that process code or output differently override
a hook. Values are those of 2023, except where HEAD fixed a plain bug: scheme's
``--no-auto-compile`` and Java's prelude (``import java.*;`` does not compile).

Lookup is an allow-list: ``-lang=`` is a key of this table or a display name, never a path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pbotvm.host.options import ParsedOptions, newlines_outside_quotes
from pbotvm.tokenizer import PERL_SPACE

_WS = re.escape(PERL_SPACE)

@dataclass(frozen=True)
class PasteMarkers:
    """The comments around the command line and the output in a pasted program."""

    cmdline_open: str
    cmdline_close: str
    output_open: str
    output_close: str


DEFAULT_MARKERS = PasteMarkers(
    "/************* CMDLINE *************\n", "************** CMDLINE *************/\n",
    "/************* OUTPUT *************\n", "************** OUTPUT *************/\n",
)
SHELL_MARKERS = PasteMarkers(
    ": <<'____CMDLINE____'\n", "____CMDLINE____\n", ": << '____OUTPUT____'\n", "____OUTPUT____\n",
)
_BAR = "==============="


def _fenced(opening: str, closing: str) -> PasteMarkers:
    """Markers that are a comment line, a banner, ..., a banner, the closing comment line."""
    return PasteMarkers(
        f"{opening}\n{_BAR} CMDLINE {_BAR}\n", f"{_BAR} CMDLINE {_BAR}\n{closing}\n",
        f"{opening}\n{_BAR} OUTPUT {_BAR}\n", f"{_BAR} OUTPUT {_BAR}\n{closing}\n",
    )


PYTHON_MARKERS = _fenced("'''", "'''")
BASIC_MARKERS = _fenced("/'", "'/")
HASKELL_MARKERS = _fenced("{-|", "-}")
LISP_MARKERS = PasteMarkers(
    f"#|{_BAR} CMDLINE {_BAR}\n", f"=={_BAR} CMDLINE {_BAR}|#\n",
    f"#|{_BAR} OUTPUT {_BAR}\n", f"=={_BAR} OUTPUT {_BAR}|#\n",
)
LUA_MARKERS = PasteMarkers(
    "--[[--------------- CMDLINE ---------------\n",
    "------------------- CMDLINE ---------------]]\n",
    "--[[--------------- OUTPUT ---------------\n",
    "------------------- OUTPUT ---------------]]\n",
)
PERL_MARKERS = PasteMarkers(
    f"=cut {_BAR} CMDLINE {_BAR}\n", "=cut\n", f"=cut {_BAR} OUTPUT {_BAR}\n", "=cut\n",
)
TCL_MARKERS = PasteMarkers("set CMDLINE {\n", "}\n", "set OUTPUT {\n", "}\n")


@dataclass(frozen=True, kw_only=True)
class Language:
    name: str  # the -lang= key, as the original module file was named
    display: str = ""  # shown by -info and the supported list; defaults to name
    sourcefile: str
    execfile: str
    cmdline: str
    default_options: str = ""
    options_paste: str = ""
    options_nopaste: str = ""
    markers: PasteMarkers = DEFAULT_MARKERS
    prelude: str = ""

    def __post_init__(self) -> None:
        if not self.display:
            object.__setattr__(self, "display", self.name)

    def preprocess_code(self, code: str, ctx: ParsedOptions | None = None) -> str:
        """The code as the guest gets it: ``\\n`` outside quotes becomes a newline (§3.7).

        ``ctx`` is what the C family and Java need for their own preprocessing (later).
        """
        return newlines_outside_quotes(code)

    def postprocess_output(self, text: str) -> str:
        """The language's own output filter, run after ``output.postprocess``."""
        return text


class BcLanguage(Language):
    def preprocess_code(self, code: str, ctx: ParsedOptions | None = None) -> str:
        # bc replaces the base step: no \n conversion, and it must be told to stop.
        return code + "\nquit\n"


class PerlLanguage(Language):
    def postprocess_output(self, text: str) -> str:
        # Drop the position and abort notes that follow perl's syntax errors (first of each).
        source = re.escape(self.sourcefile)
        text = re.sub(rf"[{_WS}]+at {source} line \d+, near \".*?\"", "", text, count=1)
        return re.sub(
            rf"[{_WS}]*Execution of {source} aborted due to compilation errors.", "", text,
            count=1)


class LispLanguage(Language):
    def postprocess_output(self, text: str) -> str:
        return text.removeprefix("\n")


@dataclass(frozen=True, kw_only=True)
class CFamilyLanguage(Language):
    # The C family's preprocessing, astyle and output filters (§5) plug in here later.
    gdb_extensions: bool = True  # prelude.h's print()/ptype()/... and print_last_statement


def _includes(*headers: str) -> str:
    return "".join(f"#include <{header}>\n" for header in headers)


_XOPEN = "#define _XOPEN_SOURCE 9001\n#define __USE_XOPEN\n"
_XOPEN_ONLY = "#define _XOPEN_SOURCE 9001\n"
# Each prelude ends with an empty line.
_C89_PRELUDE = _XOPEN + _includes(
    "stdio.h", "stdlib.h", "string.h", "unistd.h", "float.h", "math.h", "limits.h",
    "sys/types.h", "stdint.h", "errno.h", "ctype.h", "assert.h", "locale.h", "setjmp.h",
    "signal.h", "time.h", "stdarg.h", "stddef.h", "prelude.h") + "\n"
_C99_HEADERS = _includes(
    "stdio.h", "stdlib.h", "string.h", "unistd.h", "complex.h", "math.h", "tgmath.h",
    "limits.h", "sys/types.h", "stdint.h", "stdbool.h", "stddef.h", "stdarg.h", "ctype.h",
    "inttypes.h", "float.h", "errno.h", "time.h", "assert.h", "locale.h", "wchar.h", "fenv.h",
    "iso646.h", "setjmp.h", "signal.h", "prelude.h") + "\n"
_C11_PRELUDE = _XOPEN + _includes(
    "stdio.h", "stdlib.h", "string.h", "math.h", "limits.h", "stdbool.h", "stddef.h",
    "stdarg.h", "stdnoreturn.h", "stdalign.h", "ctype.h", "inttypes.h", "float.h", "errno.h",
    "time.h", "assert.h", "complex.h", "setjmp.h", "wchar.h", "wctype.h", "tgmath.h", "fenv.h",
    "locale.h", "iso646.h", "signal.h", "uchar.h", "stdint.h", "unistd.h", "sys/types.h",
    "prelude.h") + "\n"
_C2X_PRELUDE = _XOPEN + "\n" + _includes(
    "assert.h", "complex.h", "ctype.h", "errno.h", "fenv.h", "float.h", "inttypes.h",
    "iso646.h", "limits.h", "locale.h", "math.h", "setjmp.h", "signal.h", "stdalign.h",
    "stdarg.h", "stdatomic.h", "stdbool.h", "stddef.h", "stdint.h", "stdio.h", "stdlib.h",
    "stdnoreturn.h", "string.h", "tgmath.h", "threads.h", "time.h", "uchar.h", "wchar.h",
    "wctype.h") + "\n" + _includes("unistd.h", "sys/types.h") + "\n" + _includes(
    "prelude.h") + "\n"
_CLANG89_PRELUDE = _XOPEN_ONLY + _includes(
    "stdio.h", "stdlib.h", "string.h", "unistd.h", "math.h", "limits.h", "sys/types.h",
    "stdint.h", "errno.h", "ctype.h", "assert.h", "locale.h", "setjmp.h", "signal.h", "time.h",
    "stdarg.h", "stddef.h", "prelude.h") + "\n"
_CLANG11_PRELUDE = _XOPEN_ONLY + _includes(
    "stdio.h", "stdlib.h", "string.h", "unistd.h", "math.h", "limits.h", "sys/types.h",
    "stdint.h", "stdbool.h", "stddef.h", "stdarg.h", "stdnoreturn.h", "stdalign.h", "ctype.h",
    "inttypes.h", "float.h", "errno.h", "time.h", "assert.h", "complex.h", "setjmp.h",
    "wchar.h", "wctype.h", "tgmath.h", "fenv.h", "locale.h", "iso646.h", "signal.h", "uchar.h",
    "prelude.h") + "\n"
# Everything but prelude.hpp is disabled, and prelude.hpp was never shipped (spec §10.22).
_CPP_PRELUDE = "#if 0\n" + _XOPEN + "\n" + _includes(
    "algorithm", "fstream", "list", "regex", "tuple", "array", "functional", "locale",
    "scoped_allocator", "type_traits", "atomic", "future", "map", "set", "typeindex", "bitset",
    "initializer_list", "memory", "sstream", "typeinfo", "chrono", "iomanip", "mutex", "stack",
    "unordered_map", "codecvt", "ios", "new", "stdexcept", "unordered_set", "complex", "iosfwd",
    "numeric", "streambuf", "utility", "condition_variable", "iostream", "ostream", "string",
    "valarray", "deque", "istream", "queue", "vector", "exception", "iterator", "system_error",
    "forward_list", "iostream", "limits", "ratio", "thread") + "\n" + _includes(
    "cassert", "cinttypes", "csignal", "cstdio", "cwchar", "ccomplex", "ciso646", "cstdalign",
    "cstdlib", "cwctype", "cctype", "climits", "cstdarg", "cstring", "cerrno", "clocale",
    "cstdbool", "ctgmath", "cfenv", "cmath", "cstddef", "ctime", "cfloat", "csetjmp",
    "cstdint") + "\n" + _includes("prelude.h") + "\nusing namespace std;\n#endif\n\n" + _includes(
    "prelude.hpp") + "\n"
_TENDRA_PRELUDE = _includes(
    "stdio.h", "stdlib.h", "string.h", "float.h", "math.h", "limits.h", "errno.h", "ctype.h",
    "assert.h", "locale.h", "setjmp.h", "signal.h", "time.h", "stdarg.h", "stddef.h",
) + "\n#define print_last_statement(s) s\n\n"

_GCC = "gcc -gdwarf-2 -g3 $sourcefile $options -o $execfile"
_CLANG = "clang -gdwarf-2 -g3 $sourcefile $options -o $execfile"
_GCC_CARET = ("-fdiagnostics-show-caret", "-fno-diagnostics-show-caret")
_CLANG_CARET = ("-fcaret-diagnostics", "-fno-caret-diagnostics")
_C89_OPTIONS = ("-Wextra -Wall -Wno-unused -pedantic -Wfloat-equal -Wshadow -std=c89 -lm "
                "-Wfatal-errors -fsanitize=alignment,undefined")
_C11_OPTIONS = ("-Wextra -Wall -Wno-unused -pedantic -Wfloat-equal -Wshadow -std=c11 -lm "
                "-Wfatal-errors -fsanitize=alignment,undefined "
                "-fsanitize-address-use-after-scope -fno-omit-frame-pointer")
_CLANG89_OPTIONS = ("-Wextra -Wall -Wno-unused -pedantic -Wfloat-equal -Wshadow -std=c89 -lm "
                    "-Wfatal-errors -fsanitize=integer,undefined,alignment")
_CLANG11_OPTIONS = ("-Wextra -Wall -Wno-unused -Wno-unused-parameter -pedantic -Wfloat-equal "
                    "-Wshadow -std=c11 -lm -Wfatal-errors -fsanitize=integer,undefined,alignment "
                    "-fsanitize-address-use-after-scope -fno-omit-frame-pointer")
_CLANG2X_OPTIONS = ("-Wextra -Wall -Wno-unused -Wno-unused-parameter -pedantic -Wfloat-equal "
                    "-Wshadow -std=c2x -lm -Wfatal-errors -fsanitize=integer,alignment,undefined "
                    "-fsanitize-address-use-after-scope -fno-omit-frame-pointer")
_CPP_OPTIONS = ("-std=c++14 -Wextra -Wall -Wno-unused -pedantic -Wfloat-equal -Wshadow -lm "
                "-Wfatal-errors -fsanitize=alignment,undefined")


def _c(name: str, cmdline: str, options: str, caret: tuple[str, str], prelude: str, *,
       display: str = "", sourcefile: str = "prog.c") -> CFamilyLanguage:
    return CFamilyLanguage(name=name, display=display, sourcefile=sourcefile, execfile="prog",
                           cmdline=cmdline, default_options=options, options_paste=caret[0],
                           options_nopaste=caret[1], prelude=prelude)


def _script(name: str, extension: str, program: str, markers: PasteMarkers = DEFAULT_MARKERS,
            default_options: str = "") -> Language:
    """An interpreter that runs its source file: ``<program> $options $sourcefile``."""
    source = f"prog.{extension}"
    return Language(name=name, sourcefile=source, execfile=source,
                    cmdline=f"{program} $options $sourcefile", default_options=default_options,
                    markers=markers)


LANGUAGES: tuple[Language, ...] = (
    _script("bash", "bash", "bash", SHELL_MARKERS),
    BcLanguage(name="bc", sourcefile="prog.bc", execfile="prog.bc",
               cmdline="sh -c 'BC_LINE_LENGTH=2000000000 bc -q $options $sourcefile'",
               default_options="-l"),
    _script("bf", "bf", "bf"),
    _c("c11", _GCC, _C11_OPTIONS, _GCC_CARET, _C11_PRELUDE),
    _c("c2x", _GCC, _C11_OPTIONS.replace("c11", "c2x"), _GCC_CARET, _C2X_PRELUDE),
    _c("c89", _GCC, _C89_OPTIONS, _GCC_CARET, _C89_PRELUDE),
    _c("c99", _GCC, _C89_OPTIONS.replace("c89", "c99"), _GCC_CARET, _XOPEN + _C99_HEADERS),
    _c("clang", _CLANG, _CLANG2X_OPTIONS, _CLANG_CARET, _C2X_PRELUDE),
    _c("clang11", _CLANG, _CLANG11_OPTIONS, _CLANG_CARET, _CLANG11_PRELUDE),
    _c("clang2x", _CLANG, _CLANG2X_OPTIONS, _CLANG_CARET, _C2X_PRELUDE),
    _c("clang89", _CLANG, _CLANG89_OPTIONS, _CLANG_CARET, _CLANG89_PRELUDE),
    _c("clang99", _CLANG, _CLANG89_OPTIONS.replace("c89", "c99"), _CLANG_CARET,
       _XOPEN_ONLY + _C99_HEADERS),
    _c("clangpp", "clang++-3.7 -I/usr/include/x86_64-linux-gnu/c++/5/ -gdwarf-2 -g3 "
       "$sourcefile $options -o $execfile", _CPP_OPTIONS, _CLANG_CARET, _CPP_PRELUDE,
       display="clang++", sourcefile="prog.cpp"),
    LispLanguage(name="clisp", sourcefile="prog.lisp", execfile="prog.lisp",
                 cmdline="clisp $options $sourcefile", markers=LISP_MARKERS),
    _c("cpp", "g++ -ggdb -g3 $sourcefile $options -o $execfile", _CPP_OPTIONS, _GCC_CARET,
       _CPP_PRELUDE, display="c++", sourcefile="prog.cpp"),
    Language(name="freebasic", sourcefile="prog.bas", execfile="prog",
             cmdline="fbc -g $options $sourcefile", markers=BASIC_MARKERS),
    Language(name="go", sourcefile="prog.go", execfile="prog",
             cmdline="go $options run $sourcefile"),
    Language(name="haskell", sourcefile="prog.hs", execfile="prog",
             cmdline="ghc -v0 $options -o $execfile $sourcefile", markers=HASKELL_MARKERS),
    # Java's -nomain/-noheaders and class wrapping (§4.3) plug in here later.
    Language(name="java", sourcefile="prog.java", execfile="prog",
             cmdline="javac $options $sourcefile",
             prelude="import java.lang.*;\nimport java.util.*;\n\n"),
    Language(name="javascript", sourcefile="prog.js", execfile="prog.js",
             cmdline="sh -c 'NODE_DISABLE_COLORS=1 node -p $options < $sourcefile'"),
    _script("ksh", "ksh", "ksh", SHELL_MARKERS),
    _script("lua", "lua", "lua", LUA_MARKERS),
    PerlLanguage(name="perl", sourcefile="prog.pl", execfile="prog.pl",
                 cmdline="perl $options $sourcefile", default_options="-w",
                 markers=PERL_MARKERS),
    _script("php", "php", "php"),
    _script("python", "py", "python", PYTHON_MARKERS),
    _script("python3", "py3", "python3", PYTHON_MARKERS),
    Language(name="qbasic", sourcefile="prog.bas", execfile="prog",
             cmdline="fbc -g -lang qb $options $sourcefile", markers=BASIC_MARKERS),
    _script("ruby", "rb", "ruby", default_options="-w"),
    LispLanguage(name="scheme", sourcefile="prog.scm", execfile="prog.scm",
                 cmdline="guile $options $sourcefile", default_options="--no-auto-compile",
                 markers=LISP_MARKERS),
    _script("sh", "sh", "sh", SHELL_MARKERS),
    _script("tcl", "tcl", "tclsh", TCL_MARKERS),
    CFamilyLanguage(name="tendra", sourcefile="prog.c", execfile="prog",
                    cmdline="tcc $sourcefile $options -o $execfile", default_options="-Xp -Yansi",
                    prelude=_TENDRA_PRELUDE, gdb_extensions=False),
    _script("zsh", "zsh", "zsh", SHELL_MARKERS),
)

_BY_NAME = {language.name: language for language in LANGUAGES}
_BY_DISPLAY = {language.display: language for language in LANGUAGES}


def find_language(lang: str) -> Language | None:
    """The language for a ``-lang=`` value: a table key first, then a display name."""
    return _BY_NAME.get(lang) or _BY_DISPLAY.get(lang)


def supported_names() -> list[str]:
    return [language.display for language in LANGUAGES]


def unsupported_message(lang: str) -> str:
    return (f"Language '{lang}' is not supported.\n"
            f"Supported languages are: {', '.join(supported_names())}")
