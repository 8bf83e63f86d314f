"""The gdb side of a C program's run: ``gdb -nx -batch -x gdb_driver.py``, which waits for its
order (``channel.Order``: the program, its directory and arguments) and then runs it.

It does what the original's guest-gdb did over GDB/MI, from inside gdb through its Python API:
breakpoints at main's first and last lines and at prelude.h's gdb(); the commands the program
passes to gdb() run in the caller's frame and their answers are shown in the program's output;
main's locals are shown when the program printed nothing; a signal ends the run with a report
of where it happened. Texts are built by ``guest_gdb`` with the original's rules.

Deliberate differences: a watchpoint that triggers is reported and the run goes on (the
original stopped there until its time-out); a state in which the original waited for its
time-out ends the run at once, with the same ``[gdb time-out]`` text; gdb's own messages
(stdout and stderr of this process) never reach the answer.

The runner provides the descriptors of ``channel``; the records go to ``RECORDS_FD``.
"""

from __future__ import annotations

import mmap
import os
import sys
from pathlib import Path
from typing import Any

import gdb  # type: ignore[import-untyped]  # exists only inside gdb

# Run by gdb as a script, not imported: the package is found from this file's place.
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from pbotvm.guest.cfamily import channel, symbols
from pbotvm.guest.cfamily import guest_gdb as rules

_WATCHPOINTS = {
    gdb.BP_WATCHPOINT: "Watchpoint",
    gdb.BP_HARDWARE_WATCHPOINT: "Hardware watchpoint",
    gdb.BP_READ_WATCHPOINT: "Hardware read watchpoint",
    gdb.BP_ACCESS_WATCHPOINT: "Hardware access (read/write) watchpoint",
}


class _Stalled(Exception):
    """The original's guest-gdb would have waited here for its time-out."""


