"""The dialect's prelude, precompiled: most snippets start with it, and its thirty-odd headers
are most of a compile (gcc: ~190 ms for a c2x hello, ~100 ms with the prelude precompiled;
g++: 1.2 s against 0.26 s for prelude.hpp).

The code the host sent is compiled with its prelude lines left blank (so every line keeps its
number) and ``-include`` of a header holding that prelude, whose ``.gch`` gcc then loads. The
header is built once per compiler, option set and prelude, as root from the table's text
(never from user code), into a directory the user can read but not write. gcc checks that a
``.gch`` suits the options and otherwise reads the header itself, so the answer is the same
either way. Only for the language's own command line: root must not compile with options a
user chose (``-include /root/...``, ``-specs=``). And only for code gdb will not evaluate: a
precompiled header carries no macro definitions for gdb's ``-g3`` view, and
``print(INT_MAX)`` needs them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path

from pbotvm.guest import cgroup
from pbotvm.langspec import LangSpec

log = logging.getLogger("pbotvm.guest")

PCH_DIR = Path("/var/cache/pbotvm/pch")
COMPILERS = {"gcc": "c-header", "g++": "c++-header"}
BUILD_TIMEOUT = 120.0  # seconds; prelude.hpp takes g++ ~3 s here, far more under TCG


def default_command_line(spec: LangSpec, cmdline: str) -> bool:
    """Whether ``cmdline`` is the language's own, with its default options."""
    return cmdline in (spec.command_line("", paste=False), spec.command_line("", paste=True))


def split_prelude(code: str, prelude: str) -> str | None:
    """The code with its prelude's lines left blank; None if it does not start with it."""
    if not prelude or not code.startswith(prelude):
        return None
    return "\n" * prelude.count("\n") + code[len(prelude):]


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


def header(argv: list[str], sourcefile: str, prelude: str, env: Mapping[str, str]
           ) -> Path | None:
    """The prelude's header, its ``.gch`` built if it is missing; None if it cannot be."""
    options = header_options(argv, sourcefile)
    compiler = shutil.which(argv[0], path=env.get("PATH"))
    if options is None or compiler is None:
        return None
    stamp = os.stat(compiler)
    key = hashlib.sha256(json.dumps(
        [compiler, stamp.st_mtime_ns, stamp.st_size, options, prelude]).encode()).hexdigest()
    path = PCH_DIR / f"{key[:32]}.h"
    if not (PCH_DIR / f"{path.name}.gch").exists() and not _build(
            compiler, COMPILERS[Path(argv[0]).name], options, prelude, path, env):
        return None
    return path


def _build(compiler: str, language: str, options: list[str], prelude: str, path: Path,
           env: Mapping[str, str]) -> bool:
    """Write the header and its ``.gch`` under temporary names, then rename them into place:
    a compile running meanwhile sees both or neither."""
    path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent) as work:
        text, gch = Path(work, path.name), Path(work, f"{path.name}.gch")
        text.write_text(prelude)
        try:
            # Within the request's memory limit (g++ takes ~370 MB for prelude.hpp), and
            # killed at it like the request's own processes.
            done = subprocess.run([compiler, *options, "-x", language, str(text), "-o", str(gch)],
                                  env=dict(env), cwd=work, stdin=subprocess.DEVNULL,
                                  capture_output=True, timeout=BUILD_TIMEOUT, check=False,
                                  preexec_fn=cgroup.unprotect)
        except (OSError, subprocess.TimeoutExpired) as e:
            log.warning("cannot precompile the prelude for %s: %s", compiler, e)
            return False
        if done.returncode or not gch.exists():
            log.warning("cannot precompile the prelude for %s: %s", compiler,
                        done.stderr.decode(errors="replace").strip()[-300:])
            return False
        for made in (text, gch):
            made.chmod(0o644)
        text.replace(path)
        gch.replace(path.parent / gch.name)
    return True
