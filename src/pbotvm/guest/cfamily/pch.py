"""The dialect's prelude, precompiled: most snippets start with it, and its thirty-odd headers
and prelude.h's functions are most of a compile (gcc: ~190 ms for a c2x hello, ~100 ms with
the prelude precompiled; g++: 1.2 s against 0.26 s for prelude.hpp; under TCG the functions
alone took 0.4 s of a 1.0 s compile).

The code the host sent is compiled with its prelude lines left blank (so every line keeps its
number), ``-include`` of a header holding that prelude, whose ``.gch`` gcc then loads, and an
object file holding prelude.h's functions, linked first as they came first: the header
defines ``PBOTVM_PRELUDE_LINKED``, so prelude.h only declares them there. Both are built once
per compiler, option set and prelude, as root from the table's text (never from user code),
into a directory the user can read but not write. gcc checks that a ``.gch`` suits the
options and otherwise reads the header itself, so the answer is the same either way.

Only for the language's own command line: root must not compile with options a user chose
(``-include /root/...``, ``-specs=``). And for code whose expressions gdb evaluates
(``print(x)``, ``1+1``), only when gdb will need no macro there: with a precompiled header
gcc's ``-g3`` records no macro at all, and ``print(INT_MAX)`` needs one. So the build also
lists the prelude's macros (``gcc -dM -E``), and code naming one of them, or with
preprocessor lines of its own, gets the whole prelude (``Prelude.hides_macros``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pbotvm.guest import cgroup
from pbotvm.guest.cfamily import gdb_choice
from pbotvm.langspec import LangSpec

log = logging.getLogger("pbotvm.guest")

PCH_DIR = Path("/var/cache/pbotvm/pch")
LINKED = "#define PBOTVM_PRELUDE_LINKED 1\n"
# compiler -> the language of the header, and of the object's source. clang++ finds its own
# build through gcc's `-include` convention (a `.gch` beside the header) and refuses one built
# with other options, where the usual compile answers; prelude.hpp took it 3 s of each of a
# hello's three compiles natively, ~40 s in all under TCG.
COMPILERS = {"gcc": ("c-header", "c"), "g++": ("c++-header", "c++"),
             "clang++": ("c++-header", "c++")}
# Code naming prelude.h's functions gets the usual compile: there they are defined, in the
# precompiled header not even declared. Their names all start so; its type is in both.
_PRELUDE_FUNCTION = re.compile(r"\bprelude_(?!binary_t\b)\w+")
PRELUDE_H = "prelude.h"
# prelude.h's helpers, called as statements: gdb meets their arguments as text, not their
# names. A helper within an expression gdb evaluates (``print_last_statement(whatis(x))``) is
# a macro gdb expands, with the original's consequences.
_HELPER_STATEMENT = re.compile(rf"(?:\A|[;{{}}])\s*({'|'.join(gdb_choice.HELPERS)})\b")
_IDENTIFIER = re.compile(r"[A-Za-z_]\w*")
_DIRECTIVE = re.compile(r"^[ \t]*#", re.MULTILINE)
_DEFINE_LINE = re.compile(r"^#define ([A-Za-z_]\w*)", re.MULTILINE)
OUR_HEADERS = (Path("/usr/include/prelude.h"), Path("/usr/include/prelude.hpp"))
_INCLUDE_LINE = re.compile(r"[ \t]*#[ \t]*include\b")
BUILD_TIMEOUT = 120.0  # seconds; prelude.hpp takes g++ ~3 s here, far more under TCG


def default_command_line(spec: LangSpec, cmdline: str) -> bool:
    """Whether ``cmdline`` is the language's own, with its default options."""
    return cmdline in (spec.command_line("", paste=False), spec.command_line("", paste=True))


@dataclass(frozen=True)
class Prelude:
    """The prelude, built: what ``-include`` names, and the object to link first."""

    header: Path
    functions: Path
    macros: Path  # the names of the macros defined at its end, a line each

    def argv(self, argv: list[str], sourcefile: str) -> list[str]:
        """The compile's ``argv`` with them."""
        at = argv.index(sourcefile) if sourcefile in argv else 1
        return [*argv[:at], str(self.functions), *argv[at:], "-include", str(self.header)]

    def hides_macros(self, code: str) -> bool:
        """Whether gdb, evaluating expressions of ``code`` (its prelude blanked) in a program
        built with this header, could miss a macro it would see otherwise: the code has
        preprocessor lines (its own macros, headers), or a word of it (strings and comments
        too: gdb's commands come as strings) names one of the prelude's macros, other than
        a helper called as a statement."""
        if _DIRECTIVE.search(code):
            return True
        try:
            macros = set(self.macros.read_text().split())
        except OSError:
            return True
        statements = {match.start(1) for match in _HELPER_STATEMENT.finditer(code)}
        return any(match.group() in macros and match.start() not in statements
                   for match in _IDENTIFIER.finditer(code))


def split_prelude(code: str, prelude: str) -> str | None:
    """The code with its prelude's lines left blank; None if it does not start with it, or
    names the prelude's functions."""
    if (not prelude or not code.startswith(prelude)
            or _PRELUDE_FUNCTION.search(code, len(prelude))):
        return None
    return "\n" * prelude.count("\n") + code[len(prelude):]


