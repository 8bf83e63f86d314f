"""Compile and run one C-family request, as the original guest's _c_base module and guest-gdb
did, with the program run directly when gdb would add nothing (see ``gdb_choice``).

Everything runs as the user, without a shell, under the sandbox's limits:
* the compiler: 60 s of CPU and of wall-clock time (the original's 60 s time-out; it had no
  ulimits there), 64 MiB per file written (an object with a big initialised array is large),
  the request's process limit;
* the program, and gdb with it: the request's limits (the original's ``ulimit -f 2000 -t 8
  -u 200``) and guest-gdb's 8 s of wall-clock time, with one more second of CPU, so that a busy
  loop meets the wall-clock limit first, as it met guest-gdb's alarm, which started before
  the program, and so does gdb itself, which can spend as much CPU as time (walking up 200000
  frames for a report): gdb out of either is guest-gdb's time-out;
* all of them together: the request's box (its memory limit, its tmpfs holding the work
  directory and /tmp; see ``supervisor``).

The program's stdin is ``.input`` and its stdout ``.output`` in the work directory, as under
the original; its stderr comes first in the answer.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import pwd
import shutil
import signal
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from pbotvm import langspec
from pbotvm.guest import running, sandbox
from pbotvm.guest.cfamily import (
    channel,
    command_line,
    elf_symbols,
    gdb_ahead,
    gdb_choice,
    guest_gdb,
    last_statement,
    last_value,
    pch,
)
from pbotvm.guest.cfamily.answer import answer, diagnostics_prefix, gdb_failed, gdb_failure
from pbotvm.guest.cfamily.gdb_choice import AfterDirectRun
from pbotvm.guest.limits import compile_limits
from pbotvm.guest.modes import Job, Mode, Settings, registers
from pbotvm.guest.plain_command import plain_argv
from pbotvm.guest.sandbox import CPU_LIMIT, MEMORY_LIMIT, WALL_LIMIT, Capture
from pbotvm.protocol import Request, Result

if TYPE_CHECKING:
    from collections.abc import Mapping

log = logging.getLogger("pbotvm.guest")

INPUT_FILE = ".input"
OUTPUT_FILE = ".output"
# guest-gdb started gdb with these, so its programs had them too.
PROGRAM_VARIABLES = {"LIBC_FATAL_STDERR": "1", "MALLOC_CHECK_": "1"}
# gdb gives the programs it runs a terminal size. A direct run gets the same, and is exec'd as
# gdb's shell execs them: the program sees the same environment, so the same stack addresses.
TERMINAL_VARIABLES = {"LINES": "24", "COLUMNS": "80"}
SHELL = "/bin/sh"  # what gdb starts programs with when SHELL is not set


def work_files(request: Request) -> dict[str, bytes]:
    """The files the work directory needs besides the source: stdin and stdout."""
    return {INPUT_FILE: running.utf8((request.input or "") + "\n"), OUTPUT_FILE: b""}


@dataclass(frozen=True)
class _Ran:
    text: str  # stderr, a space if there was any, then stdout, as the original combined them
    status: int
    killed: str | None = None


def run_request(request: Request, user: pwd.struct_passwd, cwd: Path, env: Mapping[str, str],
                settings: Settings, gdb: gdb_ahead.Gdb | None = None) -> Result:
    """Blocking; as root, in a work directory made with ``work_files``; ``gdb`` is one started
    ahead (``start_gdb``), which it runs the program under if it needs gdb."""
    output_fd = os.open(cwd / OUTPUT_FILE, os.O_RDWR | os.O_APPEND | os.O_NOFOLLOW)
    try:
        return _Job(request, user, cwd, env, settings, output_fd, gdb).run()
    finally:
        os.close(output_fd)


def start_gdb(settings: Settings) -> gdb_ahead.Gdb | None:
    """What a spare supervisor starts while it waits: gdb, for a C request that needs it
    (``gdb_ahead``); None where none could run (logged if it could and did not start)."""
    try:
        user = pwd.getpwnam(settings.user)
    except KeyError:
        return None
    env = {**running.user_environment(user), **PROGRAM_VARIABLES}
    if user.pw_uid == 0 or shutil.which(gdb_ahead.GDB_ARGV[0], path=env["PATH"]) is None:
        return None
    try:
        return gdb_ahead.start(user, env, settings.limits, idle=True)
    except OSError as e:
        log.warning("cannot start gdb ahead of its request: %s", e)
        return None


@dataclass
class _Job:
    request: Request
    user: pwd.struct_passwd
    cwd: Path
    env: Mapping[str, str]
    settings: Settings
    output_fd: int
    gdb: gdb_ahead.Gdb | None  # started ahead, until used or discarded
    debug_info: bool = True  # whether the program was built with it, for gdb
    # Built to print its last statement's value itself (see ``last_value``).
    value_program: last_value.Program | None = None

    def run(self) -> Result:
        request, code = self.request, self.request.code
        factoid = bool(request.factoid)
        if last_statement.beyond_gdb(code):
            code = last_statement.without_wrappers(code)  # what gdb's failure would lead to
        while True:
            compiled = self.compile(code)
            if compiled.status or compiled.killed or command_line.compile_only(request.cmdline):
                # As the original: the compiler's words alone, never with [Exit N].
                text = (running.result_text(compiled.text, 0, compiled.killed, factoid)
                        if compiled.killed else answer("", compiled.text, 0, factoid))
                return Result(text, request.id, exit=compiled.status, killed=compiled.killed)
            ran = self.execute(code)
            if last_statement.has_wrapper(code) and last_statement.gdb_failed(ran.text):
                code = last_statement.without_wrappers(code)
                continue
            text = answer(diagnostics_prefix(compiled.text), ran.text, ran.status, factoid)
            return Result(text, request.id, exit=ran.status, killed=ran.killed)

    # -- compiling ---------------------------------------------------------------------------

    def compile(self, code: str) -> _Ran:
        """One compile, or two when the code has wrappers or values the program prints
        itself: the first, without them, gives the diagnostics and the status; the second,
        with them, only the program. When the program that prints its values builds without
        a word, it is the only compile: the code without the printer, which differs only
        where the printer stands for a statement, would have said nothing either."""
        # C only (C++ has no _Generic).
        printed = last_value.program(code) if self.request.sourcefile.endswith(".c") else None
        if not last_statement.has_wrapper(code) and printed is None:
            return self.compile_quickly_or_plainly(
                code, evaluated=gdb_choice.needs_gdb(code),
                debug=gdb_choice.likely_under_gdb(code))
        built = self.build_value_program(printed) if printed else None
        if built is not None and not built.text:
            self.value_program = printed
            return built
        # Kept aside while the compile for the diagnostics makes its own program.
        program = self.cwd / self.request.execfile
        aside = program.with_name(f"{program.name}.value")
        if built is not None and not self.renamed(program, aside):
            built = None
        # Its program is never run: it needs no debugging information.
        first = self.compile_quickly_or_plainly(last_statement.unwrapped(code), evaluated=False,
                                                debug=False)
        if first.status == 0 and first.killed is None:
            if built is not None and self.renamed(aside, program):
                self.value_program = printed
            else:
                self.build_for_gdb(code)
        return first

    def build_for_gdb(self, code: str) -> None:
        self.compile_quickly_or_plainly(code, evaluated=True, debug=True)

    def build_value_program(self, program: last_value.Program) -> _Ran | None:
        """The program that prints its values itself, built with the language's own command
        line (``quick_compile``); None when it did not build."""
        return self.quick_compile(program.source, evaluated=False, debug=False,
                                  extra=last_value.OPTIONS)

    @staticmethod
    def renamed(source: Path, target: Path) -> bool:
        """Whether a file the compiler made in the work directory could be renamed (no
        process of the request runs now)."""
        try:
            os.rename(source, target)
        except OSError:
            return False
        return True

    def compile_quickly_or_plainly(self, code: str, *, evaluated: bool, debug: bool) -> _Ran:
        return (self.quick_compile(code, evaluated=evaluated, debug=debug)
                or self.compile_plainly(code))

    def compile_plainly(self, code: str) -> _Ran:
        self.write_source(code)
        self.debug_info = True  # as far as the command line asks for it
        return self.compile_once(command_line.compiler_argv(self.request.cmdline))

    def quick_compile(self, code: str, *, evaluated: bool, debug: bool,
                      extra: tuple[str, ...] = ()) -> _Ran | None:
        """The same program sooner, for the language's own command line: gold links, the
        prelude comes precompiled (``pch``) unless gdb evaluates expressions of the code
        (``evaluated``) that may need its macros, and without ``debug`` the program has no
        debugging information (it is built again with it if gdb runs it after all). None
        unless it succeeded without a word from the linker or about the prelude's lines:
        then the usual compile says what there is to say, in the usual words."""
        argv = command_line.compiler_argv(self.request.cmdline)
        spec = langspec.find(self.request.lang)
        if spec is None or not pch.default_command_line(spec, self.request.cmdline):
            return None
        blanked = pch.split_prelude(code, spec.prelude)
        prelude = (pch.built(argv, self.request.sourcefile, spec.prelude, self.env)
                   if blanked is not None else None)
        if (prelude is not None and blanked is not None
                and not (evaluated and prelude.hides_macros(blanked))):
            code, argv = blanked, prelude.argv(argv, self.request.sourcefile)
        if shutil.which("ld.gold", path=self.env.get("PATH")):
            argv.append(command_line.GOLD_OPTION)
        if not debug:
            # Last, so it overrides the command line's -g options; a precompiled header
            # built with them still serves.
            argv.append(command_line.NO_DEBUG_OPTION)
        argv += extra
        self.write_source(code)
        ran = self.compile_once(argv)
        if (ran.status or ran.killed or command_line.gold_spoke(ran.text)
                or str(pch.PCH_DIR) in ran.text):  # a note on the prelude's lines
            return None
        self.debug_info = debug
        return ran

    def write_source(self, code: str) -> None:
        # Replaced, not rewritten in place: after a run, the name may be anything the
        # program left there (a link, a FIFO); no process of the request is left by now.
        path = self.cwd / self.request.sourcefile
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)  # the user's own, made by the program that ran
        else:
            path.unlink(missing_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(running.utf8(code + "\n"))
            os.fchown(f.fileno(), self.user.pw_uid, self.user.pw_gid)

    def compile_once(self, argv: list[str]) -> _Ran:
        with open(os.devnull, "rb") as devnull:
            ran = sandbox.run_plumbed(argv, user=self.user, cwd=self.cwd, env=self.env,
                                      limits=compile_limits(self.settings.limits),
                                      files={0: devnull.fileno()}, pipes=[(1,), (2,)],
                                      keep=self.settings.output_limit, spare=self.spare())
        stdout, stderr = ran.captures
        return _Ran(self.combined(stderr, stdout), ran.status, ran.killed)

    # -- running -----------------------------------------------------------------------------

    def execute(self, code: str) -> _Ran:
        args = running.split_arguments(self.request.arguments)
        if command_line.uses_address_sanitizer(self.request.cmdline):
            self.discard_gdb()  # never under gdb
            return self.run_plainly(args)
        if self.value_program is not None:
            answered = self.with_value(self.value_program, args)
            self.value_program = None
            if answered is not None:
                return answered
            self.build_for_gdb(code)
        if gdb_choice.needs_gdb(code):
            return self.under_gdb(args)
        return self.directly(code, args)

    def run_plainly(self, args: list[str]) -> _Ran:
        """``./prog args`` as the original ran AddressSanitizer programs (with their stdin,
        which the original forgot)."""
        program = f"./{self.request.execfile}"
        outcome = sandbox.run(running.utf8(running.command_line(program, args)),
                              argv=plain_argv(program, args), user=self.user, cwd=self.cwd,
                              env=self.env, stdin=self.read_input(), limits=self.settings.limits,
                              keep=self.settings.output_limit)
        text = self.combined(outcome.stderr, outcome.stdout)
        if outcome.killed:
            return _Ran(running.result_text(text, 0, outcome.killed, False).rstrip("\n"),
                        outcome.status, outcome.killed)
        return _Ran(text, outcome.status)

    def run_directly(self, args: list[str], pipes: list[tuple[int, ...]]) -> sandbox.Plumbed:
        """The program run as gdb would run it, with its stderr and ``pipes`` collected."""
        os.ftruncate(self.output_fd, 0)
        limits = gdb_ahead.limits(self.settings.limits)
        exec_line = " ".join(["exec", running.quote(self.program()), *map(running.quote, args)])
        # As that shell line would exec it, one process sooner: with the PWD the shell adds.
        env = self.program_environment({**TERMINAL_VARIABLES,
                                         "PWD": os.path.realpath(self.cwd)})
        with self.open_input() as stdin:
            return sandbox.run_plumbed([self.program(), *args], user=self.user, cwd=self.cwd,
                                       env=env, limits=limits,
                                       files={0: stdin.fileno(), 1: self.output_fd},
                                       pipes=[(2,), *pipes], keep=self.settings.output_limit,
                                       or_else=[SHELL, "-c", exec_line], spare=self.spare())

    def with_value(self, program: last_value.Program, args: list[str]) -> _Ran | None:
        """The direct run of ``value_program``, answered as gdb would have answered it; None
        when gdb has to run the request after all (see ``last_value``)."""
        ran = self.run_directly(args, [(last_value.VALUE_FD,)])
        stderr, records = ran.captures
        values = last_value.read_values(records.data)
        output = os.fstat(self.output_fd)
        lines = (None if values is None or any(
            found.device != (os.major(output.st_dev), os.minor(output.st_dev))
            or found.inode != output.st_ino for found in values)
            else last_value.shown(program, values, functools.cache(
                lambda: elf_symbols.read(Path(self.program())))))
        if lines is None:
            return None  # a value declined (NaN), or records not to be trusted
        printed = self.program_output()
        stdout = channel.splice(printed, [(at, guest_gdb.emitted(line)) for at, line in lines])
        if ran.killed == WALL_LIMIT or ran.signal == signal.SIGKILL:  # as ``directly`` has it
            return self.timed_out(stderr, stdout, ran.killed)
        if ran.killed == MEMORY_LIMIT:
            return self.memory_killed(stderr, stdout)
        if ran.signal is not None or ran.status == last_value.HALT_STATUS or not (
                lines or printed):
            return None  # a crash's report, the sanitizer's, or main's locals: gdb's
        return _Ran(self.combined(stderr, self.capture(stdout)), ran.status)

    def directly(self, code: str, args: list[str]) -> _Ran:
        ran = self.run_directly(args, [])
        (stderr,) = ran.captures
        stdout = self.program_output()
        if ran.killed == WALL_LIMIT:
            return self.timed_out(stderr, stdout, ran.killed)
        if ran.killed == MEMORY_LIMIT:
            return self.memory_killed(stderr, stdout)
        verdict = gdb_choice.after_direct_run(ran.signal, bool(stdout))
        if verdict is AfterDirectRun.RERUN:
            if not self.debug_info:
                # The same code and options: the diagnostics were given already.
                self.compile_quickly_or_plainly(code, evaluated=False, debug=True)
            return self.under_gdb(args)
        if verdict is AfterDirectRun.STALL:
            return self.timed_out(stderr, stdout, ran.killed)
        return _Ran(self.combined(stderr, self.capture(stdout)), ran.status)

    def under_gdb(self, args: list[str]) -> _Ran:
        os.ftruncate(self.output_fd, 0)
        order = channel.Order(os.path.realpath(self.cwd), self.program(), args)
        gdb = self.ordered_gdb(order)
        ran = gdb_ahead.finish(gdb, self.settings.limits, self.settings.output_limit)
        gdb_says, stderr, records = ran.captures
        transcript = channel.read_records(records.data)
        stdout = channel.splice(self.program_output(),
                                [(at, guest_gdb.emitted(text)) for at, text in transcript.emits])
        if ran.killed == WALL_LIMIT or transcript.stalled or (
                ran.killed == CPU_LIMIT and not transcript.ended):
            return self.timed_out(stderr, stdout, ran.killed)
        if ran.killed == MEMORY_LIMIT:  # gdb went with the program
            return self.memory_killed(stderr, stdout)
        if not transcript.ended:
            # It did not start, could not load its driver, or died: never a quiet success.
            log.warning("gdb ended before its driver did (status %d): %r", ran.status,
                        gdb_says.data[-2000:])
            failed = gdb_failed(gdb_failure(gdb_says.data, ran.signal, ran.status))
            return _Ran(self.combined(stderr, self.capture(stdout + failed.encode())), 0)
        return _Ran(self.combined(stderr, self.capture(stdout)), transcript.status)

    def timed_out(self, stderr: Capture, stdout: bytes, killed: str | None) -> _Ran:
        """What guest-gdb answered when its alarm went off: the output so far, a line saying
        so, and status 0."""
        return _Ran(self.combined(stderr, self.capture(stdout + guest_gdb.TIME_OUT.encode())), 0,
                    killed)

    def memory_killed(self, stderr: Capture, stdout: bytes) -> _Ran:
        """The output so far and the line saying so (after it, as the CPU kill's), status 0
        as after a time-out: no ``[Exit 137]`` besides."""
        text = self.combined(stderr, self.capture(stdout))
        return _Ran(running.result_text(text, 0, MEMORY_LIMIT, False).rstrip("\n"), 0,
                    MEMORY_LIMIT)

    # -- gdb started ahead -------------------------------------------------------------------

    def ordered_gdb(self, order: channel.Order) -> gdb_ahead.Gdb:
        """gdb with its order: the one started ahead if it is still there, else a new one."""
        ahead, self.gdb = self.gdb, None
        if ahead is not None and gdb_ahead.waiting(ahead):
            try:
                gdb_ahead.give_order(ahead, order, self.output_fd)
                return ahead
            except OSError as e:
                log.warning("gdb started ahead could not take its order: %s", e)
        if ahead is not None:
            gdb_ahead.discard(ahead)
        gdb = gdb_ahead.start(self.user, self.program_environment({}), self.settings.limits,
                              idle=False)
        with contextlib.suppress(OSError):  # it died first: its run says how
            gdb_ahead.give_order(gdb, order, self.output_fd)
        return gdb

    def spare(self) -> int | None:
        """What the sweep after each run is to leave: gdb started ahead."""
        return self.gdb.pid if self.gdb is not None else None

    def discard_gdb(self) -> None:
        if self.gdb is not None:
            gdb_ahead.discard(self.gdb)
            self.gdb = None

    # -- helpers -----------------------------------------------------------------------------

    def program(self) -> str:
        # gdb runs the program by its absolute name (from the real working directory).
        return os.path.join(os.path.realpath(self.cwd), self.request.execfile)

    def program_environment(self, extra: Mapping[str, str]) -> dict[str, str]:
        return {**self.env, **PROGRAM_VARIABLES, **extra}

    def read_input(self) -> bytes:
        with self.open_input() as stdin:
            return stdin.read()

    def open_input(self) -> BinaryIO:
        """``.input``, which the program may have replaced in an earlier run of the request:
        root opens it, so only a regular file of the user's is good enough."""
        fd = os.open(self.cwd / INPUT_FILE, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            fd = os.open(os.devnull, os.O_RDONLY)
        return os.fdopen(fd, "rb")

    def program_output(self) -> bytes:
        size = os.fstat(self.output_fd).st_size
        chunks, done = [], 0
        while done < size:
            chunk = os.pread(self.output_fd, size - done, done)
            if not chunk:
                break
            chunks.append(chunk)
            done += len(chunk)
        return b"".join(chunks)

    def capture(self, data: bytes) -> Capture:
        return Capture(data[: self.settings.output_limit], len(data))

    def combined(self, stderr: Capture, stdout: Capture) -> str:
        return running.output_text(stderr, stdout, self.settings.output_limit)


@registers(langspec.RunMode.CFAMILY)
class CFamily(Mode):
    """The C family's mode: its files (stdin, stdout), and gdb when a spare started it."""

    takes_gdb = True

    def work_files(self, request: Request) -> dict[str, bytes]:
        return work_files(request)

    def run(self, job: Job) -> Result:
        gdb = job.gdb if isinstance(job.gdb, gdb_ahead.Gdb) else None
        return run_request(job.request, job.user, job.cwd, running.user_environment(job.user),
                           job.settings, gdb)
