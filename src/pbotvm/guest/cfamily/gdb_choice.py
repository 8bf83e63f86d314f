"""When a C program has to run under gdb, and when running it directly answers the same.

The original ran every program under gdb, which costs a few hundred milliseconds. gdb only
adds to the answer when the code asks it something (prelude.h's helpers, or gdb() itself),
when the program dies from a signal (it reports where), or when the program prints nothing
(it shows main's locals at the end). The first shows in the code; the others after a direct
run, which is then repeated under gdb with the same input and arguments. Code that handles
or sends signals runs under gdb from the start: gdb stops a program at a signal that the
program itself would survive.
"""

from __future__ import annotations

import enum
import re
import signal

# prelude.h's helpers: macros that hand their arguments to gdb() as text.
HELPERS = ("print", "dump", "ptype", "whatis", "trace", "watch", "print_last_statement")
_GDB_WORDS = re.compile(
    rf"\b(?:{'|'.join(HELPERS)}|gdb"
    r"|signal|sigaction|sigset|bsd_signal|sysv_signal|raise|kill|killpg|sigqueue"
    r"|pthread_kill|pthread_sigqueue|tgkill|tkill|ptrace)\b")
# How programs write to stdout. Code with none of them most likely prints nothing, and is then
# run again under gdb (it shows main's locals).
_OUTPUT_WORDS = re.compile(
    r"\b(?:printf|puts|putchar|putc|fputs|fputc|fprintf|fwrite|write|vprintf|vfprintf"
    r"|dprintf|wprintf|putwchar|fputws|fputwc|cout|wcout)\b")
# The prelude includes <signal.h>; a header's name is no reason for gdb.
_INCLUDE_LINE = re.compile(r"^[ \t]*#[ \t]*include\b.*$", re.MULTILINE)


class AfterDirectRun(enum.Enum):
    KEEP = "keep"  # gdb would have added nothing
    RERUN = "rerun"  # run again under gdb, for its report
    STALL = "stall"  # under gdb the original waited for its time-out


def needs_gdb(code: str) -> bool:
    """Whether the code may call gdb() or may take a signal that gdb would stop at."""
    return _GDB_WORDS.search(_INCLUDE_LINE.sub("", code)) is not None


def likely_under_gdb(code: str) -> bool:
    """Whether gdb will most likely run the program, from the start or after a direct run that
    printed nothing: its compile needs debugging information then, and may skip it
    otherwise (most of a snippet's assembly, ~0.2 s of its compile without KVM)."""
    return needs_gdb(code) or _OUTPUT_WORDS.search(_INCLUDE_LINE.sub("", code)) is None


def after_direct_run(ended_by: int | None, printed: bool) -> AfterDirectRun:
    """What a direct run that ended by itself (``ended_by`` is the signal that ended it, if
    any; ``printed`` is whether it wrote to stdout) still needs."""
    if ended_by == signal.SIGKILL:
        # gdb cannot stop a program at SIGKILL; guest-gdb then saw an "exited-signalled"
        # it had no case for, and waited for its time-out.
        return AfterDirectRun.STALL
    if ended_by is not None or not printed:
        return AfterDirectRun.RERUN
    return AfterDirectRun.KEEP
