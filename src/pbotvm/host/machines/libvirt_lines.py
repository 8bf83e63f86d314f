"""A guest on another host, reached through libvirt: its serial ports are streams of the
connection to that host's daemon (``virDomainOpenConsole`` of a ``pty`` serial), so nothing
is exposed but libvirt's own transport (ssh, TLS), and no agent of ours runs there.

libvirt delivers a stream's data only while an event loop runs for it in the client. One
thread of ours runs that loop, with libvirt-python's asyncio integration (``libvirtaio``), for
every remote connection and stream of the process: libvirt takes one event implementation per
process and libvirtaio is not thread-safe, while vm-server, the CLI and the tests each run a
loop of their own. So every libvirt call of a process that uses it is made in that thread
(:func:`call`), and its blocking ones (a connect over ssh, opening a console) hold up no loop
of ours. The data reaches the caller's loop as asyncio streams: the request and heartbeat code
reads a remote line as it reads a local socket.

A lost connection (libvirt's keepalive notices a dead peer) ends its streams; the next use
connects again, no sooner than the back-off allows, so a host that is down costs one refusal
per back-off, not one per request.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    import libvirt

log = logging.getLogger("pbotvm.libvirt")

T = TypeVar("T")
Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]

# libvirt's keepalive: a probe after 5 s of silence, the connection given up after 3 unanswered.
KEEPALIVE_INTERVAL, KEEPALIVE_COUNT = 5, 3
BACKOFF_FIRST, BACKOFF_MOST = 1.0, 30.0
_READ_SIZE = 64 * 1024
_WATCHED = 1 | 4 | 8  # VIR_STREAM_EVENT_READABLE | _ERROR | _HANGUP


class RemoteError(ConnectionError):
    """The host, the domain or its line could not be reached; the message is one line."""


class _Events:
    """The thread that runs libvirt's event loop and makes every libvirt call."""

    def __init__(self) -> None:
        import libvirt
        import libvirtaio

        self.loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            libvirtaio.virEventRegisterAsyncIOImpl(loop=self.loop)
            ready.set()
            self.loop.run_forever()

        # Errors come back as exceptions and are reported once, by us: not also on stderr.
        libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
        self.thread = threading.Thread(target=run, name="libvirt-events", daemon=True)
        self.thread.start()
        ready.wait()

    def submit(self, fn: Callable[[], T]) -> concurrent.futures.Future[T]:
        done: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            if done.set_running_or_notify_cancel():
                try:
                    done.set_result(fn())
                except BaseException as e:
                    done.set_exception(e)

        self.loop.call_soon_threadsafe(run)
        return done


_events: _Events | None = None
_events_lock = threading.Lock()


def _the_events() -> _Events:
    global _events
    with _events_lock:
        if _events is None:
            _events = _Events()
        return _events


async def call(fn: Callable[[], T]) -> T:
    """``fn()`` run in the libvirt thread."""
    return await asyncio.wrap_future(_the_events().submit(fn))


def run(fn: Callable[[], T]) -> T:
    """``fn()`` run in the libvirt thread, from another thread (which waits for it)."""
    return _the_events().submit(fn).result()


def run_if_started(fn: Callable[[], T]) -> T:
    """``fn()`` in the libvirt thread when this process has one, else here: once it runs,
    every libvirt call of the process must be made there."""
    if _events is None or threading.current_thread() is _events.thread:
        return fn()
    return _events.submit(fn).result()