class Driver:
    def __init__(self, arguments: list[str]) -> None:
        self.arguments = arguments
        self.stops: list[Any] = []
        self.exits: list[Any] = []
        self.said_anything = False
        self.main_end: int | None = None
        self.end_locals: list[tuple[str, str]] = []
        self.watched: dict[int, str] = {}
        self.symbols_seen: set[str] | None = None  # libraries looked at; None: gdb reads all
        gdb.events.stop.connect(self.stops.append)
        gdb.events.exited.connect(self.exits.append)

    # -- talking to gdb, as guest-gdb's helpers did ------------------------------------------

    def console(self, command: str, report_error: bool = True) -> list[str]:
        """The command's output lines; an error is shown in the output, as guest-gdb did."""
        try:
            text = gdb.execute(command, to_string=True)
        except gdb.error as e:
            if report_error:
                self.emit(rules.mi_text(str(e)))
            return []
        return [rules.mi_text(line) for line in rules.records(text or "")]

    def emit(self, text: str) -> None:
        self.said_anything = True
        offset = os.fstat(channel.OUTPUT_FD).st_size
        os.write(channel.RECORDS_FD, channel.emit_record(offset, text))

    def output_so_far(self) -> bool:
        """guest-gdb's ``-s .output``: the program printed something, or guest-gdb did."""
        return self.said_anything or os.fstat(channel.OUTPUT_FD).st_size > 0

    def resume(self, command: str) -> Any:
        """Run or continue; the event that ended it. Events of inferior calls made by the
        commands before (``print f(1)``) were read and dropped by guest-gdb, so are here."""
        self.stops.clear()
        self.exits.clear()
        self.console(command)
        if self.exits:
            return self.exits[-1]
        if self.stops:
            self.read_symbols()
            return self.stops[-1]
        raise _Stalled

    def read_symbols(self) -> None:
        """Have gdb read the symbols of the libraries loaded since the last stop that are
        worth it (see ``symbols``), before anything looks at them."""
        if self.symbols_seen is None:
            return
        for path in symbols.shared_libraries(
                self.console("info sharedlibrary", report_error=False)):
            if path not in self.symbols_seen and symbols.worth_reading(path):
                self.console(symbols.read_command(path), report_error=False)
            self.symbols_seen.add(path)

    # -- the run ---------------------------------------------------------------------------

    def run(self) -> bytes:
        try:
            self.preamble()
            event = self.resume(self.run_command())
            while True:
                if isinstance(event, gdb.ExitedEvent):
                    return self.exited(event)
                if isinstance(event, gdb.SignalEvent):
                    self.signalled(event.stop_signal)
                    return channel.exited_record(0)
                if not isinstance(event, gdb.BreakpointEvent):
                    raise _Stalled
                self.breakpoint_hit(event)
                event = self.resume("cont")
        except _Stalled:
            return channel.stalled_record()

    def preamble(self) -> None:
        if not symbols.reads_all(program_needs()):
            self.console("set auto-solib-add off")
            self.symbols_seen = set()
        self.console("set charset UTF-8")
        self.console("set print sevenbit-strings on")
        self.console("set listsize unlimited")
        start = rules.main_start(self.console("info functions -q ^main$"))
        start, self.main_end = rules.main_span(start, self.console("list main"))
        for line in (start, self.main_end):
            self.console(f"break {'' if line is None else line}")
        self.console("break gdb")
        self.console("set print null-stop on")

    def run_command(self) -> str:
        quoted = "".join("'" + arg.replace("'", "'\"'\"'") + "' " for arg in self.arguments)
        plumbing = (f">&{channel.OUTPUT_FD} 2>&{channel.PROGRAM_STDERR_FD} "
                    f"{channel.PROGRAM_STDERR_FD}>&- {channel.OUTPUT_FD}>&- "
                    f"{channel.RECORDS_FD}>&-")
        return f"run {quoted}< .input {plumbing}"

    def exited(self, event: Any) -> bytes:
        if not hasattr(event, "exit_code"):
            # Killed by a signal: guest-gdb had no case for "exited-signalled".
            raise _Stalled
        if not self.output_so_far():
            local_values = rules.locals_text(self.end_locals)
            if local_values:
                self.emit(f"no output: {local_values}")
        return channel.exited_record(event.exit_code)

    def breakpoint_hit(self, event: Any) -> None:
        # A watchpoint that went out of scope stops the program once more, deleted by then.
        watchpoints = [bp for bp in event.breakpoints
                       if bp.is_valid() and bp.type in _WATCHPOINTS]
        if watchpoints:
            for bp in watchpoints:
                self.watch_triggered(bp)
            return
        frame = gdb.selected_frame()
        function = frame.name()
        if function == "main":
            if frame.find_sal().line == self.main_end:
                self.end_locals = rules.locals_of(self.console("info locals"))
        elif function == "gdb":
            self.user_command(frame)

    # -- gdb() -------------------------------------------------------------------------------

    def user_command(self, frame: Any) -> None:
        arguments = frame_arguments(frame)
        command = rules.gdb_command(arguments[0][1] if arguments else "")
        self.console("up")
        word, rest = rules.split_command(command)
        if word in rules.PRINT_COMMANDS:
            for value in rules.printed_values(self.console(f"print {rest}")):
                self.emit(f"{rest} = {value}")
        elif word == "ptype":
            self.emit(rules.ptype_text(rest, self.console(f"ptype {rest}")))
        elif word == "whatis":
            for text in rules.whatis_texts(rest, self.console(f"whatis {rest}")):
                self.emit(text)
        elif word == rules.LAST_STATEMENT:
            values = rules.printed_values(self.console(f"print {rest}"))
            if not self.output_so_far():
                for value in values:
                    self.emit(f"no output: {rest} = {value}")
        else:
            self.emit(rules.verbatim_text(self.console(command)))
            self.note_watchpoints()

    def note_watchpoints(self) -> None:
        """Remember the value of each new watchpoint, for its first change."""
        for bp in gdb.breakpoints():
            if bp.type in _WATCHPOINTS and bp.number not in self.watched:
                self.watched[bp.number] = watched_value(bp.expression)

    def watch_triggered(self, bp: Any) -> None:
        """A deliberate addition: say what changed (in gdb's words) and go on."""
        new = watched_value(bp.expression)
        old = self.watched.get(bp.number, new)
        self.watched[bp.number] = new
        change = f"Old value = {old}\nNew value = {new}" if old != new else f"Value = {new}"
        self.emit(f"{_WATCHPOINTS[bp.type]} {bp.number}: {bp.expression}\n\n{change}")

    # -- signals -----------------------------------------------------------------------------

    def signalled(self, signal: str) -> None:
        local_values = rules.locals_of(self.console("info locals"))
        frame = gdb.selected_frame()
        arguments = frame_arguments(frame)
        sal = frame.find_sal()
        statement = None
        if sal.symtab is not None and sal.line:
            statement = rules.listed_statement(
                self.console(f"list {sal.line},{sal.line}", report_error=False))
        first_statement = statement
        outer = []
        for function, args in rules.backtrace(self.console("bt"))[1:]:
            statement = rules.up_statement(self.up(), statement)
            outer.append(rules.OuterFrame(function, args, statement))
        self.emit(rules.signal_report(signal, self.signal_meaning(signal),
                                      frame.name() or "??", arguments, first_statement,
                                      outer, local_values))

    def up(self) -> list[str]:
        """``up``'s output (gdb prints it past to_string, so ``frame`` shows it again)."""
        try:
            gdb.execute("up", to_string=True)
        except gdb.error as e:
            self.emit(rules.mi_text(str(e)))
            return []
        return self.console("frame")

    def signal_meaning(self, signal: str) -> str:
        lines = self.console(f"info signals {signal}", report_error=False)
        return lines[-1].rsplit("\t", 1)[-1] if len(lines) > 1 else signal


