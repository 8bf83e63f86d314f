"""Run one request the way the original's guest language modules did, and turn what
happened into the result text (the original's output rules, §8.4/§8.5 of the spec).

The language table says how (``langspec.RunMode``): most languages run their command line
as the program; the compiled ones compile with it, then run the program. A language the
table does not know runs its command line, as the original's ``_default`` module did.
"""

from __future__ import annotations

import pwd
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pbotvm
from pbotvm import langspec
from pbotvm.config import DEFAULT_OUTPUT_LIMIT
from pbotvm.guest import java, sandbox, shell_shim, workdir
from pbotvm.guest.cfamily import gdb_ahead, pch
from pbotvm.guest.cfamily import run as c_family
from pbotvm.guest.limits import BoxLimits, Limits, compile_limits
from pbotvm.guest.plain_command import plain_argv
from pbotvm.guest.sandbox import CPU_LIMIT, MEMORY_LIMIT, WALL_LIMIT, Capture, Outcome
from pbotvm.protocol import TIMED_OUT, Request, Result
from pbotvm.text import cap_output, decode_text, truncation_marker
from pbotvm.tokenizer import split_line

PATH = f"{shell_shim.SHIM_DIR}:/usr/local/bin:/usr/bin:/bin:/usr/local/games:/usr/games"
CPU_KILLED = "[Killed: CPU time limit exceeded]"
MEMORY_KILLED = "[Killed: memory limit exceeded]"
KILLED_TEXTS = {CPU_LIMIT: CPU_KILLED, MEMORY_LIMIT: MEMORY_KILLED}
# Room kept below the output limit for the truncation line and the status suffix, so the
# whole text fits the limit and the host has no reason to cut it again.
_RESERVE = 128


@dataclass(frozen=True)
class RunSettings:
    user: str = "vm"
    output_limit: int = DEFAULT_OUTPUT_LIMIT
    limits: Limits = field(default_factory=Limits)
    box_limits: BoxLimits = field(default_factory=BoxLimits)
    persist_root: Path = workdir.PERSIST_ROOT
    # What the box has here, found at guest-server's start (``box.available``,
    # ``cgroup.prepare``): its namespaces, and where request cgroups are made.
    box: bool = True
    cgroups: Path | None = None

    @property
    def roots_directories(self) -> tuple[Path, ...]:
        """Where root itself writes during a request: the box keeps them writable."""
        return (self.persist_root, pch.PCH_DIR)

    @property
    def own_code(self) -> tuple[Path, ...]:
        """Where guest-server's package lies, which gdb's driver imports: the box keeps it
        readable wherever it is (a checkout under /tmp, say)."""
        return (Path(pbotvm.__file__).resolve().parent.parent,)


def make_roots_places(settings: RunSettings) -> None:
    """Make what root writes for a request (sh's shim, the persist-keys' and the precompiled
    preludes' directories): in the request's box all else is read-only, so they must exist
    before it, and a guest fresh from boot has an empty /run."""
    shell_shim.ensure()
    pch.PCH_DIR.mkdir(mode=0o755, parents=True, exist_ok=True)
    settings.persist_root.mkdir(mode=0o700, parents=True, exist_ok=True)


def quote(arg: str) -> str:
    return "'" + arg.replace("'", "'\"'\"'") + "'"


def split_arguments(arguments: str) -> list[str]:
    """The program's arguments, split by the original guest's rules."""
    return split_line(arguments, strip_quotes=True, preserve_escapes=False)


def command_line(cmdline: str, args: list[str]) -> str:
    """The command plus each argument single-quoted."""
    return " ".join([cmdline, *map(quote, args)])


def stdin_bytes(text: str | None) -> bytes:
    # The original fed input through a bash here-string, which appends a newline.
    return utf8(text + "\n") if text else b""


def utf8(text: str) -> bytes:
    # JSON may carry lone surrogates, which UTF-8 cannot encode.
    return text.encode("utf-8", "replace")


def user_environment(user: pwd.struct_passwd) -> dict[str, str]:
    # A fresh environment (no DEBUGINFOD_URLS: gdb must not try the network). The original's
    # set-up exported ASAN_OPTIONS=detect_leaks=0 for root's shell, which its programs inherited:
    # LeakSanitizer's report would otherwise bury a snippet's output.
    return {"USER": user.pw_name, "LOGNAME": user.pw_name, "HOME": user.pw_dir,
            "PATH": PATH, "LANG": "C.UTF-8", "ASAN_OPTIONS": "detect_leaks=0"}


def output_text(stderr: Capture, stdout: Capture, limit: int) -> str:
    """stderr, a space if there was any, then stdout (not interleaved, as the original),
    cut to the limit with a line saying how much was left out."""
    separator = b" " if stderr.size else b""
    raw = stderr.data + separator + stdout.data
    total = stderr.size + len(separator) + stdout.size
    kept, _ = cap_output(raw, max(limit - _RESERVE, 0))
    text = decode_text(kept)
    cut = total - len(kept)
    if cut:
        text = text.rstrip("\n") + "\n" + truncation_marker(cut)
    return text


