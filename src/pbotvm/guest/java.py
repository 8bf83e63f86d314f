"""Which file Java code must be in, and which class to run (the original's Java run step was
broken; HEAD runs ``java prog``, which fails for any class not named ``prog``).

javac wants a public class in a file of its name, and the program is the class that declares
``main``. Both are read off the source text: no JVM start (half a second) just to ask.
"""

from __future__ import annotations

import re

from pbotvm.guest.compiled import Compiled
from pbotvm.guest.modes import registers
from pbotvm.langspec import RunMode
from pbotvm.protocol import Request

_PUBLIC_CLASS = re.compile(r"^\s*public\s+(?:(?:final|abstract|strictfp)\s+)*class\s+(\w+)",
                           re.MULTILINE)
_CLASS = re.compile(r"\b(?:class|enum|record|interface)\s+(\w+)")
_MAIN = re.compile(r"\bstatic\s+(?:final\s+)?(?:public\s+)?void\s+main\s*\(")
_COMMENTS_AND_STRINGS = re.compile(r'//[^\n]*|/\*.*?\*/|"(?:\\.|[^"\\\n])*"', re.DOTALL)
DEFAULT_CLASS = "prog"  # the class the host wraps bare statements in


def _code_only(code: str) -> str:
    return _COMMENTS_AND_STRINGS.sub(lambda m: " " * len(m[0]), code)


def source_file(code: str, sourcefile: str, cmdline: str) -> tuple[str, str]:
    """The file name and command line that make javac accept the code's public class."""
    public = _PUBLIC_CLASS.search(_code_only(code))
    if public is None or f"{public[1]}.java" == sourcefile:
        return sourcefile, cmdline
    renamed = f"{public[1]}.java"
    return renamed, re.sub(rf"(?<!\S){re.escape(sourcefile)}(?!\S)", renamed, cmdline)


def main_class(code: str) -> str:
    """The class whose body declares ``main``: the last class opened before it."""
    text = _code_only(code)
    main = _MAIN.search(text)
    if main is None:
        return DEFAULT_CLASS
    classes = [m[1] for m in _CLASS.finditer(text, 0, main.start())]
    return classes[-1] if classes else DEFAULT_CLASS


def run_command(code: str) -> str:
    return f"java -cp . {main_class(code)}"


@registers(RunMode.JAVA)
class Java(Compiled):
    """javac compiles the file its public class needs; java runs the class that has main."""

    def source(self, request: Request) -> tuple[str, str]:
        return source_file(request.code, request.sourcefile, request.cmdline)

    def program(self, request: Request) -> str:
        return run_command(request.code)
