"""How the guest runs each ``langspec.RunMode``: the table (``MODES``) each mode registers
itself in, and what the runner hands a mode (``Job``).

The modes: ``script`` (the command line is the program), ``compiled`` (it compiles, then
``./execfile`` runs), ``java`` (javac, then the class that has ``main``) and ``cfamily.run``
(the C family: prelude, gdb, the last statement's value). ``runner.run_request`` picks one
by the request's language, makes the work directory and hands the request over.
"""

from __future__ import annotations

import pwd
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

from pbotvm.guest import sandbox
from pbotvm.guest.limits import Limits
from pbotvm.guest.plain_command import plain_argv
from pbotvm.guest.running import command_line, user_environment, utf8
from pbotvm.langspec import LangSpec, RunMode
from pbotvm.protocol import Request, Result


class Settings(Protocol):
    """What a mode reads of guest-server's settings (``runner.RunSettings``)."""

    @property
    def user(self) -> str: ...

    @property
    def output_limit(self) -> int: ...

    @property
    def limits(self) -> Limits: ...


@dataclass(frozen=True)
class Job:
    """One request, in its work directory, as the runner hands it to its mode."""

    request: Request
    spec: LangSpec | None  # None: a language the table does not know (run as a script)
    settings: Settings
    user: pwd.struct_passwd
    cwd: Path
    cmdline: str  # as the mode's ``source`` left it
    own: bool  # the command line is the language's own, with its default options
    # What a spare supervisor started before the request came: gdb (``cfamily.gdb_ahead``),
    # which only a mode that ``takes_gdb`` is given.
    gdb: object | None = None

    def run(self, cmdline: str, args: list[str], stdin: bytes,
            limits: Limits | None = None) -> sandbox.Outcome:
        """Run ``cmdline`` with ``args`` as the user, in the work directory."""
        return sandbox.run(utf8(command_line(cmdline, args)),
                           argv=plain_argv(cmdline, args), user=self.user, cwd=self.cwd,
                           env=user_environment(self.user), stdin=stdin,
                           limits=self.settings.limits if limits is None else limits,
                           keep=self.settings.output_limit)


class Mode:
    """A run mode; each subclass registers itself for its ``RunMode`` (``registers``)."""

    takes_gdb = False  # a gdb started ahead is for this mode's requests (else discarded)

    def source(self, request: Request) -> tuple[str, str]:
        """The source file's name and the command line."""
        return request.sourcefile, request.cmdline

    def work_files(self, request: Request) -> dict[str, bytes]:
        """What the work directory holds besides the source file."""
        return {}

    def run(self, job: Job) -> Result:
        raise NotImplementedError


MODES: dict[RunMode, Mode] = {}

_M = TypeVar("_M", bound=type[Mode])


def registers(run_mode: RunMode) -> Callable[[_M], _M]:
    """A class decorator: the class runs the requests of the languages of ``run_mode``."""

    def register(cls: _M) -> _M:
        if type(MODES.setdefault(run_mode, cls())) is not cls:
            raise ValueError(f"two modes for {run_mode}")
        return cls

    return register
