"""Host-side channels to a guest: AF_VSOCK when a CID is set and the guest answers there,
else its serial device, served by QEMU on a Unix socket or (the original's layout) a TCP port;
for a guest on another host, the domain's serial port as a libvirt stream (``libvirt_lines``).

vsock is used natively (no socat child). Whether it works is found out in the background, once
per guest boot (TransportChoice): no request waits for a vsock connect that cannot succeed,
and until the answer is in, requests take the serial line. The original tried vsock on every
request, and never fell back to serial when socat existed but could not connect. On a host
without vhost-vsock no guest can have a vsock device, and vsock is not tried at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable

from pbotvm.config import Machine
from pbotvm.host.machines import libvirt_lines
from pbotvm.protocol import Request, ResultDecoder, encode_request
from pbotvm.provision.layout import HEART_INDEX, SERIAL_INDEX

log = logging.getLogger("pbotvm.transport")

# QEMU's vsock device for a guest opens this; a host without it runs no guest with vsock.
VHOST_VSOCK = "/dev/vhost-vsock"
VSOCK_CONNECT_TIMEOUT = 1.0  # a one-off connection (vm-exec on the command line) waits this
VSOCK_PROBE_TIMEOUT = 3.0  # in the background, where nobody waits for it
SERIAL_CONNECT_TIMEOUT = 3.0


# A result line carries JSON-escaped output (up to 6 bytes per byte for control characters).
_READ_LIMIT = 64 * 1024 * 1024

Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class GuestUnreachable(ConnectionError):
    """Neither vsock nor the serial device accepted a connection."""


def serial_name(machine: Machine) -> str:
    """Where the machine's serial line is served, as logs and messages name it."""
    if machine.uri:
        return f"serial of {machine.domain} on {machine.uri}"
    return (f"serial {machine.serial_socket}" if machine.serial_socket
            else f"serial {machine.addr}:{machine.serial}")


def heart_name(machine: Machine) -> str:
    """Where the machine's heartbeat line is served, as logs name it."""
    if machine.uri:
        return f"{machine.domain} on {machine.uri}"
    return machine.heart_socket or f"{machine.addr}:{machine.heart}"


def vsock_guests_here() -> bool:
    """Whether a guest on this host can have a vsock device at all."""
    return os.path.exists(VHOST_VSOCK)


def _why(error: BaseException, timeout: float) -> str:
    """A connect failure in words (asyncio's time-out has none of its own)."""
    if isinstance(error, OSError) and error.errno:
        return os.strerror(error.errno)  # asyncio's own text repeats the address
    if isinstance(error, TimeoutError):
        return f"no answer within {timeout:g} s"
    return str(error) or type(error).__name__


async def _open_vsock(cid: int, port: int, timeout: float) -> Streams:
    sock = socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        await asyncio.wait_for(loop.sock_connect(sock, (cid, port)), timeout)
        return await asyncio.open_connection(sock=sock, limit=_READ_LIMIT)
    except BaseException:
        sock.close()
        raise


