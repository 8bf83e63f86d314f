"""A stand-in for a VM on the local machine: guest-server on two PTYs, exposed on TCP ports
with QEMU's chardev semantics (the TCP side is the server, one client at a time, guest output
dropped while no client is connected).

It is the default backend until a real guest image exists, and the test stack. A control
socket offers ``revert`` (everything the guest started dies, the PTYs are flushed, a fresh
guest-server starts: what loading a snapshot does to the guest), ``down`` and ``up``; each may
name the serial port of the machine it is meant for, and a PTY VM serving another port refuses.

guest-server runs below a keeper: a forked child of ours, in a session of its own (no program
inherits the operator's terminal), a subreaper (the guest's orphans come to it). When we die,
even by SIGKILL, the keeper hears of it and kills everything the guest started: nothing of a
PTY VM outlives it.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import termios
import time
import tty
from dataclasses import asdict, dataclass
from pathlib import Path

from pbotvm import procs
from pbotvm.config import HostSettings, Machine
from pbotvm.host import state_files
from pbotvm.host.machines.guest import (
    Guest,
    GuestError,
    Say,
    Warm,
    WarmUpFailed,
    process_tree_seconds,
)
from pbotvm.host.machines.transport import wait_heartbeat
from pbotvm.image.build import Image

log = logging.getLogger("pbotvm.ptyvm")


class Pty:
    """A PTY pair; we keep the slave open so the master survives guest restarts."""

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        os.set_blocking(self.master, False)
        self.path = os.ttyname(self.slave)

    def flush(self) -> None:
        termios.tcflush(self.slave, termios.TCIOFLUSH)


class Bridge:
    """One QEMU-style ``socket,server=on,wait=off`` chardev on a PTY master."""

    def __init__(self, pty: Pty, addr: str, port: int) -> None:
        self.pty = pty
        self.addr = addr
        self.port = port
        self._client: asyncio.StreamWriter | None = None
        self._pending = bytearray()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        listener = socket.create_server((self.addr, self.port), reuse_port=False)
        listener.setblocking(False)
        loop.add_reader(self.pty.master, self._from_guest)
        try:
            while True:
                conn, _ = await loop.sock_accept(listener)
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                reader, writer = await asyncio.open_connection(sock=conn)
                self._client = writer
                try:
                    while data := await reader.read(65536):
                        self._to_guest(data)
                except ConnectionError:
                    pass
                finally:
                    self._client = None
                    writer.close()
        finally:
            loop.remove_reader(self.pty.master)
            listener.close()

    def _from_guest(self) -> None:
        try:
            data = os.read(self.pty.master, 65536)
        except (BlockingIOError, OSError):
            return
        if self._client is not None and not self._client.is_closing():
            self._client.write(data)

    def _to_guest(self, data: bytes) -> None:
        self._pending += data
        self._drain()

    def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending:
            try:
                n = os.write(self.pty.master, self._pending)
            except BlockingIOError:
                loop.add_writer(self.pty.master, self._drain)
                return
            del self._pending[:n]
        loop.remove_writer(self.pty.master)

    def reset(self) -> None:
        self._pending.clear()
        self.pty.flush()


# Killed processes are gone within milliseconds; one stuck in the kernel is not waited for.
REAP_TIMEOUT = 2.0
UP_TIMEOUT = 30.0  # for the first heartbeat of a PTY VM started by `up`
DOWN_TIMEOUT = 10.0  # between SIGTERM and SIGKILL


class PtyVm:
    def __init__(self, addr: str, serial: int, heart: int, guest_args: list[str]) -> None:
        self.serial = Bridge(Pty(), addr, serial)
        self.heart = Bridge(Pty(), addr, heart)
        self.guest_args = guest_args
        self.keeper: int | None = None  # pid of the guest's keeper

    def guest_command(self) -> list[str]:
        exe = shutil.which("guest-server") or str(Path(sys.executable).with_name("guest-server"))
        return [exe, "--serial", self.serial.pty.path, "--heart", self.heart.pty.path,
                "--no-set-clock", "--no-vsock", *self.guest_args]

    def up(self) -> None:
        if not self._keeper_alive():
            self.keeper = start_keeper(self.guest_command())
            log.info("guest-server started under keeper pid %d", self.keeper)

    def _keeper_alive(self) -> bool:
        if self.keeper is None:
            return False
        try:
            return os.waitpid(self.keeper, os.WNOHANG)[0] == 0  # collected if it has ended
        except ChildProcessError:
            return False

    def down(self) -> None:
        killed = procs.kill_descendants()
        reap_children(REAP_TIMEOUT)
        self.keeper = None
        log.info("guest stopped (%d processes killed)", killed)

    def revert(self) -> None:
        self.down()
        for bridge in (self.serial, self.heart):
            bridge.reset()
        self.up()

    def refusal(self, serial: str | None) -> str | None:
        """Why a command meant for the machine on serial port ``serial`` is not ours to
        carry out; None if it is (or names no port)."""
        if serial is None or serial == str(self.serial.port):
            return None
        return (f"this PTY VM's serial port is {self.serial.port}, not {serial}: "
                "it is another machine")

    async def control(self, path: Path) -> None:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            line = (await reader.readline()).decode(errors="replace").strip()
            command, _, serial = line.partition(" ")
            start = time.monotonic()
            actions = {"revert": self.revert, "down": self.down, "up": self.up}
            if command not in actions:
                reply = f"error: unknown command {line!r}; use revert, down or up [PORT]\n"
            elif refusal := self.refusal(serial or None):
                reply = f"error: {refusal}\n"
            else:
                actions[command]()
                reply = f"ok {time.monotonic() - start:.3f}\n"
            log.info("control: %s -> %s", command, reply.strip())
            writer.write(reply.encode())
            await writer.drain()
            writer.close()

        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        server = await asyncio.start_unix_server(handle, str(path))
        async with server:
            await server.serve_forever()


def start_keeper(guest: list[str]) -> int:
    """Fork the keeper of a fresh guest-server (argv ``guest``); returns the keeper's pid."""
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            status = _keep(guest, parent)
        finally:
            os._exit(status)
    return pid


