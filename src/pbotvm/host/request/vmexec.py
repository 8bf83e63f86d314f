"""The vm-exec pipeline: client line -> guest request -> guest reply -> user answer.

vm-server runs it with its worker processes; the ``vm-exec`` command runs the same code in
its own process, for the shell. ``prepare`` does everything that needs no guest (and may
answer early: usage, -info, unknown language, an edit's reply); ``send`` talks to the guest;
``finish`` makes the user's answer of the guest's text; ``deliver`` pastes it when asked.
``prepare`` and ``finish`` are CPU work sized by what the user typed or printed: they run as
jobs (``workers``), within a budget, out of the event loop. A time-out of ``send`` is the
caller's business; ``timed_out`` then gives what had arrived.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol, TypeVar

from pbotvm.config import ConfigError, HostSettings, Machine, UnknownMachine
from pbotvm.host import workers
from pbotvm.host.machines.transport import GuestUnreachable, TransportChoice, exchange
from pbotvm.host.request import options
from pbotvm.host.request.edit.session import EditSession, shown_code
from pbotvm.host.request.languages import (
    Language,
    Shown,
    Source,
    find_language,
    unsupported_message,
)
from pbotvm.host.request.output import cap, finish
from pbotvm.host.request.paste import paste_bytes
from pbotvm.host.request.paste_service import upload
from pbotvm.host.request.statements.functions import UnmatchedBrackets
from pbotvm.protocol import ProtocolError, Request, ResultDecoder, parse_client_line

T = TypeVar("T")

log = logging.getLogger("pbotvm.vmexec")

DEFAULT_LANG = "c2x"
OVERRIDES = {"vm-serial": "serial", "vm-cid": "cid", "vm-vport": "vport"}
OFFLINE = "Virtual machine is offline."
STDIN_COMMAND_TIMEOUT = 2.0
# Wall-clock seconds for a request's preparation and for the finishing of its answer. Real
# ones take milliseconds (astyle included); the regexes of an edit stop after one second.
PREPARE_BUDGET = 5.0
FINISH_BUDGET = 5.0
PREPARE_TOO_SLOW = "Preparing the code took too long; nothing ran."
FINISH_TOO_SLOW = "Finishing the output took too long."
PREPARE_FAILED = "[Fatal error: vm-server could not prepare the request; its log says why]"
FINISH_FAILED = "[Fatal error: vm-server could not finish the answer; its log says why]"


@dataclass
class Answer:
    """What vm-exec prints, its exit status, whether the connection to the guest broke
    mid-request (what it ran may still run), and whether the guest could not even be reached
    (nothing was sent: another guest may take the request)."""

    text: str
    status: int = 0
    lost: bool = False
    unsent: bool = False


@dataclass(frozen=True)
class Reply:
    """The guest's text for a request, before ``finish`` makes it the user's answer; whether
    the guest killed the program, whether the host's time limit cut the text short, and the
    exit status the guest gave (for the metrics)."""

    text: str
    killed: str | None = None
    timed_out: bool = False
    exit: int | None = None


@dataclass(frozen=True)
class Prepared:
    """A request ready for the guest, and what its answer is finished with."""

    machine: Machine
    language: Language
    request: Request
    source: Source
    shown: Shown  # shown.paste: answer with a paste's URL (-paste, or the paste edit command)
    channel: str  # whose history and last answer ("Same output.")
    lang: str
    history: bool  # the history store could be used (when not, it was said once)
    stdin: str | None = None  # -stdin as written, for the paste
    default_stdin: bool = False  # the request's input is still to come from the command


@dataclass(frozen=True)
class Finished:
    """The user's answer, and the paste to upload instead when pasting."""

    text: str
    status: int = 0
    paste: bytes | None = None


class Work(Protocol):
    """Where ``prepare`` and ``finish`` run: ``workers.Workers`` or ``workers.Inline``."""

    async def run(self, requester: str, budget: float, function: Callable[..., T],
                  *args: Any) -> T: ...