class TransportChoice:
    """Whether one machine's requests go over vsock, decided once per guest boot by a probe
    in the background; kept by vm-server per machine.

    ``boot`` changes whenever the guest (re)started (the heartbeat's arrivals); a revert calls
    :meth:`start_over`. Per (CID, port), as an override may aim one machine elsewhere.
    """

    def __init__(self, name: str, boot: Callable[[], int] = lambda: 0) -> None:
        self.name = name
        self._boot = boot
        self._seen_boot: int | None = None
        self._vsock: dict[tuple[int, int], bool] = {}
        self._probes: dict[tuple[int, int], asyncio.Task[bool]] = {}
        self._said_no_vhost = False

    def start_over(self) -> None:
        """The guest was reverted or restarted: what was found out may no longer hold."""
        for task in self._probes.values():
            task.cancel()
        self._probes.clear()
        self._vsock.clear()

    def use_vsock(self, machine: Machine) -> bool | None:
        """Whether vsock works for this boot; None while a probe (started now if none runs)
        finds out."""
        if not vsock_guests_here():
            # Not worth a probe after every revert: no boot of the guest changes it.
            if not self._said_no_vhost:
                log.info("%s: requests go over %s (this host has no %s: no guest here has a "
                         "vsock device)", self.name, serial_name(machine), VHOST_VSOCK)
                self._said_no_vhost = True
            return False
        boot = self._boot()
        if boot != self._seen_boot:
            self.start_over()
            self._seen_boot = boot
        key = (machine.cid, machine.vport)
        if key in self._vsock:
            return self._vsock[key]
        if key not in self._probes:
            self._probes[key] = asyncio.create_task(self._probe(machine, key),
                                                    name=f"vsock-probe-{self.name}")
        return None

    async def probed(self, machine: Machine) -> bool:
        """The running probe's answer (for when the serial line cannot be reached)."""
        key = (machine.cid, machine.vport)
        task = self._probes.get(key)
        if task is None:
            return self._vsock.get(key, False)
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.cancelled():  # started over meanwhile
                return False
            raise

    def failed(self, machine: Machine, error: BaseException) -> None:
        """vsock was chosen but a connect failed: the serial line until the guest restarts."""
        self._decide(machine, False, f"vsock {machine.cid}:{machine.vport} failed "
                                     f"({_why(error, VSOCK_CONNECT_TIMEOUT)})")

    async def _probe(self, machine: Machine, key: tuple[int, int]) -> bool:
        try:
            _, writer = await _open_vsock(*key, VSOCK_PROBE_TIMEOUT)
        except (OSError, TimeoutError) as e:
            self._decide(machine, False, f"vsock {key[0]}:{key[1]}: "
                                         f"{_why(e, VSOCK_PROBE_TIMEOUT)}")
            return False
        writer.close()
        self._decide(machine, True, f"vsock {key[0]}:{key[1]} answers")
        return True

    def _decide(self, machine: Machine, vsock: bool, why: str) -> None:
        self._vsock[(machine.cid, machine.vport)] = vsock
        channel = f"vsock {machine.cid}:{machine.vport}" if vsock else serial_name(machine)
        log.info("%s: requests go over %s until the guest restarts (%s)", self.name, channel,
                 why)


class _QuickAckProtocol(asyncio.StreamReaderProtocol):
    """ACKs every segment at once.

    QEMU's UART sends a byte at a time. Unless the chardev has ``nodelay=on`` (libvirt's TCP
    serial devices cannot ask for it), Nagle holds each byte until the previous one is ACKed,
    and Linux delays ACKs by 40 ms: ~48 ms per reply instead of ~3. The kernel drops the
    quick-ACK mode on its own, hence set again after every read.
    """

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._sock = transport.get_extra_info("socket")

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        with contextlib.suppress(OSError):
            self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)


async def open_serial(addr: str, port: int) -> Streams:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=_READ_LIMIT, loop=loop)
    protocol = _QuickAckProtocol(reader, loop=loop)
    transport, _ = await asyncio.wait_for(
        loop.create_connection(lambda: protocol, addr, port), SERIAL_CONNECT_TIMEOUT)
    # Our requests go out whole, not held back behind an unACKed piece.
    transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return reader, asyncio.StreamWriter(transport, protocol, reader, loop)


async def open_unix(path: str) -> Streams:
    return await asyncio.wait_for(asyncio.open_unix_connection(path, limit=_READ_LIMIT),
                                  SERIAL_CONNECT_TIMEOUT)


async def _open_serial_line(machine: Machine) -> tuple[asyncio.StreamReader,
                                                       asyncio.StreamWriter, str]:
    channel = serial_name(machine)
    try:
        if machine.uri:
            reader, writer = await asyncio.wait_for(libvirt_lines.open_console(
                machine.uri, machine.domain, SERIAL_INDEX, _READ_LIMIT), SERIAL_CONNECT_TIMEOUT)
        elif machine.serial_socket:
            reader, writer = await open_unix(machine.serial_socket)
        else:
            reader, writer = await open_serial(machine.addr, machine.serial)
    except (OSError, TimeoutError) as e:
        raise GuestUnreachable(f"{channel}: {_why(e, SERIAL_CONNECT_TIMEOUT)}") from e
    return reader, writer, channel