def _keep(guest: list[str], parent: int) -> int:
    """The keeper, in the forked child: runs ``guest`` until it ends or ``parent`` dies, then
    kills whatever is left below. Never returns to the parent's code."""
    # The parent's objects are never collected here: a socket's finalizer would close a
    # descriptor number that is by then one of ours.
    gc.freeze()
    signal.set_wakeup_fd(-1)  # our signals must not wake the parent's event loop
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, _stop_keeper)
    # The parent's sockets and PTYs: a vm-server connection must see EOF when the parent dies.
    os.closerange(3, os.sysconf("SC_OPEN_MAX"))
    os.setsid()
    procs.die_with_parent(signal.SIGTERM)
    if os.getppid() != parent:  # it died before we asked to hear of it
        return 0
    procs.become_subreaper()
    try:
        # guest-server dies with the keeper, whatever kills it.
        proc = subprocess.Popen(guest, stdin=subprocess.DEVNULL,
                                preexec_fn=procs.die_with_parent)
        while True:
            pid, status = os.wait()  # the guest's orphans too: none stays a zombie
            if pid == proc.pid:
                return os.waitstatus_to_exitcode(status) & 0xFF
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the sweep must not be cut short
        procs.kill_descendants()


def _stop_keeper(signum: int, frame: object) -> None:
    raise SystemExit(0)