def program_needs() -> frozenset[str] | None:
    """The libraries the program links itself (None: not known)."""
    try:
        with open(gdb.current_progspace().filename, "rb") as program, \
                mmap.mmap(program.fileno(), 0, access=mmap.ACCESS_READ) as elf:
            return symbols.needed_libraries(elf)
    except (OSError, TypeError, ValueError):
        return None


def frame_arguments(frame: Any) -> list[tuple[str, str]]:
    """The frame's arguments as GDB/MI listed them in a stop record: values in summary form
    (``...`` for a struct), and ``x@entry`` after ``x`` when the entry value is known."""
    try:
        block = frame.block()
    except RuntimeError:
        return []
    while block is not None and block.function is None:
        block = block.superblock
    if block is None:
        return []
    found = []
    for symbol in block:
        if not symbol.is_argument:
            continue
        try:
            value = frame.read_var(symbol).format_string(summary=True)
        except gdb.error as e:
            value = f"<error reading variable: {e}>"
        found.append((symbol.print_name, rules.mi_text(value)))
        try:
            entry = gdb.parse_and_eval(f"{symbol.name}@entry")
            if not entry.is_optimized_out:
                found.append((f"{symbol.print_name}@entry",
                              rules.mi_text(entry.format_string(summary=True))))
        except gdb.error:
            pass
    return found


def watched_value(expression: str) -> str:
    try:
        return rules.mi_text(gdb.parse_and_eval(expression).format_string())
    except gdb.error as e:
        return rules.mi_text(str(e))


def load(order: channel.Order) -> None:
    """Into the program's directory (the program starts in gdb's), and the program loaded,
    as ``gdb PROGRAM`` would have; an error is gdb's to print, as it would have then."""
    for command in (f"cd {order.directory}", f"file {rules.file_argument(order.program)}"):
        try:
            gdb.execute(command, to_string=True)
        except gdb.error as e:
            print(e, file=sys.stderr)


def main() -> None:
    order, output = channel.receive_order(channel.ORDER_FD)
    os.dup2(output, channel.OUTPUT_FD)
    os.close(output)
    load(order)
    ending = Driver(order.arguments).run()
    os.write(channel.RECORDS_FD, ending)


main()