def prepare(line: str, settings: HostSettings, allow_overrides: bool) -> Prepared | Answer:
    """Everything before the guest, for one client line (a job: blocking, CPU-bound)."""
    try:
        context = parse_client_line(line)
    except ProtocolError as e:
        return Answer(str(e), 2)
    code, exec_options = options.strip_exec_options(context.get("code", ""))
    lang = (exec_options.get("lang") or context.get("lang") or DEFAULT_LANG).strip().lower()
    language = find_language(lang)
    if language is None:
        return Answer(unsupported_message(lang), 1)
    if not code.strip():
        return Answer(context.get("usage") or options.USAGE, 1)
    try:
        machine = _machine(settings, exec_options, allow_overrides)
    except (UnknownMachine, ConfigError) as e:
        return Answer(str(e), 1)

    channel = context.get("channel", "vm").strip()
    history = EditSession.open(settings.state_dir, channel, lang)
    try:
        edit = history.edit(code)
    finally:
        history.close()
    usable = history.store is not None
    if edit.reply is not None:
        return Answer(cap(edit.reply, settings.output_limit))
    parsed = options.parse_standard_options(edit.code, language.take_custom_options)
    if parsed.info:
        return Answer(language.spec.info_line())
    if edit.only_show:
        return Answer(cap(shown_code(parsed.code), settings.output_limit))
    try:
        source = language.preprocess(parsed.code, parsed.custom)
    except UnmatchedBrackets as e:
        return Answer(str(e))
    paste = parsed.paste or edit.paste
    default_stdin = not parsed.stdin and bool(settings.stdin_command)
    stdin = options.unescape_stdin(parsed.stdin) if parsed.stdin else ""
    request = make_request(language, lang, parsed, source, stdin=stdin, paste=paste,
                           arguments=context.get("arguments", ""),
                           factoid=context.get("factoid") or None,
                           persist_key=context.get("persist-key") or None)
    return Prepared(machine, language, request, source,
                    Shown(paste, context.get("channel", "")), channel, lang, usable,
                    stdin=parsed.stdin, default_stdin=default_stdin)


def _machine(settings: HostSettings, exec_options: dict[str, str],
             allow_overrides: bool) -> Machine:
    machine = settings.machines.resolve(exec_options.get("vm"))
    changes: dict[str, Any] = {}
    for option, field in OVERRIDES.items():
        if option not in exec_options:
            continue
        if not allow_overrides:
            raise ConfigError(f"-{option} is disabled here (the operator can allow it with "
                              "PBOTVM_ALLOW_OVERRIDES=1).")
        value = exec_options[option]
        if not value.isdigit() or int(value) >= 2**32:
            raise ConfigError(f"-{option}={value} is not a number.")
        changes[field] = int(value)
    return replace(machine, **changes) if changes else machine


def finish_reply(prepared: Prepared, reply: Reply, settings: HostSettings) -> Finished:
    """The user's answer to the guest's text (a job: blocking, CPU-bound): finished, then
    the channel's "Same output." rule (which also remembers it); the paste when pasting."""
    text = finish(reply.text, prepared.language, prepared.source, prepared.shown,
                  settings.output_limit, timed_out=reply.timed_out)
    if reply.timed_out:
        return Finished(text, 124)
    if prepared.history:
        history = EditSession.open(settings.state_dir, prepared.channel, prepared.lang)
        try:
            text = history.answer(text, factoid=bool(prepared.request.factoid),
                                  paste=prepared.shown.paste)
        finally:
            history.close()
    if not prepared.shown.paste:
        return Finished(text)
    request = prepared.request
    return Finished(text, paste=paste_bytes(
        request.code, request.cmdline, text, prepared.language.spec.markers,
        arguments=request.arguments, stdin=prepared.stdin))


class Execution:
    """One request's trip through the pipeline; ``work`` runs its jobs for ``requester``."""

    def __init__(self, settings: HostSettings, *, allow_overrides: bool = False,
                 default_stdin: PrefetchedStdin | None = None, work: Work | None = None,
                 requester: str = "") -> None:
        self.settings = settings
        self.allow_overrides = allow_overrides or settings.allow_overrides
        self.default_stdin = default_stdin
        self.work: Work = work or workers.Inline()
        self.requester = requester
        self._decoder: ResultDecoder | None = None

    async def prepare(self, line: str) -> Prepared | Answer:
        try:
            prepared = await self.work.run(self.requester, PREPARE_BUDGET, prepare, line,
                                           self.settings, self.allow_overrides)
        except workers.OverBudget:
            return Answer(PREPARE_TOO_SLOW, 1)
        except workers.Failed:
            return Answer(PREPARE_FAILED, 1)
        if isinstance(prepared, Prepared) and prepared.default_stdin:
            request = replace(prepared.request, input=await self._default_stdin())
            prepared = replace(prepared, request=request, default_stdin=False)
        return prepared

    async def _default_stdin(self) -> str | None:
        command = self.settings.stdin_command
        assert command
        if self.default_stdin is not None:
            return await self.default_stdin.take()
        return await stdin_from_command(command)

    async def send(self, prepared: Prepared, guest: Machine | None = None,
                   transport: TransportChoice | None = None, *,
                   require_id: bool = False) -> Reply | Answer:
        """The guest's reply (or the answer that there was none). ``guest``: which of the
        machine's guests (its lines), when vm-server placed the request; ``transport``: that
        guest's choice, when vm-server keeps one; ``require_id``: the guest is known to echo
        ids, so a result without one is refused."""
        guest = guest or prepared.machine.members()[0]  # vm-exec in a shell: the first
        name = guest.name
        self._decoder = decoder = ResultDecoder(prepared.request.id, require_id=require_id)
        try:
            channel = await exchange(guest, prepared.request, decoder, transport)
        except GuestUnreachable as e:
            log.warning("%s: %s", name, e)
            return Answer(OFFLINE, 3, unsent=True)
        except OSError as e:
            # The guest's end went away mid-request (QEMU killed or restarted). Caught here:
            # above us a ConnectionError would pass for the *client* going away, unanswered.
            log.warning("%s: connection to the guest lost: %s", name, e)
            return Answer(OFFLINE, 3, lost=True)
        if decoder.dropped:
            log.warning("%s: dropped %d result(s) not for request %s", name, decoder.dropped,
                        prepared.request.id)
        if not decoder.done:
            # Closed before result:end (the guest or its VM died): whatever came is no answer.
            log.warning("%s: connection to the guest closed mid-request", name)
            return Answer(OFFLINE, 3, lost=True)
        log.debug("request %s answered over %s", prepared.request.id, channel)
        return Reply(decoder.text, killed=decoder.killed, exit=decoder.exit)

    @property
    def id_echoed(self) -> bool:
        """The guest's answer carried the request's id (it is one of ours, and always will)."""
        return self._decoder is not None and self._decoder.id_echoed

    def timed_out(self) -> Reply:
        """What had arrived before the time-out, to be answered as ``[Timed-out] ...``."""
        return Reply(self._decoder.text if self._decoder else "", timed_out=True)

    async def finish(self, prepared: Prepared, reply: Reply | Answer) -> Finished:
        """The user's answer to the guest's reply (an answer already made goes as it is)."""
        if isinstance(reply, Answer):
            return Finished(reply.text, reply.status)
        try:
            return await self.work.run(self.requester, FINISH_BUDGET, finish_reply, prepared,
                                       reply, self.settings)
        except workers.OverBudget:
            return Finished(FINISH_TOO_SLOW, 1)
        except workers.Failed:
            return Finished(FINISH_FAILED, 1)

    async def deliver(self, finished: Finished) -> Answer:
        """The answer as the user gets it: when pasting, the URL of the paste (or one error
        line). Called after the machine is free: the upload (up to 10 s) is neither the
        guest's time nor its turn."""
        if finished.paste is None:
            return Answer(finished.text, finished.status)
        return Answer(await upload(finished.paste, self.settings.paste_url), finished.status)


