"""The language table: one entry per original host module, in file order (the order of the
"Supported languages" list).

Values are those of 2023, except where HEAD or we fixed a plain bug: scheme's
``--no-auto-compile`` and Java's prelude (HEAD); clang++ runs ``clang++`` (the original named
``clang++-3.7`` and a GCC 5 include directory, found on no current system); bf runs ``beef``,
the Brainfuck interpreter Debian packages (the original's ``bf`` and HEAD's ``bff`` are not).
"""

from __future__ import annotations

from pbotvm.langspec import markers, preludes
from pbotvm.langspec.spec import Behaviour, Diagnostics, LangSpec, PasteMarkers, RunMode, Toolchain

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
_GCC_TOOLS = Toolchain("gcc", "gcc")
_CLANG_TOOLS = Toolchain("clang", "clang", also=("libclang-rt-dev",))
_CLANGPP_TOOLS = Toolchain("clang++", "clang", also=("libclang-rt-dev",))
_C_HELLO = 'puts("hello");'
_CPP_HELLO = 'std::cout << "hello" << std::endl;'


def _c(name: str, cmdline: str, options: str, caret: tuple[str, str], prelude: str,
       toolchain: Toolchain, *, display: str = "", sourcefile: str = "prog.c",
       hello: str = _C_HELLO, block_comments_first: bool = False) -> LangSpec:
    return LangSpec(name=name, display=display, sourcefile=sourcefile, execfile="prog",
                    cmdline=cmdline, default_options=options, options_paste=caret[0],
                    options_nopaste=caret[1], markers=markers.DEFAULT, prelude=prelude,
                    run=RunMode.CFAMILY, toolchain=toolchain, hello=hello, gdb=True,
                    behaviour=Behaviour.CFAMILY, block_comments_first=block_comments_first)


def _script(name: str, extension: str, program: str, package: str | None, hello: str,
            paste: PasteMarkers = markers.DEFAULT, default_options: str = "", *,
            behaviour: Behaviour = Behaviour.BASE) -> LangSpec:
    """An interpreter that runs its source file: ``<program> $options $sourcefile``."""
    source = f"prog.{extension}"
    return LangSpec(name=name, sourcefile=source, execfile=source,
                    cmdline=f"{program} $options $sourcefile", default_options=default_options,
                    markers=paste, toolchain=Toolchain(program, package), hello=hello,
                    behaviour=behaviour)


