"""Whether the unprivileged user can read and run what its requests need, checked once at
start-up.

gdb runs as the user and loads its driver, and the package code the driver imports, from
wherever this package lies. Where the user cannot read them (a venv under /root, a checkout
in a ``mktemp -d`` directory), gdb only warned, and every C answer that needed it came out
``Success (no output).``. guest-server refuses to start instead, with one line naming the
first thing in the way. The check runs as the user (a child process that becomes it as the
sandbox makes a program), so whatever the kernel decides counts, not only the modes.
"""

from __future__ import annotations

import ast
import grp
import os
import pwd
import shutil
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from pbotvm import langspec
from pbotvm.guest import running
from pbotvm.guest.cfamily import gdb_ahead, pch

PACKAGE = "pbotvm"
# What the user does with each: the access(2) mode it needs.
READ, RUN, ENTER = "read", "run", "enter"
_MODES = {READ: os.R_OK, RUN: os.X_OK, ENTER: os.X_OK}


@dataclass(frozen=True)
class Need:
    path: Path
    what: str  # for the operator
    verb: str  # READ, RUN or ENTER

    @property
    def mode(self) -> int:
        return _MODES[self.verb]


def imported_modules(source: str, package: str = PACKAGE) -> set[str]:
    """The modules of ``package`` that ``source`` imports, with the packages they are in.
    ``from p.a import b`` names ``p.a.b`` too, which may be a name in ``p.a`` rather than a
    module: the caller keeps the names that have a file."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == package:
                found.update(".".join(parts[:end]) for end in range(1, len(parts) + 1))
    return found


def module_file(root: Path, name: str) -> Path | None:
    """The file Python reads for module ``name`` below ``root`` (a package's __init__.py)."""
    path = root.joinpath(*name.split("."))
    for candidate in (path / "__init__.py", path.with_name(f"{path.name}.py")):
        if candidate.is_file():
            return candidate
    return None


def driver_imports(driver: Path) -> list[Path]:
    """The files of the package code gdb's driver imports, directly or not."""
    root = driver.resolve().parents[3]  # what the driver puts first on gdb's sys.path
    seen: set[str] = set()
    files, sources = [], [driver] if driver.is_file() else []  # (a missing one is said)
    while sources:
        for name in sorted(imported_modules(sources.pop().read_text()) - seen):
            seen.add(name)
            if (path := module_file(root, name)) is not None:
                files.append(path)
                sources.append(path)
    return sorted(files)


def needs(which: Callable[[str], str | None]) -> list[Need]:
    """What requests need of this guest: for the C family with gdb (when one of its compilers
    is installed) gdb's driver and the code it imports, prelude.h and prelude.hpp, the
    precompiled preludes and gdb; and each installed language's program. ``which`` finds a
    program on the programs' PATH."""
    programs: dict[str, Need] = {}
    gdb_family = False
    for spec in langspec.LANGUAGES:
        if (path := which(spec.toolchain.program)) is not None:
            programs.setdefault(path, Need(Path(path), f"{spec.toolchain.program}, for "
                                                       f"{spec.display}", RUN))
            gdb_family |= spec.gdb
    wanted = []
    if gdb_family:
        wanted += [Need(gdb_ahead.DRIVER, "gdb's driver", READ),
                   *(Need(path, "code gdb's driver imports", READ)
                     for path in driver_imports(gdb_ahead.DRIVER)),
                   *(Need(header, "a header of the C family", READ)
                     for header in pch.OUR_HEADERS),
                   Need(pch.PCH_DIR, "the precompiled preludes", ENTER)]
        if (gdb := which("gdb")) is not None:
            wanted.append(Need(Path(gdb), "gdb", RUN))
    return wanted + list(programs.values())


def obstacle(path: Path, mode: int, allowed: Callable[[Path, int], bool]) -> Path | None:
    """Where the user is stopped on its way to use ``path`` with ``mode``: the first directory
    above it that it may not enter, else the path itself; None when it is not stopped."""
    if allowed(path, mode):
        return None
    return next((step for step in reversed(path.parents) if not allowed(step, os.X_OK)), path)


def refusal(user: str, need: Need, blocked: Path, described: str) -> str:
    """The one line guest-server refuses to start with."""
    where = "it" if blocked == need.path else str(blocked)
    return (f"user {user} cannot {need.verb} {need.path} ({need.what}): {where} is "
            f"{described}")


def first_refusal(user: str, wanted: Iterable[Need], allowed: Callable[[Path, int], bool],
                  describe: Callable[[Path], str]) -> str | None:
    for need in wanted:
        if (blocked := obstacle(need.path, need.mode, allowed)) is not None:
            return refusal(user, need, blocked, describe(blocked))
    return None


def problem(user: str) -> str | None:
    """One line saying what of its requests' needs ``user`` cannot have here, or None (also
    when there is no such user: every request says so). Forks; as root."""
    try:
        account = pwd.getpwnam(user)
    except KeyError:
        return None
    wanted = needs(lambda program: shutil.which(program, path=running.PATH))
    for need in wanted:
        if not need.path.exists():
            return f"{need.path} ({need.what}) does not exist"
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(read_end)
            os.setgroups([account.pw_gid])  # as the sandbox: its own group only
            os.setgid(account.pw_gid)
            os.setuid(account.pw_uid)
            said = first_refusal(user, wanted, os.access, _describe) or ""
            os.write(write_end, said.encode("utf-8", "surrogateescape"))
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as answer:
        said = answer.read().decode("utf-8", "replace")
    code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    if code:
        return f"cannot check what user {user} can read (the check ended with status {code})"
    return said or None


def _describe(path: Path) -> str:
    """``drwx------ root:root``."""
    try:
        info = path.stat()
    except OSError:  # a link whose target is out of the user's reach
        info = path.lstat()
    try:
        owner = pwd.getpwuid(info.st_uid).pw_name
    except KeyError:
        owner = str(info.st_uid)
    try:
        group = grp.getgrgid(info.st_gid).gr_name
    except KeyError:
        group = str(info.st_gid)
    return f"{stat.filemode(info.st_mode)} {owner}:{group}"