def functions_source(prelude: str) -> str:
    """What the prelude's object is compiled from: prelude.h after the prelude's macro
    definitions (feature-test macros change what headers declare), without the other
    headers, which a header's functions do not depend on (C++'s take ~1 s to compile)."""
    kept = [line for line in prelude.splitlines() if not _INCLUDE_LINE.match(line)]
    return "\n".join([*kept, f"#include <{PRELUDE_H}>", ""])


def header_options(argv: list[str], sourcefile: str) -> list[str] | None:
    """The options a precompiled header must be built with: the compile's, without the
    source, the output and the libraries; None for a compiler we do not precompile for."""
    if Path(argv[0]).name not in COMPILERS:
        return None
    options, output = [], False
    for arg in argv[1:]:
        if output:
            output = False
        elif arg == "-o":
            output = True
        elif arg != sourcefile and not arg.startswith("-l"):
            options.append(arg)
    return options


def built(argv: list[str], sourcefile: str, prelude: str, env: Mapping[str, str]
          ) -> Prelude | None:
    """The prelude's header and object, built if they are missing; None if they cannot be."""
    options = header_options(argv, sourcefile)
    compiler = shutil.which(argv[0], path=env.get("PATH"))
    if options is None or compiler is None:
        return None
    stamp = os.stat(compiler)
    # Everything both builds read but the system's headers: an upgrade of the bot's own
    # headers (a new package, a new image) must not meet what the old ones built.
    ours = [path.read_text(errors="replace") if path.exists() else None
            for path in OUR_HEADERS]
    # A family keeps one build: a new version comes only with an upgrade (of the compiler or
    # of our headers), and then the old one is of no use.
    family = _digest([compiler, options, prelude])
    version = _digest([stamp.st_mtime_ns, stamp.st_size, LINKED, functions_source(prelude),
                       ours])
    name = f"{family}-{version}"
    made = Prelude(PCH_DIR / f"{name}.h", PCH_DIR / f"{name}.o", PCH_DIR / f"{name}.macros")
    if made.functions.exists() and made.macros.exists():  # (a build before macros had none)
        return made
    if not _build(compiler, COMPILERS[Path(argv[0]).name], options, prelude, made, env):
        return None
    _remove_stale(family, name)
    return made


def _digest(parts: list[object]) -> str:
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]


def _remove_stale(family: str, name: str) -> None:
    """What an earlier compiler or an earlier prelude.h built for the family (a C++ build is
    ~100 MB), and what builds killed midway left (a revert of the stand-in VM). A compile
    still naming a removed header fails, and the usual compile answers."""
    for path in PCH_DIR.glob(f"{family}-*"):
        if not path.name.startswith(f"{name}."):
            path.unlink(missing_ok=True)
    abandoned = time.time() - 2 * BUILD_TIMEOUT
    for work in PCH_DIR.glob("tmp*"):
        with contextlib.suppress(OSError):
            if work.is_dir() and work.stat().st_mtime < abandoned:
                shutil.rmtree(work)


def _build(compiler: str, languages: tuple[str, str], options: list[str], prelude: str,
           made: Prelude, env: Mapping[str, str]) -> bool:
    """Write the header in place, then its ``.gch``, its macros' names and the object under
    temporary names, and rename them into place, the object last: a compile running meanwhile
    sees all or none (no compile takes the header before the object is there). The header
    comes first because clang's build records where it is, and refuses to serve once that
    file is gone."""
    made.header.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    header_language, source_language = languages
    with tempfile.TemporaryDirectory(dir=made.header.parent) as work:
        text, source = Path(work, made.header.name), Path(work, "functions")
        gch, functions = Path(work, f"{made.header.name}.gch"), Path(work, made.functions.name)
        macros = Path(work, made.macros.name)
        text.write_text(LINKED + prelude)
        text.chmod(0o644)
        text.replace(made.header)
        header = str(made.header)
        source.write_text(functions_source(prelude))
        defined = _compile([compiler, *options, "-dM", "-E", "-x", header_language, header],
                           work, env)
        if defined is None:
            return False
        macros.write_text("".join(f"{name}\n" for name in macro_names(defined)))
        for argv in ([compiler, *options, "-x", header_language, header, "-o", str(gch)],
                     [compiler, *options, "-c", "-x", source_language, str(source), "-o",
                      str(functions)]):
            if _compile(argv, work, env) is None:
                return False
        for path in (gch, macros, functions):
            path.chmod(0o644)
            path.replace(made.header.parent / path.name)
    return True


def macro_names(defines: str) -> list[str]:
    """The names in ``gcc -dM -E``'s ``#define NAME[(args)] value`` lines."""
    return [match.group(1) for match in _DEFINE_LINE.finditer(defines)]


def _compile(argv: list[str], work: str, env: Mapping[str, str]) -> str | None:
    """The compiler's standard output, or None if it failed (logged)."""
    try:
        # Within the request's memory limit (g++ takes ~370 MB for prelude.hpp), and killed
        # at it like the request's own processes.
        done = subprocess.run(argv, env=dict(env), cwd=work, stdin=subprocess.DEVNULL,
                              capture_output=True, timeout=BUILD_TIMEOUT, check=False,
                              preexec_fn=cgroup.unprotect)
    except (OSError, subprocess.TimeoutExpired) as e:
        log.warning("cannot precompile the prelude for %s: %s", argv[0], e)
        return None
    if done.returncode:
        log.warning("cannot precompile the prelude for %s: %s", argv[0],
                    done.stderr.decode(errors="replace").strip()[-300:])
        return None
    return done.stdout.decode(errors="replace")
