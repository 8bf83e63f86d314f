"""The whole pipeline on this machine: PTY VM + vm-server as processes, vm-client to talk.

Used by ``pbotvm demo``, the tests and the benchmarks, so they all exercise the same thing.
"""

from __future__ import annotations

import json
import os
import random
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from pbotvm import procs
from tests.support.started import Started

BIN = Path(sys.executable).parent


def free_port(addr: str = "127.0.0.1") -> int:
    """A port nobody uses, taken below the ephemeral range: between now and the bind of the
    daemon it is for, the kernel cannot give it to some outgoing connection."""
    low = _ephemeral_low()
    for _ in range(100):
        port = random.randrange(10000, low) if low > 10000 else 0
        with socket.socket() as s:
            try:
                s.bind((addr, port))
            except OSError:
                continue
            return int(s.getsockname()[1])
    raise RuntimeError(f"no free port on {addr}")


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def port_free(port: int, addr: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        try:
            s.bind((addr, port))
        except OSError:
            return False
    return True


class LocalStack(Started):
    """PTY VMs (``guests`` of them: more than one makes the machine a pool, which vm-server
    reverts through each PTY VM's record), vm-server, and vm-client to ask."""

    def __init__(self, workdir: Path, *, serial: int | None = None, heart: int | None = None,
                 server: int | None = None, env: Mapping[str, str] | None = None,
                 guests: int = 1) -> None:
        self.workdir = workdir
        self.serial = serial or free_port()
        self.heart = heart or free_port()
        self.server = server or free_port()
        # Each guest's (serial, heart) ports; the first is the one above.
        self.guests = [(self.serial, self.heart)] + [(free_port(), free_port())
                                                     for _ in range(guests - 1)]
        self.control = workdir / "ptyvm.sock"
        self.machines = workdir / "vm-exec.json"
        self.logs: dict[str, Path] = {}
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self.env = {
            **os.environ,
            "PBOTVM_ADDR": "127.0.0.1",
            "PBOTVM_SERVER": str(self.server),
            "PBOTVM_SERIAL": str(self.serial),
            "PBOTVM_HEART": str(self.heart),
            "PBOTVM_MACHINES": str(self.machines),
            "PBOTVM_STATE_DIR": str(workdir / "state"),
            "PBOTVM_REVERT_COMMAND": "" if guests > 1 else shlex.join(
                [str(BIN / "pbotvm"), "pty", "ctl", "--control", str(self.control), "revert"]),
            **(env or {}),
        }

    def devices(self) -> str:
        """Where the guest's serial devices are served, for the operator."""
        return f"serial {self.serial}, heartbeat {self.heart}"

    def start(self, timeout: float = 30.0) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        machine: dict[str, object] = {"serial": self.serial, "heart": self.heart, "cid": 0,
                                      "vport": 5555}
        if len(self.guests) > 1:
            machine["guests"] = [{"serial": serial, "heart": heart}
                                 for serial, heart in self.guests]
        self.machines.write_text(json.dumps({
            "machines": {"pbot-vm": machine},
            "aliases": {"main": "pbot-vm"},
            "default-machine": "main",
        }))
        self.start_vm()
        self.start_process("vm-server", [str(BIN / "vm-server")])
        self.wait_ready(timeout)

    def start_vm(self) -> None:
        for index, (serial, heart) in enumerate(self.guests):
            control = self.control if index == 0 else self.workdir / f"ptyvm-{index}.sock"
            self.start_process("ptyvm" if index == 0 else f"ptyvm-{index}",
                               [str(BIN / "pbotvm"), "pty", "run", "--serial", str(serial),
                                "--heart", str(heart), "--control", str(control)])

    def start_process(self, name: str, argv: list[str]) -> None:
        log = self.workdir / f"{name}.log"
        self.logs[name] = log
        with open(log, "ab") as out:
            self._procs[name] = subprocess.Popen(argv, env=self.env, stdin=subprocess.DEVNULL,
                                                 stdout=out, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float) -> None:
        """Until vm-server answers a request from the guest."""
        deadline = time.monotonic() + timeout
        reply = ""
        while time.monotonic() < deadline:
            for name, proc in self._procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited {proc.returncode}:\n{self.log(name)}")
            reply = self.client("-lang=sh", "echo", "ready", "-stdin", "x").stdout.strip()
            if reply == "ready":
                return
            time.sleep(0.2)
        raise RuntimeError(f"stack not ready after {timeout} s (last reply {reply!r})\n"
                           f"{self.log('vm-server')}\n{self.log('ptyvm')}")

    def client(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """vm-client's run, its output decoded as is (text=True would turn a \\r into \\n)."""
        done = subprocess.run([str(BIN / "vm-client"), *args], env=self.env,
                              capture_output=True, timeout=timeout, check=False)
        return subprocess.CompletedProcess(done.args, done.returncode,
                                           done.stdout.decode("utf-8", "surrogateescape"),
                                           done.stderr.decode("utf-8", "surrogateescape"))

    def ask(self, code: str, **fields: str) -> str:
        """One PBot-style JSON request; the reply without its final newline."""
        line = json.dumps({"nick": "tester", "channel": "#test", "code": code, **fields})
        return self.client(line).stdout.removesuffix("\n")

    def wait_answer(self, code: str, expected: str, timeout: float) -> float:
        """Ask until the reply is ``expected`` (the guest back after a revert); the seconds
        that took."""
        start = time.monotonic()
        reply = ""
        while time.monotonic() - start < timeout:
            reply = self.ask(code)
            if reply == expected:
                return time.monotonic() - start
            time.sleep(0.2)
        raise AssertionError(f"no {expected!r} in {timeout} s (last {reply!r}):\n"
                             f"{self.log('vm-server')[-2000:]}")

    def control_command(self, command: str) -> str:
        from pbotvm.host.machines.ptyvm import send_control

        return send_control(self.control, command)

    def log(self, name: str) -> str:
        path = self.logs.get(name)
        return path.read_text(errors="replace") if path and path.exists() else ""

    def pid(self, name: str) -> int:
        return self._procs[name].pid

    def stop_process(self, name: str) -> None:
        proc = self._procs.pop(name, None)
        if proc is not None:
            procs.terminate(proc)

    def stop(self) -> None:
        # Every process started, the last first (a vm-watchdog a test added was left running).
        for name in reversed(list(self._procs)):
            self.stop_process(name)


class QemuStack(LocalStack):
    """The same pipeline with the real guest: ``pbotvm vm up`` (image, boot, warm-up, snapshot),
    its serial devices on Unix sockets in the work directory, vm-server reverting with
    ``pbotvm vm revert``."""

    def __init__(self, workdir: Path, *, profile: str = "minimal", progress: bool = False,
                 serial: int | None = None, heart: int | None = None,
                 server: int | None = None, env: Mapping[str, str] | None = None) -> None:
        super().__init__(workdir, serial=serial, heart=heart, server=server, env=env)
        self.profile = profile
        self.progress = progress
        self.env["PBOTVM_REVERT_COMMAND"] = shlex.join([str(BIN / "pbotvm"), "vm", "revert"])
        self.env.setdefault("PBOTVM_SERIAL_SOCKET", str(workdir / "serial.sock"))
        self.env.setdefault("PBOTVM_HEART_SOCKET", str(workdir / "heart.sock"))

    def devices(self) -> str:
        return (f"serial {self.env['PBOTVM_SERIAL_SOCKET']}, heartbeat "
                f"{self.env['PBOTVM_HEART_SOCKET']}")

    def start_vm(self) -> None:
        log = self.workdir / "vm-up.log"
        self.logs["vm-up"] = log
        with open(log, "ab") as out:
            # The image build and the boot take minutes the first time: let the operator see why.
            proc = subprocess.run([str(BIN / "pbotvm"), "vm", "up", "--profile", self.profile],
                                  env=self.env, stdin=subprocess.DEVNULL, stdout=out,
                                  stderr=None if self.progress else out, check=False)
        if proc.returncode:
            raise RuntimeError(f"pbotvm vm up exited {proc.returncode}:\n{self.log('vm-up')}")

    def stop(self) -> None:
        super().stop()
        subprocess.run([str(BIN / "pbotvm"), "vm", "down"], env=self.env,
                       stdin=subprocess.DEVNULL, capture_output=True, check=False)