def result_text(output: str, status: int, killed: str | None, factoid: bool) -> str:
    """The original's rules; a limit that stopped the program is said where the original
    showed it (the time-out as leading stderr, the CPU kill where ``[Exit 137]`` was; the
    memory kill, which the original did not have, as the CPU kill)."""
    if killed == WALL_LIMIT:
        text = f"{TIMED_OUT} {output}" if output else TIMED_OUT
    elif killed in KILLED_TEXTS:
        said = KILLED_TEXTS[killed]
        text = f"{output} {said}" if output else said
    elif not output and factoid:
        text = ""
    elif not output:
        text = "Success (no output)." if status == 0 else f"Exit {status}."
    elif status:
        text = f"{output} [Exit {status}]"
    else:
        text = output
    return text if text.endswith("\n") else text + "\n"


def to_result(request: Request, outcome: Outcome, limit: int) -> Result:
    output = output_text(outcome.stderr, outcome.stdout, limit)
    text = result_text(output, outcome.status, outcome.killed, bool(request.factoid))
    return Result(text=text, id=request.id, exit=outcome.status, killed=outcome.killed)


def missing_toolchain(spec: langspec.LangSpec) -> str | None:
    """One line naming what to install, when the language's program is not on the PATH."""
    program = spec.toolchain.program
    if shutil.which(program, path=PATH) is not None:
        return None
    where = (f"the Debian package {spec.toolchain.package} has it; setup-guest --profile full "
             "installs it" if spec.toolchain.package else "Debian does not package it")
    return f"[{spec.display} is not installed in this guest: no {program!r} ({where})]\n"


def with_speedups(cmdline: str, speedups: str) -> str:
    """The command line with the language's speed-ups after its first word."""
    if not speedups:
        return cmdline
    program, _, rest = cmdline.partition(" ")
    return " ".join(word for word in (program, speedups, rest) if word)


def run_request(request: Request, settings: RunSettings,
                gdb: gdb_ahead.Gdb | None = None) -> Result:
    """Blocking; runs as root inside the request's supervisor process. ``gdb``, started ahead
    (``c_family.start_gdb``), is for a C request; any other goes without it, at once."""
    spec = langspec.find(request.lang)
    run_mode = spec.run if spec is not None else langspec.RunMode.SCRIPT
    if gdb is not None and run_mode is not langspec.RunMode.CFAMILY:
        gdb_ahead.discard(gdb)
        gdb = None
    try:
        user = pwd.getpwnam(settings.user)
    except KeyError:
        return Result(text=f"[Fatal error: no user {settings.user!r} in the guest]\n",
                      id=request.id)
    if user.pw_uid == 0:
        return Result(text=f"[Fatal error: user {settings.user!r} is root]\n", id=request.id)
    bad = workdir.bad_name([request.sourcefile], request.persist_key)
    if bad is not None:
        return Result(text=f"[Fatal error: bad file name {bad!r}]\n", id=request.id)
    if spec is not None and (missing := missing_toolchain(spec)) is not None:
        return Result(text=missing, id=request.id, exit=127)
    sourcefile, cmdline = request.sourcefile, request.cmdline
    own = spec is not None and pch.default_command_line(spec, cmdline)
    if run_mode is langspec.RunMode.JAVA:
        sourcefile, cmdline = java.source_file(request.code, sourcefile, cmdline)
    files = {sourcefile: utf8(request.code + "\n")}
    if run_mode is langspec.RunMode.CFAMILY:
        files.update(c_family.work_files(request))
    with workdir.work_directory(user, files, request.persist_key,
                                settings.persist_root) as cwd:
        if run_mode is langspec.RunMode.CFAMILY:
            return c_family.run_request(request, user, cwd, user_environment(user), settings,
                                        gdb)

        def run(cmdline: str, args: list[str], stdin: bytes,
                limits: Limits = settings.limits) -> Outcome:
            return sandbox.run(utf8(command_line(cmdline, args)),
                               argv=plain_argv(cmdline, args), user=user, cwd=cwd,
                               env=user_environment(user), stdin=stdin,
                               limits=limits, keep=settings.output_limit)

        args = split_arguments(request.arguments)
        if run_mode is langspec.RunMode.SCRIPT:
            outcome = run(cmdline, args, stdin_bytes(request.input))
            return to_result(request, outcome, settings.output_limit)
        compiler = with_speedups(cmdline, spec.compile_speedups) if spec and own else cmdline
        compiled = run(compiler, [], b"", compile_limits(settings.limits))
        diagnostics = output_text(compiled.stderr, compiled.stdout, settings.output_limit)
        if compiled.killed:  # said as a program's, so that a channel knows why
            return Result(text=result_text(diagnostics, 0, compiled.killed, bool(request.factoid)),
                          id=request.id, exit=compiled.status, killed=compiled.killed)
        if compiled.status:
            # As the original: a failed compile shows its diagnostics, without [Exit N].
            text = diagnostics or f"Exit {compiled.status}."
            return Result(text=text.rstrip("\n") + "\n", id=request.id, exit=compiled.status)
        program = (java.run_command(request.code) if run_mode is langspec.RunMode.JAVA
                   else f"./{request.execfile}")
        outcome = run(program, args, stdin_bytes(request.input))
    result = to_result(request, outcome, settings.output_limit)
    if diagnostics.strip():
        result.text = f"[{diagnostics.strip()}]\n{result.text}"
    return result