async def connect(machine: Machine, choice: TransportChoice | None = None,
                  ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, str]:
    """Open a channel to the machine's guest; returns reader, writer and a description.
    ``choice``: the machine's (none: a one-off connection tries vsock first, briefly, on a
    host where a guest can have it)."""
    if not machine.cid:
        return await _open_serial_line(machine)
    vsock = choice.use_vsock(machine) if choice is not None else vsock_guests_here()
    if vsock:
        try:
            reader, writer = await _open_vsock(machine.cid, machine.vport,
                                               VSOCK_CONNECT_TIMEOUT)
            return reader, writer, f"vsock {machine.cid}:{machine.vport}"
        except (OSError, TimeoutError) as e:
            if choice is not None:
                choice.failed(machine, e)
            else:
                log.info("vsock %d:%d: %s; using %s", machine.cid, machine.vport,
                         _why(e, VSOCK_CONNECT_TIMEOUT), serial_name(machine))
    try:
        return await _open_serial_line(machine)
    except GuestUnreachable:
        # Still finding out, and the serial line is not there: a guest with vsock only.
        if vsock is None and choice is not None and await choice.probed(machine):
            return await connect(machine, choice)
        raise


async def exchange(machine: Machine, request: Request, decoder: ResultDecoder,
                   choice: TransportChoice | None = None) -> str:
    """Send one request and feed the reply into ``decoder`` until ``result:end`` or EOF.

    Returns the channel description (for logs). The caller bounds the time.
    """
    reader, writer, channel = await connect(machine, choice)
    try:
        for piece in encode_request(request, machine.framing):
            writer.write(piece)
        await writer.drain()
        while not decoder.done:
            try:
                line = await reader.readuntil(b"\n")
            except asyncio.IncompleteReadError as e:
                if e.partial:
                    decoder.feed_line(e.partial)
                break
            except asyncio.LimitOverrunError:
                log.warning("reply line longer than %d bytes; reply cut there", _READ_LIMIT)
                break
            decoder.feed_line(line)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    return channel


async def send(machine: Machine, request: Request, timeout: float,
               transport: TransportChoice | None = None) -> str:
    """One request on its own (over vsock, else the serial line); returns the result text. A
    series of requests shares a ``transport`` choice. ConnectionError when the guest's answer
    ends before its end line."""
    decoder = ResultDecoder(request.id)
    await asyncio.wait_for(exchange(machine, request, decoder, transport), timeout)
    if not decoder.done:
        raise ConnectionError(f"no complete answer to the {request.lang} request")
    return decoder.text


async def open_heart(machine: Machine) -> Streams:
    """A connection to the machine's heartbeat line; OSError when there is none."""
    if machine.uri:
        line = await libvirt_lines.open_console(machine.uri, machine.domain, HEART_INDEX,
                                                _READ_LIMIT)
        # The serial line's console kept open from now on: the first request would wait for
        # QEMU to notice it (up to a second) otherwise.
        with contextlib.suppress(OSError):
            _, writer = await libvirt_lines.open_console(machine.uri, machine.domain,
                                                         SERIAL_INDEX, _READ_LIMIT)
            writer.close()
        return line
    if machine.heart_socket:
        return await asyncio.open_unix_connection(machine.heart_socket)
    return await asyncio.open_connection(machine.addr, machine.heart)


async def wait_heartbeat(machine: Machine, timeout: float,
                         alive: Callable[[], bool] = lambda: True) -> None:
    """Return when a heartbeat line arrives; ConnectionError if the VM dies (``alive`` says
    no), TimeoutError after ``timeout``."""
    async with asyncio.timeout(timeout):
        while alive():
            try:
                reader, writer = await open_heart(machine)
            except OSError:
                await asyncio.sleep(0.2)
                continue
            try:
                # Poll so that a QEMU that exits while we wait is noticed.
                while alive():
                    with contextlib.suppress(TimeoutError):
                        if await asyncio.wait_for(reader.readline(), 1.0):
                            return
                        break  # EOF: reconnect
            finally:
                writer.close()
    raise ConnectionError("the VM exited before the guest's first heartbeat")
