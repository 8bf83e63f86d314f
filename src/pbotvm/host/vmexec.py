"""The vm-exec pipeline: client line -> guest request -> guest reply -> user answer.

vm-server runs it in-process; the ``vm-exec`` command runs the same code for the shell.
``prepare`` does everything that needs no guest (and may answer early: usage, -info,
unknown language); ``send`` talks to the guest. A time-out between the two is the caller's
business; ``timed_out_answer`` then gives what had arrived.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass, replace
from typing import Any

from pbotvm.config import ConfigError, HostSettings, Machine, UnknownMachine
from pbotvm.host import options
from pbotvm.host.cfamily.functions import UnmatchedBrackets
from pbotvm.host.edit.session import EditSession, shown_code
from pbotvm.host.languages import Language, Shown, Source, find_language, unsupported_message
from pbotvm.host.output import finish
from pbotvm.host.paste import paste_bytes
from pbotvm.host.paste_service import upload
from pbotvm.host.transport import GuestUnreachable, TransportChoice, exchange
from pbotvm.protocol import ProtocolError, Request, ResultDecoder, parse_client_line

log = logging.getLogger("pbotvm.vmexec")

DEFAULT_LANG = "c2x"
OVERRIDES = {"vm-serial": "serial", "vm-cid": "cid", "vm-vport": "vport"}
OFFLINE = "Virtual machine is offline."
STDIN_COMMAND_TIMEOUT = 2.0


@dataclass
class Answer:
    """What vm-exec prints, its exit status, whether the guest killed the program, and
    whether the connection to the guest broke mid-request (what it ran may still run)."""

    text: str
    status: int = 0
    killed: str | None = None
    lost: bool = False


@dataclass
class Prepared:
    machine: Machine
    language: Language
    request: Request
    source: Source
    shown: Shown  # shown.paste: answer with a paste's URL (-paste, or the paste edit command)
    history: EditSession
    stdin: str | None = None  # -stdin as written, for the paste
    requester: str = ""  # the nick, else the channel: whose turn it is (vm-server's turns)


class Execution:
    """One request's trip through the pipeline."""

    def __init__(self, settings: HostSettings, *, allow_overrides: bool = False,
                 default_stdin: PrefetchedStdin | None = None) -> None:
        self.settings = settings
        self.allow_overrides = allow_overrides or settings.allow_overrides
        self.default_stdin = default_stdin
        self._decoder: ResultDecoder | None = None

    async def prepare(self, line: str) -> Prepared | Answer:
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
            machine = self._machine(exec_options)
        except (UnknownMachine, ConfigError) as e:
            return Answer(str(e), 1)

        history = EditSession.open(self.settings.state_dir,
                                   context.get("channel", "vm").strip(), lang)
        edit = history.edit(code)
        if edit.reply is not None:
            return Answer(edit.reply)
        parsed = options.parse_standard_options(edit.code, language.take_custom_options)
        if parsed.info:
            return Answer(language.spec.info_line())
        if edit.only_show:
            return Answer(shown_code(parsed.code))
        try:
            # A thread: the C family runs astyle, which must not stall vm-server's loop.
            source = await asyncio.to_thread(language.preprocess, parsed.code, parsed.custom)
        except UnmatchedBrackets as e:
            return Answer(str(e))
        paste = parsed.paste or edit.paste
        stdin = await self._stdin(parsed.stdin)
        request = make_request(language, lang, parsed, source, stdin=stdin, paste=paste,
                               arguments=context.get("arguments", ""),
                               factoid=context.get("factoid") or None,
                               persist_key=context.get("persist-key") or None)
        return Prepared(machine, language, request, source,
                        Shown(paste, context.get("channel", "")), history, stdin=parsed.stdin,
                        requester=context.get("nick") or context.get("channel", ""))

    def _machine(self, exec_options: dict[str, str]) -> Machine:
        machine = self.settings.machines.resolve(exec_options.get("vm"))
        changes: dict[str, Any] = {}
        for option, field in OVERRIDES.items():
            if option not in exec_options:
                continue
            if not self.allow_overrides:
                raise ConfigError(f"-{option} is disabled here (the operator can allow it with "
                                  "PBOTVM_ALLOW_OVERRIDES=1).")
            value = exec_options[option]
            if not value.isdigit() or int(value) >= 2**32:
                raise ConfigError(f"-{option}={value} is not a number.")
            changes[field] = int(value)
        return replace(machine, **changes) if changes else machine

    async def _stdin(self, raw: str | None) -> str | None:
        if raw:
            return options.unescape_stdin(raw)
        command = self.settings.stdin_command
        if not command:
            return ""
        if self.default_stdin is not None:
            return await self.default_stdin.take()
        return await stdin_from_command(command)

    async def send(self, prepared: Prepared, transport: TransportChoice | None = None, *,
                   require_id: bool = False) -> Answer:
        """The guest's answer; ``transport``: the machine's choice, when vm-server keeps one;
        ``require_id``: the guest is known to echo ids, so a result without one is refused."""
        name = prepared.machine.name
        self._decoder = decoder = ResultDecoder(prepared.request.id, require_id=require_id)
        try:
            channel = await exchange(prepared.machine, prepared.request, decoder, transport)
        except GuestUnreachable as e:
            log.warning("%s: %s", name, e)
            return Answer(OFFLINE, 3)
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
        return Answer(self.reply(prepared, decoder.text), killed=decoder.killed)

    @property
    def id_echoed(self) -> bool:
        """The guest's answer carried the request's id (it is one of ours, and always will)."""
        return self._decoder is not None and self._decoder.id_echoed

    def reply(self, prepared: Prepared, text: str) -> str:
        """The user's answer to the guest's text: finished, then the channel's "Same output."
        rule (which also remembers it)."""
        return prepared.history.answer(
            finish(text, prepared.language, prepared.source, prepared.shown,
                   self.settings.output_limit),
            factoid=bool(prepared.request.factoid), paste=prepared.shown.paste)

    async def deliver(self, prepared: Prepared, answer: Answer) -> Answer:
        """The guest's answer as the user gets it: when pasting, the URL of the paste (or one
        error line). Called after the machine is free: the upload (up to 10 s) is neither
        the guest's time nor its turn."""
        if not prepared.shown.paste or answer.status:
            return answer
        request = prepared.request
        data = paste_bytes(request.code, request.cmdline, answer.text,
                           prepared.language.spec.markers, arguments=request.arguments,
                           stdin=prepared.stdin)
        return replace(answer, text=await upload(data, self.settings.paste_url))

    def timed_out_answer(self, prepared: Prepared) -> str:
        """``[Timed-out]`` and whatever had arrived before the time-out."""
        partial = self._decoder.text if self._decoder else ""
        return finish(partial, prepared.language, prepared.source, prepared.shown,
                      self.settings.output_limit, timed_out=True)


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
        answer = await asyncio.wait_for(execution.send(prepared), settings.timeout)
    except TimeoutError:
        return Answer(execution.timed_out_answer(prepared), 124)
    return await execution.deliver(prepared, answer)