def reap_children(timeout: float) -> None:
    """Collect every child, once all are dying: the ones that died below a killed parent
    come to us (a subreaper) as that parent ends, so wait until none is left."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if os.waitpid(-1, os.WNOHANG)[0]:
                continue
        except ChildProcessError:
            return
        if time.monotonic() >= deadline:
            log.warning("children still alive %.0f s after they were killed", timeout)
            return
        time.sleep(0.002)


def record_path(state_dir: Path, serial: int) -> Path:
    """Where the PTY VM on the serial port ``serial`` records itself: its pid (its process
    tree is the guest's CPU use, which vm-watchdog measures), its lines and its control socket
    (how vm-server reverts it). One file per port: a pool has several PTY VMs."""
    return state_dir / "ptyvm" / f"serial-{serial}.json"


@dataclass(frozen=True)
class Record:
    pid: int
    addr: str
    serial: int
    heart: int
    control: str  # "" without a control socket


def read_record(path: Path) -> Record | None:
    try:
        return Record(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None


async def run(vm: PtyVm, control: Path | None, record: Path | None = None) -> None:
    procs.become_subreaper()
    tasks = [asyncio.create_task(vm.serial.run()), asyncio.create_task(vm.heart.run())]
    if control is not None:
        tasks.append(asyncio.create_task(vm.control(control)))
    await asyncio.sleep(0)  # listeners are up before the guest starts
    vm.up()
    log.info("PTY VM: serial %s on %s:%d, heartbeat %s on %s:%d", vm.serial.pty.path,
             vm.serial.addr, vm.serial.port, vm.heart.pty.path, vm.heart.addr, vm.heart.port)
    if record is not None:
        try:
            state_files.make_dir(record.parent)
            with os.fdopen(state_files.open_file(record, os.O_WRONLY | os.O_TRUNC), "w") as f:
                f.write(json.dumps(asdict(Record(
                    os.getpid(), vm.serial.addr, vm.serial.port, vm.heart.port,
                    str(control) if control else ""))) + "\n")
        except OSError as e:
            log.warning("cannot record this VM in %s (%s): vm-server and vm-watchdog will not "
                        "find it", record, e.strerror or e)
            record = None
    try:
        await asyncio.gather(*tasks)
    finally:
        vm.down()
        if record is not None:
            record.unlink(missing_ok=True)


def send_control(path: Path, command: str, timeout: float = 30.0) -> str:
    """Send one control command to a running PTY VM; returns its reply line."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(path))
        s.sendall(command.encode() + b"\n")
        return s.makefile().readline().strip()


class PtyGuest(Guest):
    """The guest of the PTY VM that ``pbotvm pty run`` (or ``up``) runs with its record in the
    state directory."""

    kind = "pty"

    def __init__(self, lines: Machine, state_dir: Path) -> None:
        super().__init__(lines)
        self.state_dir = state_dir
        self.record_path = record_path(state_dir, lines.serial)

    @classmethod
    def of(cls, settings: HostSettings, machine: Machine) -> PtyGuest:
        return cls(machine, settings.state_dir)

    @classmethod
    def recorded(cls, settings: HostSettings, machine: Machine) -> PtyGuest | None:
        """The PTY VM recorded in the state directory, if it serves ``machine``'s lines."""
        record = read_record(record_path(settings.state_dir, machine.serial))
        if (record is None or machine.serial_socket
                or (record.addr, record.serial) != (machine.addr, machine.serial)):
            return None
        return cls.of(settings, machine)

    def _record(self) -> Record:
        record = read_record(self.record_path)
        if record is None or not procs.running(record.pid):
            raise GuestError("no PTY VM is running")
        return record

    async def up(self, image: Image | None, warm: Warm, say: Say) -> str:
        """Start ``pbotvm pty run`` in the background (it runs this host's toolchains: there
        is no image, and no snapshot to take)."""
        lines = self.lines
        if lines.serial_socket or lines.heart_socket:
            raise GuestError("the PTY VM serves TCP ports, not Unix sockets")
        if self.running():
            raise GuestError(f"a PTY VM is running already ({self.describe()})")
        directory = self.record_path.parent
        state_files.make_dir(directory)
        control = directory / f"control-{lines.serial}.sock"
        log = directory / f"serial-{lines.serial}.log"
        argv = [str(Path(sys.executable).with_name("pbotvm")), "pty", "run", "--addr",
                lines.addr, "--serial", str(lines.serial), "--heart", str(lines.heart),
                "--control", str(control)]
        with open(log, "ab") as out:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True,
                                    env={**os.environ, "PBOTVM_STATE_DIR": str(self.state_dir)})
        start = time.monotonic()
        try:
            await wait_heartbeat(lines, UP_TIMEOUT, lambda: proc.poll() is None)
            await warm(lines)
        except (ConnectionError, TimeoutError, WarmUpFailed) as e:
            procs.terminate(proc)
            raise GuestError(f"the PTY VM did not come up ({e or 'timed out'}); its log: "
                             f"{log}") from None
        return (f"pid {proc.pid}, serial {lines.addr}:{lines.serial}, heart {lines.heart}, "
                f"up in {time.monotonic() - start:.1f} s")

    def down(self) -> bool:
        record = read_record(self.record_path)
        if record is None or not procs.running(record.pid):
            self.record_path.unlink(missing_ok=True)
            return False
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                os.kill(record.pid, sig)
            deadline = time.monotonic() + DOWN_TIMEOUT
            while procs.running(record.pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if not procs.running(record.pid):
                break
        self.record_path.unlink(missing_ok=True)
        return True

    async def revert(self, *, slow: bool = False) -> str:
        record = self._record()
        if not record.control:
            raise GuestError(f"the PTY VM pid {record.pid} has no control socket")
        try:
            reply = await asyncio.to_thread(send_control, Path(record.control),
                                            f"revert {self.lines.serial}")
        except OSError as e:
            raise GuestError(f"PTY VM control {record.control}: {e.strerror or e}") from None
        if not reply.startswith("ok"):
            raise GuestError(f"PTY VM: {reply}")
        return "guest-server restarted"

    def cpu_seconds(self) -> float:
        return process_tree_seconds(self._record().pid, "PTY VM")

    def running(self) -> bool:
        record = read_record(self.record_path)
        return record is not None and procs.running(record.pid)

    def describe(self) -> str:
        record = read_record(self.record_path)
        return f"PTY VM pid {record.pid}" if record is not None else "PTY VM"
