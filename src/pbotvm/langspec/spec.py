"""The shape of a language's facts: what host, guest and image each read from one table."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from pbotvm.tokenizer import PERL_SPACE

_OPTIONS_GAP = re.compile(rf"\$options[{re.escape(PERL_SPACE)}]+")


class RunMode(StrEnum):
    """How the guest turns a request into a running program."""

    SCRIPT = "script"  # the command line is the program (interpreters)
    COMPILED = "compiled"  # the command line compiles; then ./execfile runs
    CFAMILY = "cfamily"  # compiled, with prelude.h, gdb reports and the last-statement value
    JAVA = "java"  # javac compiles; then java runs the class that has main


class Behaviour(StrEnum):
    """What the host does with a language's code and output beyond the base steps: the key
    of its behaviour in ``host.request.language.BEHAVIOURS``."""

    BASE = "base"  # \n outside quotes becomes a newline; the output as it is
    BC = "bc"  # the code as written, then quit
    PERL = "perl"  # perl's notes after a syntax error are dropped
    LISP = "lisp"  # one leading newline of the output is dropped
    CFAMILY = "cfamily"  # bare statements to a program, astyle, the C output filters
    JAVA = "java"  # bare statements to class prog's main


class Diagnostics(StrEnum):
    """Whose messages a C-family language's output filter tidies."""

    GCC = "gcc"  # gcc's and clang's
    TENDRA = "tendra"  # TenDRA's tcc: the C filters, then its own (a notice in a channel)


@dataclass(frozen=True)
class PasteMarkers:
    """The comments around the command line and the output in a pasted program."""

    cmdline_open: str
    cmdline_close: str
    output_open: str
    output_close: str


@dataclass(frozen=True)
class Toolchain:
    """The program a language needs in the guest, and where it comes from."""

    program: str  # looked up on the program's PATH before a run
    package: str | None  # the Debian package that has it; None: Debian has none
    # Packages its programs need besides (clang's sanitizer runtime, which the language's
    # options link: Debian's clang does not bring it).
    also: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class LangSpec:
    name: str  # the -lang= key, as the original module file was named
    display: str = ""  # shown by -info and the supported list; defaults to name
    sourcefile: str
    execfile: str
    cmdline: str  # with $sourcefile, $execfile and $options
    default_options: str = ""
    options_paste: str = ""  # added to the options when the answer is pasted
    options_nopaste: str = ""  # ... and when it is not
    markers: PasteMarkers
    prelude: str = ""
    run: RunMode = RunMode.SCRIPT
    toolchain: Toolchain
    hello: str  # a program printing "hello", as a user would write it in a channel
    gdb: bool = False  # C family: prelude.h's helpers and the last-statement value
    behaviour: Behaviour = Behaviour.BASE
    # C family: the preprocessing's analysis strips /* */ comments before // ones (c89, which
    # has no // comments), not after.
    block_comments_first: bool = False
    diagnostics: Diagnostics = Diagnostics.GCC  # C family: which output filter
    # Added after the compiler's name when the command line is the language's own: the same
    # answer, sooner (-info still shows the command line).
    compile_speedups: str = ""

    def __post_init__(self) -> None:
        if not self.display:
            object.__setattr__(self, "display", self.name)

    def command_line(self, options: str, paste: bool) -> str:
        """The command line sent to the guest (as vm-exec's execute built it) for the user's
        compiler or interpreter ``options`` (empty: the defaults), with the paste or no-paste
        extras."""
        options = options or self.default_options
        extra = self.options_paste if paste else self.options_nopaste
        if extra:
            options = f"{options} {extra}" if options else extra
        return _fill_options(self._fill_files(self.cmdline), options)

    def info_line(self) -> str:
        """The ``-info`` answer: the default command line, without the paste/nopaste extras."""
        cmdline = self._fill_files(_fill_options(self.cmdline, self.default_options))
        return f"{self.display} cmdline: {cmdline}"

    def _fill_files(self, cmdline: str) -> str:
        return cmdline.replace("$sourcefile", self.sourcefile).replace(
            "$execfile", self.execfile)


def _fill_options(cmdline: str, options: str) -> str:
    if options:
        return cmdline.replace("$options", options, 1)
    return _OPTIONS_GAP.sub("", cmdline, count=1)
