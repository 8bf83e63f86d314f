"""vm-server: the host daemon PBot's vm-client talks to.

One line per client, answered with plain text. Requests run the vm-exec pipeline in-process.
Each machine serves one request at a time (its serial line carries one conversation); the
others wait their turn. A time-out or a program the guest had to kill reverts the machine,
and the machine is held until the revert is done and its heartbeat is back, so no request
is sent into a reverting guest. Each machine's state has one home (``machine_state``), which
also keeps the status file vm-watchdog reads. What is held of the clients' lines is bounded
(``intake``).

On SIGTERM or SIGINT it stops accepting, gives the requests in flight ``STOP_GRACE`` seconds,
answers the rest with ``STOPPING`` and reverts a machine whose request it cut short.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from typing import Any

import click

from pbotvm import logs
from pbotvm import settings as settings_table
from pbotvm.config import SERVER, ConfigError, HostSettings, Machine
from pbotvm.host import intake, metrics
from pbotvm.host.intake import Allowance, Intake, Refused
from pbotvm.host.machines import transport
from pbotvm.host.machines.backends import guest_for, with_recorded_guests
from pbotvm.host.machines.guest import GuestError, timed_revert
from pbotvm.host.machines.heartbeat import BEAT_INTERVAL, HeartbeatMonitor
from pbotvm.host.machines.machine_state import MachineState
from pbotvm.host.machines.pool import Pool
from pbotvm.host.request.vmexec import OFFLINE, Answer, Execution, PrefetchedStdin, Prepared, Reply
from pbotvm.host.workers import Workers
from pbotvm.protocol import requester

log = logging.getLogger("pbotvm.server")

CLIENT_TIMEOUT = 5.0
RESETTING = "Virtual machine is resetting, try again soon."
BUSY = "Virtual machine is busy, try again soon."
STOPPING = "vm-server is stopping, try again soon."
STOP_GRACE = 5.0
# A guest not heard since vm-server started may just not have beaten yet: a request waits
# this long after the start for its first beat (ours answers the monitor's first poll at once).
FIRST_BEAT_WAIT = BEAT_INTERVAL + 1.0


# A guest silent for this many heartbeat margins is not coming back by itself (QEMU gone,
# kernel hung, guest-server unable to start): a request that finds it so reverts it, at most
# once per HEAL_INTERVAL so that a machine a revert cannot fix is not reverted in a loop.
HEAL_AFTER_MARGINS = 2
HEAL_INTERVAL = 60.0
HEALER = "(healing)"  # who holds a pool's guest while vm-server heals it


class VmServer:
    def __init__(self, settings: HostSettings) -> None:
        self.settings = settings
        # Keyed by port (or socket), not by machine name: two names (or an override) for one
        # guest must share its serial line and its heartbeat connection (QEMU serves one
        # client).
        self._hearts: dict[str, HeartbeatMonitor] = {}  # by where the line is
        self._machines: dict[str, MachineState] = {}  # by where the serial line is
        self._pools: dict[tuple[str, ...], Pool] = {}
        self._reverts: set[asyncio.Task[None]] = set()
        self.intake = Intake()
        self._clients: set[asyncio.Task[object]] = set()
        self._stopping = asyncio.Event()  # the grace is over: answer STOPPING
        command = settings.stdin_command
        self._stdin = PrefetchedStdin(command) if command else None
        self.workers = Workers(preload=("pbotvm.host.request.vmexec",))
        # The endpoint's thread reads the guests' last statuses (list() copies them at once).
        self.metrics = metrics.Metrics(
            lambda: [state.snapshot for state in list(self._machines.values())])

    def pool(self, machine: Machine) -> Pool:
        """The pool of the guests that serve ``machine`` (one guest: a pool of one)."""
        members = machine.members()
        key = tuple(transport.serial_name(guest) for guest in members)
        if key not in self._pools:
            self._pools[key] = Pool(machine.name, [self.machine_state(guest, machine.name)
                                                   for guest in members],
                                    self.settings.machines.weights)
        return self._pools[key]

    def machine_state(self, machine: Machine, pool: str = "") -> MachineState:
        key = transport.serial_name(machine)
        if key not in self._machines:
            heart_key = transport.heart_name(machine)
            if heart_key not in self._hearts:
                self._hearts[heart_key] = HeartbeatMonitor(machine, self.settings.stale_after)
                self._hearts[heart_key].start()
            self._machines[key] = MachineState(machine, self._hearts[heart_key],
                                               self.settings.state_dir, pool)
        return self._machines[key]

    async def answer(self, line: str) -> str:
        start = time.monotonic()
        execution = Execution(self.settings, default_stdin=self._stdin, work=self.workers,
                              requester=requester(line))
        prepared = await execution.prepare(line)
        if isinstance(prepared, Answer):
            self.metrics.request_done(metrics.OTHER, metrics.host_outcome(prepared),
                                      time.monotonic() - start)
            return prepared.text
        reply = await self._run(execution, prepared)
        text = (await execution.deliver(await execution.finish(prepared, reply))).text
        self.metrics.request_done(prepared.language.spec.name, _outcome(reply),
                                  time.monotonic() - start)
        return text

    async def _run(self, execution: Execution, prepared: Prepared) -> Reply | Answer:
        """The request on a guest of its machine, in its turn; the guest is free again on
        return (or held by the revert this request started). A guest that turns out to be
        unreachable, or dies mid-request, hands the request to another of its pool."""
        pool = self.pool(prepared.machine)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.timeout
        while True:
            waiting = time.monotonic()
            state = await pool.take(execution.requester, max(deadline - loop.time(), 0.0),
                                    prepared.request.persist_key)
            self.metrics.waited(pool.name, time.monotonic() - waiting)
            if state is None:
                log.info("%s: no guest free within %.0f s", prepared.machine.name,
                         self.settings.timeout)
                return Answer(RESETTING if all(g.reverting for g in pool.guests) else BUSY, 3)
            if not await state.claim(deadline):
                pool.release(state)
                log.info("%s: vm-watchdog holds it", state.machine.name)
                return Answer(RESETTING, 3)
            reply = await self._on(pool, state, execution, prepared, self.settings.timeout)
            if not (isinstance(reply, Answer) and (reply.unsent or reply.lost)
                    and len(pool.guests) > 1 and not prepared.request.persist_key):
                return reply
            # Nothing came of it (a dead guest's half answer is no answer): another guest
            # runs the request; this one is out of rotation until it beats again.
            state.heart.lost()
            pool.came_to_nothing(execution.requester)
            log.info("%s: %s; the request goes to another guest of %s", state.machine.name,
                     "unreachable" if reply.unsent else "lost mid-request", pool.name)

    async def _on(self, pool: Pool, state: MachineState, execution: Execution,
                  prepared: Prepared, timeout: float) -> Reply | Answer:
        """The request sent to the guest ``state``, which it holds; given back (or to the
        revert it starts) on return."""
        name = state.machine.name
        revert_reason = None
        try:
            if not state.heart.alive() and not await self._first_beat(state.heart):
                log.info("%s: no heartbeat; not sending", name)
                revert_reason = self._heal_reason(state)
                # It fell silent since the pool gave it (its host's connection lost): another
                # guest that beats takes the request.
                others = any(guest.heart.alive() for guest in pool.guests if guest is not state)
                return Answer(RESETTING if state.heart.ever_beat() else OFFLINE, 3,
                              unsent=others)
            try:
                reply = await asyncio.wait_for(
                    execution.send(prepared, state.machine, state.transport,
                                   require_id=state.ids_echoed),
                    timeout)
            except TimeoutError:
                state.timed_out()
                revert_reason = "time-out"
                return execution.timed_out()
            except asyncio.CancelledError:
                revert_reason = "vm-server stopped mid-request"
                raise
            if execution.id_echoed and not state.ids_echoed:
                state.ids_echoed = True
                log.info("%s: the guest echoes request ids: a result without one is refused "
                         "from now on", name)
            if isinstance(reply, Reply) and reply.killed:
                revert_reason = f"guest killed the program: {reply.killed}"
            elif isinstance(reply, Answer) and reply.lost:
                revert_reason = "connection to the guest lost mid-request"
            elif self.settings.revert_after_every_run and not isinstance(reply, Answer):
                revert_reason = "after every run"
            return reply
        finally:
            if revert_reason and not self.settings.norevert:
                self._start_revert(pool, state, revert_reason)
            else:
                state.release()
                pool.release(state)

    def _start_revert(self, pool: Pool, state: MachineState, reason: str) -> None:
        """Revert the guest in the background; the pool's other guests go on serving."""
        state.begin_revert(reason)
        task = asyncio.create_task(self._revert(pool, state, reason))
        self._reverts.add(task)
        task.add_done_callback(self._reverts.discard)

    async def _first_beat(self, heart: HeartbeatMonitor) -> bool:
        """Whether a guest never heard yet beats within FIRST_BEAT_WAIT of the start of its
        heartbeat monitor (vm-server's start, for the default machine)."""
        wait = min(FIRST_BEAT_WAIT - heart.listening_for(), self.settings.timeout)
        return not heart.ever_beat() and wait > 0 and await heart.beat_after(0.0, wait)

    def _heal_reason(self, state: MachineState) -> str | None:
        if not state.heart.ever_beat():
            # Never up since vm-server started: nothing says a revert is what it needs, and a
            # machine nobody runs (a name typed in a channel) must not cost anyone a revert.
            return None
        silent = state.heart.silent_for()
        now = time.monotonic()
        if (silent < HEAL_AFTER_MARGINS * self.settings.stale_after
                or (state.healed_at is not None and now - state.healed_at < HEAL_INTERVAL)):
            return None
        state.healed_at = now
        return f"no heartbeat for {silent:.0f} s"

    async def _revert(self, pool: Pool, state: MachineState, reason: str) -> None:
        """Revert while holding the guest; release it once it beats again."""
        name = state.machine.name
        start = time.monotonic()
        self.metrics.revert_started(pool.name, reason)
        try:
            log.info("%s: reverting (%s)", name, reason)
            guest = guest_for(self.settings, state.machine)
            how, seconds = await timed_revert(guest)
            done = time.monotonic()
            log.info("%s: reverted to snapshot %s in %.2f s (%s: %s)", name,
                     self.settings.snapshot, seconds, guest.describe(), how)
            if await state.heart.beat_after(done, self.settings.stale_after):
                log.info("%s: guest back %.2f s after the revert", name, time.monotonic() - done)
            else:
                log.warning("%s: no heartbeat within %.0f s of the revert", name,
                            self.settings.stale_after)
        except GuestError as e:
            log.error("%s: revert failed: %s", name, e)
        finally:
            state.release()
            pool.release(state)
            self.metrics.revert_ended(pool.name, time.monotonic() - start)

    async def _heal(self) -> None:
        """A pool's guest that stays silent is healed (reverted) by this loop, not by the next
        request, which the others serve: a request never goes to it while one beats."""
        while True:
            await asyncio.sleep(BEAT_INTERVAL)
            for pool in list(self._pools.values()):
                if len(pool.guests) < 2:
                    continue  # its one guest is healed by the request that finds it silent
                for state in pool.guests:
                    if (not pool.taken(state) and not state.heart.alive()
                            and (reason := self._heal_reason(state)) is not None
                            and pool.seize(state, HEALER)):
                        self._start_revert(pool, state, reason)

    async def _reply(self, reader: asyncio.StreamReader, allowance: Allowance,
                     peer: str) -> str | None:
        """The answer to the client's line; None when it sent none in time."""
        try:
            raw = await asyncio.wait_for(intake.read_line(reader, allowance), CLIENT_TIMEOUT)
        except TimeoutError:
            log.info("%s: client I/O timed out", peer)
            return None
        except Refused as e:
            log.info("%s: refused, %d client(s) holding %d bytes: %s", peer,
                     self.intake.clients, self.intake.held, e)
            self.metrics.request_done(metrics.OTHER, metrics.intake_outcome(e), None)
            return str(e)
        # Invalid UTF-8 is kept as surrogates for parse_client_line to judge.
        line = raw.decode("utf-8", "surrogateescape").rstrip("\r")
        if not line.strip():
            return None
        log.info("%s: read [%s]", peer, _short(line))
        return await self.answer(line)

    async def _reply_unless_stopped(self, reader: asyncio.StreamReader, allowance: Allowance,
                                    peer: str) -> str | None:
        """The answer, or STOPPING if vm-server's grace for stopping runs out first."""
        work = asyncio.create_task(self._reply(reader, allowance, peer))
        stopping = asyncio.create_task(self._stopping.wait())
        try:
            await asyncio.wait({work, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            if not work.done():
                work.cancel()
                await asyncio.gather(work, return_exceptions=True)
        if work.cancelled():
            self.metrics.request_done(metrics.OTHER, "stopping", None)
            return STOPPING
        return work.result()

    async def handle_client(self, reader: asyncio.StreamReader,
                            writer: asyncio.StreamWriter) -> None:
        peer = "{}:{}".format(*writer.get_extra_info("peername")[:2])
        start = time.monotonic()
        task = asyncio.current_task()
        assert task is not None
        self._clients.add(task)
        try:
            try:
                with self.intake.client() as allowance:
                    reply = await self._reply_unless_stopped(reader, allowance, peer)
                    if reply is not None:
                        await self._send(writer, reply, peer, start)
            except Refused as e:
                log.info("%s: refused: %s", peer, e)
                self.metrics.request_done(metrics.OTHER, metrics.intake_outcome(e), None)
                await self._send(writer, str(e), peer, start)
        except ConnectionError as e:
            log.info("%s: client went away: %s", peer, e)
        finally:
            self._clients.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    @staticmethod
    async def _send(writer: asyncio.StreamWriter, reply: str, peer: str, start: float) -> None:
        reply = reply.rstrip()
        log.info("%s: answered in %.0f ms: [%s]", peer, (time.monotonic() - start) * 1000,
                 _short(reply))
        writer.write(reply.encode("utf-8", "surrogatepass") + b"\n")
        await writer.drain()

    async def serve(self, stop: asyncio.Event) -> None:
        endpoint = None
        if self.settings.metrics is not None:
            try:
                endpoint = self.metrics.serve(*self.settings.metrics)
            except OSError as e:
                log.error("cannot serve metrics on %s:%d: %s", *self.settings.metrics,
                          e.strerror or e)
                sys.exit(1)
        await self.workers.start()
        server = await asyncio.start_server(
            self.handle_client, self.settings.addr, self.settings.port,
            limit=intake.READ_CHUNK, reuse_address=True)
        log.info("vm-server listening on %s:%d", self.settings.addr, self.settings.port)
        default = self.pool(self.settings.machines.resolve())
        if len(default.guests) > 1:
            log.info("%s: a pool of %d guests: %s", default.name, len(default.guests),
                     ", ".join(state.machine.name for state in default.guests))
        healer = asyncio.create_task(self._heal())
        await stop.wait()
        healer.cancel()
        await asyncio.gather(healer, return_exceptions=True)
        server.close()
        if self._clients:
            log.info("stopping: %d client(s) in flight get %.0f s to finish",
                     len(self._clients), STOP_GRACE)
            await asyncio.wait(set(self._clients), timeout=STOP_GRACE)
        self._stopping.set()
        if self._clients:
            log.info("stopping: answering %d client(s) that are not done", len(self._clients))
            await asyncio.wait(set(self._clients), timeout=CLIENT_TIMEOUT)
        await server.wait_closed()
        if self._reverts:
            # Before the heartbeats stop: a revert waits for the guest's beat.
            log.info("waiting for %d revert(s) to finish", len(self._reverts))
            await asyncio.gather(*self._reverts, return_exceptions=True)
        for heart in self._hearts.values():
            await heart.stop()
        if self._stdin is not None:
            await self._stdin.close()
        await self.workers.close()
        for state in self._machines.values():
            state.close()
        if endpoint is not None:
            endpoint.shutdown()
            endpoint.server_close()


def _outcome(reply: Reply | Answer) -> str:
    """The metrics' outcome of a request past its preparation: the guest's, or the answer
    vm-server gave in its place."""
    if isinstance(reply, Reply):
        return metrics.guest_outcome(reply)
    return {BUSY: "busy", RESETTING: "resetting"}.get(reply.text, "offline")


def _short(text: str, limit: int = 200) -> str:
    # Printable whatever the text holds (a byte that was not UTF-8 is a surrogate here).
    text = text.encode("utf-8", "backslashreplace").decode().replace("\n", "\\n")
    return text if len(text) <= limit else f"{text[:limit]}... [{len(text) - limit} more]"


async def _main(settings: HostSettings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await VmServer(settings).serve(stop)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@settings_table.options(SERVER)
def main(**given: Any) -> None:
    """Serve vm-client requests on PBOTVM_ADDR:PBOTVM_SERVER (default 127.0.0.1:9000).

    Runs each request through the vm-exec pipeline with the PBOTVM_TIMEOUT limit, watches the
    guest heartbeat, and reverts the machine (libvirt snapshot PBOTVM_SNAPSHOT of
    PBOTVM_DOMAIN, or PBOTVM_REVERT_COMMAND) after a time-out or a killed program, unless
    PBOTVM_NOREVERT is set. Unless told where the guest's lines are, it uses those of the
    guest `pbotvm vm up` started in its state directory, if any.
    """
    logs.setup("vm-server")
    try:
        settings, found = with_recorded_guests(HostSettings.from_env(given=given), os.environ)
    except ConfigError as e:
        raise click.ClickException(str(e)) from None
    if found is not None:
        log.info("%s", found)
    if settings.addr not in ("127.0.0.1", "::1", "localhost"):
        log.warning("listening on %s: anyone who can reach it can run code and force reverts",
                    settings.addr)
    try:
        asyncio.run(_main(settings))
    except OSError as e:
        log.error("cannot listen on %s:%d: %s", settings.addr, settings.port, e.strerror or e)
        sys.exit(1)
