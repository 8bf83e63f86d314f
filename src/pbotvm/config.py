"""Configuration: the ``PBOTVM_*`` environment variables and the machines file.

Precedence (the original let the file win, contrary to its docs): an operator-allowed
``-vm-*`` option > the environment > the machines file > built-in defaults. The environment
describes the default machine; a machine picked by name with ``-vm=`` is used as its entry says.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pbotvm import logs
from pbotvm.protocol import VSOCK_PORT, Framing
from pbotvm.settings import (
    ConfigError,
    Setting,
    argv,
    at_least,
    choice,
    http_url,
    on_off,
    positive,
    read,
    text,
    whole,
)
from pbotvm.text import DEFAULT_OUTPUT_LIMIT

DEFAULT_ADDR = "127.0.0.1"
DEFAULT_SERVER_PORT = 9000
DEFAULT_SERIAL = 5555
DEFAULT_HEART = 5556
DEFAULT_CID = 7
DEFAULT_TIMEOUT = 10.0
# Two missed heartbeats (one every 5 s) and 2 s: the original's 5 s flagged live guests.
DEFAULT_STALE_AFTER = 12.0
DEFAULT_DOMAIN = "pbot-vm"
LOCAL_HOST = "local"  # this host, in a machines file's host-weights (the others are URIs)
DEFAULT_STDIN_COMMAND = "fortune -u -s"
# The original's paste service (multipart field "file", answers the URL); any 0x0 instance works.
DEFAULT_PASTE_URL = "https://0x0.st"

# The original's shipped host/config/vm-exec.json. Without a machines file only its default
# machine is known (``builtin_machines``): its test machine would be a name any chat user can
# pick, and a machine nobody runs.
BUILTIN_MACHINES: dict[str, Any] = {
    "machines": {
        "pbot-vm": {"serial": 5555, "heart": 5556, "cid": 7, "vport": 5555},
        "pbot-test-vm": {"serial": 7777, "heart": 7778, "cid": 42, "vport": 5555},
    },
    "aliases": {"fedora-amd64": "pbot-vm", "test": "pbot-test-vm"},
    "default-machine": "fedora-amd64",
}


class UnknownMachine(LookupError):
    def __init__(self, name: str, available: list[str]) -> None:
        names = ", ".join(available)
        super().__init__(f"Unknown machine '{name}'; available machines are: {names}")


# Debian and Fedora put fortune here, outside the PATH of root and of system services.
GAMES_DIR = "/usr/games"


def with_games_dir(argv: list[str] | None,
                   which: Callable[[str], str | None] = shutil.which) -> list[str] | None:
    """``argv`` with its program taken from /usr/games when the PATH does not have it."""
    if not argv or "/" in argv[0] or which(argv[0]):
        return argv
    games = os.path.join(GAMES_DIR, argv[0])
    return [games, *argv[1:]] if os.access(games, os.X_OK) else argv


@dataclass(frozen=True)
class Machine:
    name: str
    serial: int = DEFAULT_SERIAL
    heart: int = DEFAULT_HEART
    cid: int = DEFAULT_CID
    vport: int = VSOCK_PORT
    addr: str = DEFAULT_ADDR
    framing: Framing = Framing.V2023
    domain: str = DEFAULT_DOMAIN
    # Unix sockets serving the serial devices, used instead of addr:serial and addr:heart:
    # only their owner (root) can connect, where any local user can take a TCP port first.
    serial_socket: str = ""
    heart_socket: str = ""
    # A guest on another host: its lines are the domain's serial ports, reached as streams
    # of the connection to this libvirt URI (``host.machines.libvirt_lines``).
    uri: str = ""
    # A pool: these guests serve the machine, each on lines of its own (then the machine's
    # own lines above are not used). Empty: the machine is one guest, on those lines.
    guests: tuple[Machine, ...] = ()

    def members(self) -> tuple[Machine, ...]:
        """The guests that serve the machine: its pool, or itself."""
        return self.guests or (self,)


@dataclass(frozen=True)
class Machines:
    machines: dict[str, Machine]
    aliases: dict[str, str]
    default: str
    # A pool's requests go to the host whose busy guests per weight are fewest (1 unless
    # given); keyed by a guest's libvirt URI, LOCAL_HOST for this host.
    weights: dict[str, float] = field(default_factory=dict)

    def names(self) -> list[str]:
        """What the unknown-machine message lists: the aliases, as the original did."""
        return sorted(self.aliases) or sorted(self.machines)

    def resolve(self, name: str | None = None) -> Machine:
        wanted = self.default if name is None else name
        machine = self.machines.get(self.aliases.get(wanted, wanted))
        if machine is None:
            raise UnknownMachine(wanted, self.names())
        return machine

    @classmethod
    def parse(cls, data: object, where: str, env: Mapping[str, str]) -> Machines:
        """The vm-exec.json schema, plus optional ``addr``, ``framing``, ``domain``,
        ``serial-socket``, ``heart-socket`` and ``uri`` keys, ``guests``: a pool
        (``pool_of``), and ``host-weights``."""
        if not isinstance(data, dict) or not isinstance(data.get("machines"), dict):
            raise ConfigError(f"{where}: expected an object with a 'machines' object")
        aliases = data.get("aliases", {})
        if not isinstance(aliases, dict) or not all(isinstance(v, str) for v in aliases.values()):
            raise ConfigError(f"{where}: 'aliases' must map names to machine names")
        default = data.get("default-machine", next(iter(data["machines"]), ""))
        default_name = aliases.get(default, default)
        machines = {}
        for name, entry in data["machines"].items():
            if not isinstance(entry, dict):
                raise ConfigError(f"{where}: machine {name!r} must be an object")
            machine = _machine(name, entry, f"{where}: machine {name!r}")
            if "guests" in entry:
                machine = pool_of(machine, entry, f"{where}: machine {name!r}")
            elif name == default_name:
                machine = _apply_env(machine, env)
            machines[name] = machine
        return cls(machines, dict(aliases), default, _weights(data, where))


def _weights(data: dict[str, object], where: str) -> dict[str, float]:
    weights = data.get("host-weights", {})
    if not isinstance(weights, dict) or not all(
            isinstance(w, int | float) and not isinstance(w, bool) and w > 0
            for w in weights.values()):
        raise ConfigError(f"{where}: 'host-weights' must map \"{LOCAL_HOST}\" or a libvirt URI "
                          "to a number above 0")
    return {str(host): float(weight) for host, weight in weights.items()}


def _given(entry: dict[str, object]) -> list[str]:
    """The Machine fields an entry gives."""
    return [key.replace("-", "_") for key in entry
            if key in ("serial", "heart", "cid", "vport", "addr", "domain", "serial-socket",
                       "heart-socket", "framing", "uri")]


def _machine(name: str, entry: dict[str, object], where: str) -> Machine:
    values: dict[str, object] = {"name": name, "domain": name}
    for key in ("serial", "heart", "cid", "vport"):
        if key in entry:
            value = entry[key]
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**32:
                raise ConfigError(f"{where}: {key!r} must be a port or CID number")
            values[key] = value
    for key in ("addr", "domain", "serial-socket", "heart-socket", "uri"):
        if key in entry:
            if not isinstance(entry[key], str) or not entry[key]:
                raise ConfigError(f"{where}: {key!r} must be a non-empty string")
            values[key.replace("-", "_")] = entry[key]
    if "framing" in entry:
        try:
            values["framing"] = Framing(str(entry["framing"]))
        except ValueError:
            raise ConfigError(f"{where}: 'framing' must be '2023' or 'head'") from None
    return Machine(**values)  # type: ignore[arg-type]


def nth_guest(machine: Machine, index: int) -> Machine:
    """Guest ``index`` of a pool that ``machine`` heads, where nothing else says otherwise:
    named ``NAME/K``; its libvirt domain ``DOMAIN-K``, its vsock CID the machine's plus K (two
    guests cannot share one), its TCP ports the machine's plus 2K, its sockets ``NAME-K.sock``
    beside the machine's. Guest 0 is the machine's lines."""
    def numbered(path: str) -> str:
        stem, dot, suffix = path.rpartition(".")
        return f"{stem}-{index}{dot}{suffix}" if path and index and dot else path

    return replace(machine, name=f"{machine.name}/{index}", guests=(),
                   domain=f"{machine.domain}-{index}" if index else machine.domain,
                   cid=machine.cid + index if machine.cid else 0,
                   serial=machine.serial + 2 * index, heart=machine.heart + 2 * index,
                   serial_socket=numbered(machine.serial_socket),
                   heart_socket=numbered(machine.heart_socket))


def pool_of(machine: Machine, entry: dict[str, object], where: str) -> Machine:
    """``machine`` served by the guests its entry lists: each an object with the keys of a
    machine, what it does not give as ``nth_guest`` has it."""
    guests = entry["guests"]
    if not isinstance(guests, list) or not guests:
        raise ConfigError(f"{where}: 'guests' must be a list of one guest or more")
    members = []
    for index, guest in enumerate(guests):
        if not isinstance(guest, dict):
            raise ConfigError(f"{where}: guest {index} must be an object")
        default = nth_guest(machine, index)
        given = _machine(default.name, guest, f"{where}, guest {index}")
        members.append(replace(default, **{key: getattr(given, key)
                                           for key in _given(guest)}))
    lines = [(guest.serial_socket, guest.addr, guest.serial) for guest in members]
    if len(set(lines)) < len(lines):
        raise ConfigError(f"{where}: two guests on the same serial line")
    return replace(machine, guests=tuple(members))


def _apply_env(machine: Machine, env: Mapping[str, str]) -> Machine:
    """The default machine as the environment says (its domain always: unset, the default)."""
    changes = {row.field: row.read(env) for row in DEFAULT_MACHINE
               if row.field == "domain" or env.get(row.variable, "").strip()}
    return replace(machine, **changes)


def builtin_machines() -> dict[str, Any]:
    """The built-in list as far as it names the default machine: that machine and its
    aliases."""
    default = BUILTIN_MACHINES["default-machine"]
    name = BUILTIN_MACHINES["aliases"].get(default, default)
    return {"machines": {name: BUILTIN_MACHINES["machines"][name]},
            "aliases": {alias: target for alias, target in BUILTIN_MACHINES["aliases"].items()
                        if target == name},
            "default-machine": default}


def machines_path(env: Mapping[str, str]) -> Path:
    if env.get(MACHINES_FILE.variable):
        return Path(env[MACHINES_FILE.variable])
    base = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "pbotvm" / "vm-exec.json"


def load_machines(env: Mapping[str, str]) -> Machines:
    path = machines_path(env)
    explicit = bool(env.get(MACHINES_FILE.variable))
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        if explicit:
            raise ConfigError(f"PBOTVM_MACHINES: {path} does not exist") from None
        return Machines.parse(builtin_machines(), "built-in machines", env)
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: {e}") from None
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: not valid JSON ({e.msg}, line {e.lineno})") from None
    return Machines.parse(data, str(path), env)


def state_dir(env: Mapping[str, str]) -> Path:
    """``PBOTVM_STATE_DIR``, else ``$XDG_STATE_HOME/pbotvm`` (``~/.local/state/pbotvm``)."""
    return Path(env.get(STATE_DIR.variable) or Path(
        env.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "pbotvm")


def _framing(raw: str) -> Framing:
    try:
        return Framing(raw)
    except ValueError:
        raise ValueError("use 2023 or head") from None


def _after_every_run(raw: str) -> bool:
    """Whether the revert policy is a revert after every request (else only after a
    time-out or a program the guest had to kill)."""
    return choice("on-failure", "after-every-run")(raw) == "after-every-run"


def _metrics_address(raw: str) -> tuple[str, int]:
    addr, colon, port = raw.rpartition(":")
    addr = addr.removeprefix("[").removesuffix("]") if colon else DEFAULT_ADDR
    if not (port.isascii() and port.isdigit()) or not 1 <= int(port) <= 65535 or (
            colon and not addr):
        raise ValueError("expected PORT or ADDR:PORT, e.g. 9100 or 127.0.0.1:9100")
    return addr, int(port)


# The host's settings, in the README's order. Each row's field is HostSettings' (``SERVER``),
# the default machine's (``DEFAULT_MACHINE``), or what one program reads on its own.
_PORT = whole(1, 65535)
SERVER = (
    Setting("PBOTVM_ADDR", "address vm-server binds and vm-client connects to (the original "
            "bound all interfaces)", text, DEFAULT_ADDR, field="addr"),
    Setting("PBOTVM_SERVER", "vm-server port", _PORT, DEFAULT_SERVER_PORT,
            field="port"),
    Setting("PBOTVM_TIMEOUT", "seconds for one request (and, separately, for waiting its "
            "turn)", positive, DEFAULT_TIMEOUT, field="timeout"),
    Setting("PBOTVM_HEART_STALE", "seconds without a heartbeat before the guest counts as down "
            "(beats come every 5 s)", positive, DEFAULT_STALE_AFTER, field="stale_after",
            option="--stale-after"),
    Setting("PBOTVM_LIBVIRT_URI", "libvirt connection for reverts", text, "qemu:///system",
            field="libvirt_uri"),
    Setting("PBOTVM_SNAPSHOT", "snapshot to revert to", text, "1", field="snapshot"),
    Setting("PBOTVM_REVERT_COMMAND", "if set, reverts run this command (split like a shell "
            "would, never run by one) with `PBOTVM_DOMAIN`, `PBOTVM_SNAPSHOT`, `PBOTVM_MACHINE` "
            "(name) and `PBOTVM_MACHINE_SERIAL` (serial port) of the machine to revert set; "
            "`pbotvm vm revert` and `pbotvm pty ctl revert` refuse when their VM serves another "
            "serial port. Unset: the guest's own backend (see "
            "[A real guest VM](#a-real-guest-vm-qemu))", argv, field="revert_command"),
    Setting("PBOTVM_NOREVERT", "set (not `0`) to never revert", on_off, False,
            field="norevert"),
    Setting("PBOTVM_REVERT", "`after-every-run`: revert each guest after every request (see "
            "[Several guests](#several-guests))", _after_every_run, False, "on-failure",
            field="revert_after_every_run"),
    Setting("PBOTVM_OUTPUT_LIMIT", "bytes of output kept; the rest is replaced by "
            "`[... output truncated: N more bytes]`", whole(1024, 2**31), DEFAULT_OUTPUT_LIMIT,
            field="output_limit"),
    Setting("PBOTVM_STDIN_COMMAND", "default program input; empty for none", argv,
            argv(DEFAULT_STDIN_COMMAND), field="stdin_command", empty=None),
    Setting("PBOTVM_ALLOW_OVERRIDES", "allow `-vm-serial=`, `-vm-cid=`, `-vm-vport=` in code "
            "(off: a chat user must not aim vm-exec at arbitrary ports)", on_off, False,
            field="allow_overrides"),
    Setting("PBOTVM_PASTE_URL", "where `-paste` posts (multipart field `file`, the answer is "
            "the URL): the original's service; any 0x0 instance, or a service speaking the "
            "same form, works. vm-server connects to it directly (no `https_proxy`)", http_url,
            DEFAULT_PASTE_URL, field="paste_url"),
    Setting("PBOTVM_METRICS", "`PORT` (on 127.0.0.1), `ADDR:PORT` or `[ADDR]:PORT`: where "
            "vm-server serves Prometheus metrics, at `/metrics` (see "
            "[Metrics and status](#metrics-and-status)); unset: none", _metrics_address,
            field="metrics"),
)
DEFAULT_MACHINE = (
    Setting("PBOTVM_SERIAL", "serial TCP port of the default machine", _PORT, DEFAULT_SERIAL,
            field="serial"),
    Setting("PBOTVM_HEART", "heartbeat TCP port of the default machine", _PORT, DEFAULT_HEART,
            field="heart"),
    Setting("PBOTVM_SERIAL_SOCKET", "Unix socket serving the default machine's serial line, "
            "used instead of the TCP port. When neither the sockets, `PBOTVM_SERIAL`, "
            "`PBOTVM_HEART` nor a machines file is set, the lines of the guest `pbotvm vm up` "
            "started in the state directory, if any", text, field="serial_socket"),
    Setting("PBOTVM_HEART_SOCKET", "Unix socket serving the default machine's heartbeat line, "
            "as `PBOTVM_SERIAL_SOCKET`", text, field="heart_socket"),
    Setting("PBOTVM_CID", "vsock CID (`0`: serial only). Whether vsock answers is probed in "
            "the background once per guest boot (and after each revert); until then, and when "
            "it does not, requests take the serial line, and the log says once why. On a host "
            "without `/dev/vhost-vsock`, where no guest has a vsock device, vsock is never "
            "tried", whole(0, 2**32 - 1), DEFAULT_CID, field="cid"),
    Setting("PBOTVM_VPORT", "vsock port", whole(1, 2**32 - 1), VSOCK_PORT,
            field="vport"),
    Setting("PBOTVM_FRAMING", "request framing for the default machine: `2023` (JSON + "
            "`:end:`) or `head` (upstream's 4000-byte lines)", _framing, Framing.V2023,
            field="framing"),
    Setting("PBOTVM_DOMAIN", "libvirt domain of the default machine", text, DEFAULT_DOMAIN,
            field="domain"),
)
MACHINES_FILE = Setting(
    "PBOTVM_MACHINES", "machines file; without one, only the default machine `pbot-vm` (alias "
    "`fedora-amd64`) exists", text, shown="~/.config/pbotvm/vm-exec.json")
STATE_DIR = Setting(
    "PBOTVM_STATE_DIR", "runtime state: each machine's status and lock file (`machines/`), the "
    "history store, the QEMU and PTY VMs' pid files. vm-server's, vm-watchdog's and the PTY "
    "VM's files there are 0600 and the directories they make 0700, whatever the umask (a "
    "directory that exists keeps its mode)", text, shown="~/.local/state/pbotvm")
DEFAULT_THRESHOLD = 25.0
WATCHDOG = (
    Setting("PBOTVM_WATCHDOG_INTERVAL", "vm-watchdog's seconds between samples", at_least(0.1),
            15.0, field="interval", option="--interval"),
    Setting("PBOTVM_WATCHDOG_THRESHOLD", "CPU percent (of one CPU) that two of vm-watchdog's "
            "samples in a row must reach", positive, DEFAULT_THRESHOLD, field="threshold",
            option="--threshold"),
)
ACCEL = Setting(
    "PBOTVM_ACCEL", "`kvm` or `tcg`: how `pbotvm vm up` runs QEMU; unset: KVM when it really "
    "runs a kernel here", choice("kvm", "tcg"))
SETTINGS = (*SERVER, *DEFAULT_MACHINE, MACHINES_FILE, STATE_DIR, *WATCHDOG, ACCEL,
            logs.LOG_FORMAT, logs.DEBUG)


@dataclass(frozen=True)
class HostSettings:
    """Everything vm-server and vm-exec read from their environment (``SERVER``, the machines,
    the state directory)."""

    addr: str
    port: int
    timeout: float
    stale_after: float
    libvirt_uri: str
    snapshot: str
    revert_command: list[str] | None
    norevert: bool
    revert_after_every_run: bool  # PBOTVM_REVERT=after-every-run: a fresh guest per request
    output_limit: int
    stdin_command: list[str] | None
    allow_overrides: bool
    paste_url: str
    metrics: tuple[str, int] | None  # where vm-server serves /metrics (``host.metrics``)
    state_dir: Path
    machines: Machines

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None,
                 given: Mapping[str, Any] | None = None) -> HostSettings:
        """From ``env`` (os.environ), where ``given`` (command-line values) does not say.
        Raises ``ConfigError``."""
        env = os.environ if env is None else env
        value = read(SERVER, env, given)
        return cls(**{**value, "stdin_command": with_games_dir(value["stdin_command"])},
                   state_dir=state_dir(env), machines=load_machines(env))