@dataclass
class Host:
    """One libvirt daemon reached by ``uri``: its connection, opened when needed. Used only
    in the libvirt thread."""

    uri: str
    conn: libvirt.virConnect | None = None
    failures: int = 0
    retry_at: float = 0.0
    aliases: dict[tuple[str, int], str] = field(default_factory=dict)  # (domain, port) -> alias
    consoles: dict[tuple[str, int], _Console] = field(default_factory=dict)  # the same keys

    def connection(self) -> libvirt.virConnect:
        import libvirt

        if self.conn is not None and self.conn.isAlive():
            return self.conn
        self._forget()
        if time.monotonic() < self.retry_at:
            raise RemoteError(f"libvirt {self.uri}: connection lost; trying again in "
                               f"{self.retry_at - time.monotonic():.0f} s")
        try:
            conn = libvirt.open(self.uri)
        except libvirt.libvirtError as e:
            self.failures += 1
            self.retry_at = time.monotonic() + min(BACKOFF_FIRST * 2 ** (self.failures - 1),
                                                   BACKOFF_MOST)
            raise RemoteError(f"libvirt {self.uri}: {one_line(e)}") from None
        conn.setKeepAlive(KEEPALIVE_INTERVAL, KEEPALIVE_COUNT)
        conn.registerCloseCallback(self._closed, None)
        log.info("libvirt %s: connected", self.uri)
        self.conn, self.failures, self.retry_at = conn, 0, 0.0
        return conn

    def _closed(self, _conn: libvirt.virConnect, reason: int, _opaque: object) -> None:
        log.warning("libvirt %s: connection closed (%s)", self.uri, _CLOSE_REASONS.get(
            reason, reason))
        # Not within libvirt's own callback. Only the current connection has this callback
        # (the wrapper libvirt passes is another object than ours).
        asyncio.get_running_loop().call_soon(self._forget)

    def _forget(self) -> None:
        """Let go of the connection, and end its consoles for their users."""
        if self.conn is not None:
            with contextlib.suppress(Exception):
                self.conn.unregisterCloseCallback()
            # A dead connection is not closed: closing waits for a peer that may never
            # answer, and this thread serves every other line.
            with contextlib.suppress(Exception):
                if self.conn.isAlive():
                    self.conn.close()
        self.conn = None
        self.aliases.clear()
        for console in self.consoles.values():
            console.end(ConnectionResetError(f"libvirt {self.uri}: connection lost"))
        self.consoles.clear()

    def alias(self, dom: libvirt.virDomain, port: int) -> str:
        """The device name of the domain's serial on ``port`` (libvirt numbers them in order)."""
        key = (dom.name(), port)
        if key not in self.aliases:
            for serial in ET.fromstring(dom.XMLDesc(0)).iterfind("devices/serial"):
                target, alias = serial.find("target"), serial.find("alias")
                if target is not None and alias is not None:
                    self.aliases[(dom.name(), int(target.get("port", "-1")))] = alias.get(
                        "name", "")
        if not self.aliases.get(key):
            raise RemoteError(f"libvirt {self.uri}, domain {dom.name()}: no serial port "
                               f"{port} (is it running?)")
        return self.aliases[key]


_CLOSE_REASONS = {0: "error", 1: "end of file", 2: "keepalive time-out", 3: "client closed"}
_hosts: dict[str, Host] = {}


def host(uri: str) -> Host:
    """The host ``uri`` names (in the libvirt thread)."""
    return _hosts.setdefault(uri, Host(uri))


def one_line(e: Exception) -> str:
    """libvirt's message on one line."""
    import libvirt

    text = e.get_error_message() if isinstance(e, libvirt.libvirtError) else str(e)
    return " ".join(str(text).split())


def lookup(uri: str, domain: str) -> libvirt.virDomain:
    """The domain on that host (in the libvirt thread); RemoteError, one line, if none."""
    import libvirt

    try:
        return host(uri).connection().lookupByName(domain)
    except libvirt.libvirtError as e:
        raise RemoteError(f"libvirt {uri}, domain {domain}: {one_line(e)}") from None


class _Console:
    """A domain's serial port, open as a console stream for as long as it lasts, in the
    libvirt thread. It stays open between uses: QEMU looks whether a ``pty`` serial has
    someone at its other end only once a second, and drops what the guest writes until it
    has, so a stream opened per request cost up to a second each. What arrives while nobody
    uses the line is dropped, as a socket's serial does between connections."""

    def __init__(self, stream: libvirt.virStream, where: str) -> None:
        self.stream = stream
        self.where = where
        self.user: _Session | None = None
        self.ended = False
        self._pending = bytearray()

    def start(self) -> None:
        self.stream.eventAddCallback(_WATCHED, self._event, None)

    def _event(self, _stream: libvirt.virStream, events: int, _opaque: object) -> None:
        import libvirt

        try:
            if events & libvirt.VIR_STREAM_EVENT_WRITABLE:
                self._flush()
            if events & libvirt.VIR_STREAM_EVENT_READABLE:
                while not self.ended:
                    data = self.stream.recv(_READ_SIZE)
                    if data == -2:  # nothing more now
                        break
                    if not data:
                        self.end(ConnectionResetError(f"{self.where}: the console closed"))
                        return
                    if self.user is not None:
                        self.user.received(data)
            if events & (libvirt.VIR_STREAM_EVENT_ERROR | libvirt.VIR_STREAM_EVENT_HANGUP):
                self.end(ConnectionResetError(f"{self.where}: the console stream broke"))
        except libvirt.libvirtError as e:
            self.end(ConnectionResetError(f"{self.where}: {one_line(e)}"))

    def _flush(self) -> None:
        import libvirt

        while self._pending:
            sent = self.stream.send(bytes(self._pending))
            if sent == -2:
                break
            del self._pending[:sent]
        self.stream.eventUpdateCallback(
            _WATCHED | (libvirt.VIR_STREAM_EVENT_WRITABLE if self._pending else 0))

    def send(self, data: bytes) -> None:
        if self.ended:
            return
        self._pending += data
        try:
            self._flush()
        except Exception as e:
            self.end(ConnectionResetError(f"{self.where}: {one_line(e)}"))

    def end(self, error: Exception) -> None:
        """The stream is gone (or its connection): the user hears it, the next use opens
        another."""
        if self.ended:
            return
        self.ended = True
        with contextlib.suppress(Exception):
            self.stream.eventRemoveCallback()
        with contextlib.suppress(Exception):
            self.stream.abort()
        if self.user is not None:
            self.user.lost(error)
            self.user = None