def make_request(language: Language, lang: str, parsed: options.ParsedOptions, source: Source,
                 *, stdin: str | None, paste: bool | None = None, arguments: str = "",
                 factoid: str | None = None, persist_key: str | None = None) -> Request:
    """The guest request for parsed code and its ``source``; ``arguments`` are the request's
    own, which ``-args`` replaces; ``paste`` is ``-paste`` unless said otherwise."""
    return Request(
        lang=lang,
        sourcefile=language.spec.sourcefile,
        execfile=language.spec.execfile,
        cmdline=language.spec.command_line(parsed.cmdline_options,
                                           parsed.paste if paste is None else paste),
        code=source.code,
        input=stdin,
        arguments=parsed.arguments if parsed.arguments is not None else arguments,
        date=int(time.time()),
        factoid=factoid,
        persist_key=persist_key,
        id=uuid.uuid4().hex[:16],
    )


async def stdin_from_command(command: list[str]) -> str | None:
    """The default stdin: the command's output (``fortune``) as one line; None if it fails."""
    try:
        proc = await asyncio.create_subprocess_exec(
            *command, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL)
    except OSError as e:
        log.warning("default stdin command %s failed: %s", command[0], e)
        return None
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), STDIN_COMMAND_TIMEOUT)
    except TimeoutError:
        return None
    finally:
        if proc.returncode is None:  # timed out, or cancelled as vm-server stops
            proc.kill()
            await proc.wait()
    return options.unescape_stdin(options.fortune_to_stdin(out.decode("utf-8", "replace")))


class PrefetchedStdin:
    """vm-server's default stdin: the command runs for the next request as soon as a request
    takes its line, so no request waits for it (fortune takes ~5 ms) and each still gets a
    line of its own."""

    def __init__(self, command: list[str]) -> None:
        self.command = command
        self._next: asyncio.Task[str | None] | None = None

    async def take(self) -> str | None:
        line = self._next or asyncio.create_task(stdin_from_command(self.command))
        self._next = asyncio.create_task(stdin_from_command(self.command))
        return await line

    async def close(self) -> None:
        """Stop the command running for the next request, if any."""
        if self._next is not None:
            self._next.cancel()
            await asyncio.gather(self._next, return_exceptions=True)
            self._next = None


async def run(line: str, settings: HostSettings, *, allow_overrides: bool = False) -> Answer:
    """Prepare and send one request with the ``PBOTVM_TIMEOUT`` limit (no revert: CLI use)."""
    execution = Execution(settings, allow_overrides=allow_overrides)
    prepared = await execution.prepare(line)
    if isinstance(prepared, Answer):
        return prepared
    try:
        reply = await asyncio.wait_for(execution.send(prepared), settings.timeout)
    except TimeoutError:
        reply = execution.timed_out()
    return await execution.deliver(await execution.finish(prepared, reply))