LANGUAGES: tuple[LangSpec, ...] = (
    _script("bash", "bash", "bash", "bash", "echo hello", markers.SHELL),
    LangSpec(name="bc", sourcefile="prog.bc", execfile="prog.bc",
             cmdline="sh -c 'BC_LINE_LENGTH=2000000000 bc -q $options $sourcefile'",
             default_options="-l", markers=markers.DEFAULT, toolchain=Toolchain("bc", "bc"),
             hello='print "hello\\n"', behaviour=Behaviour.BC),
    _script("bf", "bf", "beef", "beef",
            "++++++++[>+++++++++++++<-]>.---.+++++++..+++.>++++++++++."),
    _c("c11", _GCC, _C11_OPTIONS, _GCC_CARET, preludes.C11, _GCC_TOOLS),
    _c("c2x", _GCC, _C11_OPTIONS.replace("c11", "c2x"), _GCC_CARET, preludes.C2X, _GCC_TOOLS),
    _c("c89", _GCC, _C89_OPTIONS, _GCC_CARET, preludes.C89, _GCC_TOOLS,
       block_comments_first=True),
    _c("c99", _GCC, _C89_OPTIONS.replace("c89", "c99"), _GCC_CARET, preludes.C99, _GCC_TOOLS),
    _c("clang", _CLANG, _CLANG2X_OPTIONS, _CLANG_CARET, preludes.C2X, _CLANG_TOOLS),
    _c("clang11", _CLANG, _CLANG11_OPTIONS, _CLANG_CARET, preludes.CLANG11, _CLANG_TOOLS),
    _c("clang2x", _CLANG, _CLANG2X_OPTIONS, _CLANG_CARET, preludes.C2X, _CLANG_TOOLS),
    _c("clang89", _CLANG, _CLANG89_OPTIONS, _CLANG_CARET, preludes.CLANG89, _CLANG_TOOLS),
    _c("clang99", _CLANG, _CLANG89_OPTIONS.replace("c89", "c99"), _CLANG_CARET,
       preludes.CLANG99, _CLANG_TOOLS),
    _c("clangpp", "clang++ -gdwarf-2 -g3 $sourcefile $options -o $execfile", _CPP_OPTIONS,
       _CLANG_CARET, preludes.CPP, _CLANGPP_TOOLS, display="clang++",
       sourcefile="prog.cpp", hello=_CPP_HELLO),
    LangSpec(name="clisp", sourcefile="prog.lisp", execfile="prog.lisp",
             cmdline="clisp $options $sourcefile", markers=markers.LISP,
             toolchain=Toolchain("clisp", "clisp"), hello='(format t "hello~%")',
             behaviour=Behaviour.LISP),
    _c("cpp", "g++ -ggdb -g3 $sourcefile $options -o $execfile", _CPP_OPTIONS, _GCC_CARET,
       preludes.CPP, Toolchain("g++", "g++"), display="c++", sourcefile="prog.cpp",
       hello=_CPP_HELLO),
    LangSpec(name="freebasic", sourcefile="prog.bas", execfile="prog",
             cmdline="fbc -g $options $sourcefile", markers=markers.BASIC,
             run=RunMode.COMPILED,
             toolchain=Toolchain("fbc", None), hello='print "hello"'),
    LangSpec(name="go", sourcefile="prog.go", execfile="prog",
             cmdline="go $options run $sourcefile",
             markers=markers.DEFAULT, toolchain=Toolchain("go", "golang-go"),
             hello='package main; import "fmt"; func main() { fmt.Println("hello") }'),
    LangSpec(name="haskell", sourcefile="prog.hs", execfile="prog",
             cmdline="ghc -v0 $options -o $execfile $sourcefile", markers=markers.HASKELL,
             run=RunMode.COMPILED, toolchain=Toolchain("ghc", "ghc"),
             hello='main = putStrLn "hello"'),
    LangSpec(name="java", sourcefile="prog.java", execfile="prog",
             cmdline="javac $options $sourcefile",
             markers=markers.DEFAULT, prelude=preludes.JAVA, run=RunMode.JAVA,
             toolchain=Toolchain("javac", "default-jdk-headless"),
             hello='System.out.println("hello");', behaviour=Behaviour.JAVA,
             # javac's JVM: its C2 compiler and parallel GC cost a one-core TCG guest more
             # than they save (a hello's javac: over 8 s of CPU against 6.3 s).
             compile_speedups="-J-XX:TieredStopAtLevel=1 -J-XX:+UseSerialGC"),
    LangSpec(name="javascript", sourcefile="prog.js", execfile="prog.js",
             cmdline="sh -c 'NODE_DISABLE_COLORS=1 node -p $options < $sourcefile'",
             markers=markers.DEFAULT, toolchain=Toolchain("node", "nodejs"), hello='"hello"'),
    _script("ksh", "ksh", "ksh", "ksh", "echo hello", markers.SHELL),
    _script("lua", "lua", "lua", "lua5.4", 'print("hello")', markers.LUA),
    _script("perl", "pl", "perl", "perl", 'print "hello\\n";', markers.PERL, "-w",
            behaviour=Behaviour.PERL),
    _script("php", "php", "php", "php-cli", '<?php echo "hello\\n";'),
    _script("python", "py", "python", "python-is-python3", 'print("hello")', markers.PYTHON),
    _script("python3", "py3", "python3", "python3", 'print("hello")', markers.PYTHON),
    LangSpec(name="qbasic", sourcefile="prog.bas", execfile="prog",
             cmdline="fbc -g -lang qb $options $sourcefile", markers=markers.BASIC,
             run=RunMode.COMPILED, toolchain=Toolchain("fbc", None), hello='PRINT "hello"'),
    _script("ruby", "rb", "ruby", "ruby", 'puts "hello"', default_options="-w"),
    LangSpec(name="scheme", sourcefile="prog.scm", execfile="prog.scm",
             cmdline="guile $options $sourcefile", default_options="--no-auto-compile",
             markers=markers.LISP, toolchain=Toolchain("guile", "guile-3.0"),
             hello='(display "hello") (newline)', behaviour=Behaviour.LISP),
    _script("sh", "sh", "sh", "bash", "echo hello", markers.SHELL),
    _script("tcl", "tcl", "tclsh", "tcl", "puts hello", markers.TCL),
    # TenDRA's tcc (not the Tiny C Compiler of the same name): C, without gdb (the original's
    # tendra.pm sets no_gdb_extensions).
    LangSpec(name="tendra", sourcefile="prog.c", execfile="prog",
             cmdline="tcc $sourcefile $options -o $execfile", default_options="-Xp -Yansi",
             markers=markers.DEFAULT, prelude=preludes.TENDRA, run=RunMode.CFAMILY,
             toolchain=Toolchain("tcc", None), hello=_C_HELLO, behaviour=Behaviour.CFAMILY,
             diagnostics=Diagnostics.TENDRA),
    _script("zsh", "zsh", "zsh", "zsh", "echo hello", markers.SHELL),
)

_BY_NAME = {spec.name: spec for spec in LANGUAGES}
_BY_DISPLAY = {spec.display: spec for spec in LANGUAGES}


def find(lang: str) -> LangSpec | None:
    """The language for a ``-lang=`` value: a table key first, then a display name."""
    return _BY_NAME.get(lang) or _BY_DISPLAY.get(lang)


def supported_names() -> list[str]:
    return [spec.display for spec in LANGUAGES]