class _Session(asyncio.Transport):
    """One use of a console, for the caller's loop: what arrives is handed over to the
    protocol there; what is written is sent from the libvirt thread."""

    def __init__(self, console: _Console, protocol: asyncio.Protocol,
                 loop: asyncio.AbstractEventLoop) -> None:
        super().__init__({"peername": console.where})
        self._console = console
        self._protocol = protocol
        self._loop = loop
        self._closing = False
        # What arrived and is yet to be handed over: a guest's UART sends a few bytes at a
        # time, and one hand-over per piece would wake the caller's loop for each.
        self._inbox = bytearray()
        self._inbox_lock = threading.Lock()

    # --- the libvirt thread -----------------------------------------------------------------

    def received(self, data: bytes) -> None:
        with self._inbox_lock:
            waiting = bool(self._inbox)
            self._inbox += data
        if not waiting:
            self._loop.call_soon_threadsafe(self._hand_over)

    def lost(self, error: Exception) -> None:
        self._loop.call_soon_threadsafe(self._protocol.connection_lost, error)

    def _leave(self) -> None:
        if self._console.user is self:
            self._console.user = None
            self._loop.call_soon_threadsafe(self._protocol.connection_lost, None)

    # --- the caller's loop --------------------------------------------------------------------

    def _hand_over(self) -> None:
        with self._inbox_lock:
            data = bytes(self._inbox)
            self._inbox.clear()
        if data:
            self._protocol.data_received(data)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self._closing:
            chunk = bytes(data)
            _the_events().submit(lambda: self._console.send(chunk))

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        if not self._closing:
            self._closing = True
            _the_events().submit(self._leave)

    def abort(self) -> None:
        self.close()

    def get_write_buffer_size(self) -> int:
        return 0

    # A reply is bounded by the reader's limit: never paused.
    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def _open(uri: str, domain: str, port: int, loop: asyncio.AbstractEventLoop,
          protocol: asyncio.Protocol) -> _Session:
    """In the libvirt thread: a use of the domain's serial ``port``, its console stream
    opened if none is."""
    import libvirt

    there = host(uri)
    console = there.consoles.get((domain, port))
    if console is None or console.ended:
        where = f"libvirt {uri} domain {domain} serial port {port}"
        dom = lookup(uri, domain)
        try:
            stream = there.connection().newStream(libvirt.VIR_STREAM_NONBLOCK)
            # FORCE: a session left behind (a vm-server that died) must not lock the line.
            dom.openConsole(there.alias(dom, port), stream, libvirt.VIR_DOMAIN_CONSOLE_FORCE)
        except libvirt.libvirtError as e:
            raise RemoteError(f"{where}: {one_line(e)}") from None
        console = there.consoles[(domain, port)] = _Console(stream, where)
        console.start()
    if console.user is not None:  # one use at a time, as a socket serial's one client
        console.user.lost(ConnectionResetError(f"{console.where}: taken by another use"))
    session = _Session(console, protocol, loop)
    loop.call_soon_threadsafe(protocol.connection_made, session)  # before any data
    console.user = session
    return session


async def open_console(uri: str, domain: str, port: int, limit: int) -> Streams:
    """The domain's serial ``port`` on the host ``uri`` as asyncio streams."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=limit, loop=loop)
    protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
    session = await call(lambda: _open(uri, domain, port, loop, protocol))
    return reader, asyncio.StreamWriter(session, protocol, reader, loop)


def with_domain(uri: str, domain: str, fn: Callable[[libvirt.virDomain], T]) -> T:
    """``fn`` of the domain on that host, in the libvirt thread (from a thread of ours)."""
    import libvirt

    def in_thread() -> T:
        dom = lookup(uri, domain)
        try:
            return fn(dom)
        except libvirt.libvirtError as e:
            raise RemoteError(f"libvirt {uri}, domain {domain}: {one_line(e)}") from None

    return run(in_thread)
