"""Run one request the way the original's guest language modules did, and turn what
happened into the result text (the original's output rules: run_command's
``Success (no output).``/``[Exit N]`` and _default.pm's stderr, a space, then stdout).

The language table says how (``langspec.RunMode``), and each mode is a class registered in
``modes.MODES``: most languages run their command line as the program (``script``); the
compiled ones compile with it, then run the program (``compiled``, ``java``); the C family
has its own (``cfamily.run``). A language the table does not know runs its command line, as
the original's ``_default`` module did.
"""

from __future__ import annotations

import pwd
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pbotvm
from pbotvm import langspec
from pbotvm.guest import compiled, java, modes, script, shell_shim, workdir
from pbotvm.guest.cfamily import gdb_ahead, pch
from pbotvm.guest.cfamily import run as c_family
from pbotvm.guest.limits import BoxLimits, Limits
from pbotvm.guest.running import PATH, utf8
from pbotvm.protocol import Request, Result
from pbotvm.text import DEFAULT_OUTPUT_LIMIT


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


# The modules whose run modes register themselves when imported (``modes.registers``).
REGISTERING = (script, compiled, java, c_family)


def missing_toolchain(spec: langspec.LangSpec) -> str | None:
    """One line naming what to install, when the language's program is not on the PATH."""
    program = spec.toolchain.program
    if shutil.which(program, path=PATH) is not None:
        return None
    where = (f"the Debian package {spec.toolchain.package} has it; setup-guest --profile full "
             "installs it" if spec.toolchain.package else "Debian does not package it")
    return f"[{spec.display} is not installed in this guest: no {program!r} ({where})]\n"


def run_request(request: Request, settings: RunSettings,
                gdb: gdb_ahead.Gdb | None = None) -> Result:
    """Blocking; runs as root inside the request's supervisor process. ``gdb``, started ahead
    (``c_family.start_gdb``), is for a C request; any other goes without it, at once."""
    spec = langspec.find(request.lang)
    mode = modes.MODES[spec.run if spec is not None else langspec.RunMode.SCRIPT]
    if gdb is not None and not mode.takes_gdb:
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
    own = spec is not None and pch.default_command_line(spec, request.cmdline)
    sourcefile, cmdline = mode.source(request)
    files = {sourcefile: utf8(request.code + "\n"), **mode.work_files(request)}
    with workdir.work_directory(user, files, request.persist_key,
                                settings.persist_root) as cwd:
        return mode.run(modes.Job(request, spec, settings, user, cwd, cmdline, own, gdb))
