"""Configuration: the ``PBOTVM_*`` environment variables and the machines file.

Precedence (the original let the file win, contrary to its docs): an operator-allowed
``-vm-*`` option > the environment > the machines file > built-in defaults. The environment
describes the default machine; a machine picked by name with ``-vm=`` is used as its entry says.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pbotvm.guest.limits import MIB, BoxLimits, Limits
from pbotvm.protocol import Framing

DEFAULT_ADDR = "127.0.0.1"
DEFAULT_SERVER_PORT = 9000
DEFAULT_SERIAL = 5555
DEFAULT_HEART = 5556
DEFAULT_CID = 7
DEFAULT_VPORT = 5555
DEFAULT_TIMEOUT = 10.0
DEFAULT_DOMAIN = "pbot-vm"
DEFAULT_OUTPUT_LIMIT = 1024 * 1024
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


class ConfigError(ValueError):
    """Bad configuration; the message names the variable or file and what is wrong."""


class UnknownMachine(LookupError):
    def __init__(self, name: str, available: list[str]) -> None:
        names = ", ".join(available)
        super().__init__(f"Unknown machine '{name}'; available machines are: {names}")


def flag(value: str | None) -> bool:
    """An on/off variable: set, non-empty and not "0" means on (as the original's Perl truth)."""
    return bool(value) and value != "0"


def _int(env: Mapping[str, str], name: str, default: int, lo: int = 0, hi: int = 65535) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None
    if not lo <= value <= hi:
        raise ConfigError(f"{name}={value} is out of range {lo}..{hi}")
    return value


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None
    if value <= 0:
        raise ConfigError(f"{name} must be positive")
    return value


def _argv(env: Mapping[str, str], name: str, default: str | None) -> list[str] | None:
    raw = env.get(name, default)
    if raw is None or not raw.strip():
        return None
    try:
        return shlex.split(raw)
    except ValueError as e:
        raise ConfigError(f"{name}: {e}") from None


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
    vport: int = DEFAULT_VPORT
    addr: str = DEFAULT_ADDR
    framing: Framing = Framing.V2023
    domain: str = DEFAULT_DOMAIN
    # Unix sockets serving the serial devices, used instead of addr:serial and addr:heart:
    # only their owner (root) can connect, where any local user can take a TCP port first.
    serial_socket: str = ""
    heart_socket: str = ""
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
        ``serial-socket`` and ``heart-socket`` keys, and ``guests``: a pool (``pool_of``)."""
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
        return cls(machines, dict(aliases), default)


def _given(entry: dict[str, object]) -> list[str]:
    """The Machine fields an entry gives."""
    return [key.replace("-", "_") for key in entry
            if key in ("serial", "heart", "cid", "vport", "addr", "domain", "serial-socket",
                       "heart-socket", "framing")]


def _machine(name: str, entry: dict[str, object], where: str) -> Machine:
    values: dict[str, object] = {"name": name, "domain": name}
    for key in ("serial", "heart", "cid", "vport"):
        if key in entry:
            value = entry[key]
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**32:
                raise ConfigError(f"{where}: {key!r} must be a port or CID number")
            values[key] = value
    for key in ("addr", "domain", "serial-socket", "heart-socket"):
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
    changes: dict[str, object] = {"domain": env.get("PBOTVM_DOMAIN") or DEFAULT_DOMAIN}
    for key, var in (("serial", "PBOTVM_SERIAL"), ("heart", "PBOTVM_HEART"),
                     ("vport", "PBOTVM_VPORT")):
        if env.get(var, "").strip():
            changes[key] = _int(env, var, 0, 1)
    for key, var in (("serial_socket", "PBOTVM_SERIAL_SOCKET"),
                     ("heart_socket", "PBOTVM_HEART_SOCKET")):
        if env.get(var, "").strip():
            changes[key] = env[var].strip()
    if env.get("PBOTVM_CID", "").strip():
        changes["cid"] = _int(env, "PBOTVM_CID", 0, 0, 2**32 - 1)
    if env.get("PBOTVM_FRAMING", "").strip():
        try:
            changes["framing"] = Framing(env["PBOTVM_FRAMING"].strip())
        except ValueError:
            raise ConfigError("PBOTVM_FRAMING must be '2023' or 'head'") from None
    return replace(machine, **changes)  # type: ignore[arg-type]


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
    if env.get("PBOTVM_MACHINES"):
        return Path(env["PBOTVM_MACHINES"])
    base = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "pbotvm" / "vm-exec.json"


def load_machines(env: Mapping[str, str]) -> Machines:
    path = machines_path(env)
    explicit = bool(env.get("PBOTVM_MACHINES"))
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


def _paste_url(env: Mapping[str, str]) -> str:
    url = env.get("PBOTVM_PASTE_URL", "").strip() or DEFAULT_PASTE_URL
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"PBOTVM_PASTE_URL={url!r} is not an http(s) URL")
    return url


REVERT_POLICIES = ("on-failure", "after-every-run")


def _revert_policy(env: Mapping[str, str]) -> bool:
    """Whether ``PBOTVM_REVERT`` asks for a revert after every request (else only after a
    time-out or a program the guest had to kill)."""
    policy = env.get("PBOTVM_REVERT", "").strip() or REVERT_POLICIES[0]
    if policy not in REVERT_POLICIES:
        raise ConfigError(f"PBOTVM_REVERT={policy!r}: use one of {', '.join(REVERT_POLICIES)}")
    return policy == "after-every-run"


def _metrics(env: Mapping[str, str]) -> tuple[str, int] | None:
    """``PBOTVM_METRICS``: ``PORT`` (on 127.0.0.1), ``ADDR:PORT`` or ``[IPV6]:PORT``; unset or
    empty, no metrics endpoint."""
    raw = env.get("PBOTVM_METRICS", "").strip()
    if not raw:
        return None
    addr, colon, port = raw.rpartition(":")
    addr = addr.removeprefix("[").removesuffix("]") if colon else DEFAULT_ADDR
    if not (port.isascii() and port.isdigit()) or not 1 <= int(port) <= 65535 or (
            colon and not addr):
        raise ConfigError(f"PBOTVM_METRICS={raw!r}: expected PORT or ADDR:PORT, "
                          "e.g. 9100 or 127.0.0.1:9100")
    return addr, int(port)


def state_dir(env: Mapping[str, str]) -> Path:
    """``PBOTVM_STATE_DIR``, else ``$XDG_STATE_HOME/pbotvm`` (``~/.local/state/pbotvm``)."""
    return Path(env.get("PBOTVM_STATE_DIR") or Path(
        env.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "pbotvm")


@dataclass(frozen=True)
class HostSettings:
    """Everything vm-server and vm-exec read from their environment."""

    addr: str
    port: int
    timeout: float
    norevert: bool
    revert_after_every_run: bool  # PBOTVM_REVERT=after-every-run: a fresh guest per request
    libvirt_uri: str
    snapshot: str
    revert_command: list[str] | None
    output_limit: int
    stdin_command: list[str] | None
    allow_overrides: bool
    state_dir: Path
    machines: Machines
    paste_url: str
    metrics: tuple[str, int] | None  # where vm-server serves /metrics (``host.metrics``)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> HostSettings:
        env = os.environ if env is None else env
        return cls(
            addr=env.get("PBOTVM_ADDR", "").strip() or DEFAULT_ADDR,
            port=_int(env, "PBOTVM_SERVER", DEFAULT_SERVER_PORT, 1),
            timeout=_float(env, "PBOTVM_TIMEOUT", DEFAULT_TIMEOUT),
            norevert=flag(env.get("PBOTVM_NOREVERT")),
            revert_after_every_run=_revert_policy(env),
            libvirt_uri=env.get("PBOTVM_LIBVIRT_URI", "").strip() or "qemu:///system",
            snapshot=env.get("PBOTVM_SNAPSHOT", "").strip() or "1",
            revert_command=_argv(env, "PBOTVM_REVERT_COMMAND", None),
            output_limit=_int(env, "PBOTVM_OUTPUT_LIMIT", DEFAULT_OUTPUT_LIMIT, 1024, 2**31),
            stdin_command=with_games_dir(
                _argv(env, "PBOTVM_STDIN_COMMAND", DEFAULT_STDIN_COMMAND)),
            allow_overrides=flag(env.get("PBOTVM_ALLOW_OVERRIDES")),
            state_dir=state_dir(env),
            machines=load_machines(env),
            paste_url=_paste_url(env),
            metrics=_metrics(env),
        )


@dataclass(frozen=True)
class GuestSettings:
    serial: str
    heart: str
    user: str
    vport: int
    output_limit: int
    limits: Limits
    box_limits: BoxLimits

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> GuestSettings:
        env = os.environ if env is None else env
        return cls(
            serial=env.get("PBOTVM_GUEST_SERIAL", "").strip() or "/dev/ttyS2",
            heart=env.get("PBOTVM_GUEST_HEART", "").strip() or "/dev/ttyS3",
            user=env.get("PBOTVM_GUEST_USER", "").strip() or "vm",
            vport=_int(env, "PBOTVM_VPORT", DEFAULT_VPORT, 1),
            output_limit=_int(env, "PBOTVM_OUTPUT_LIMIT", DEFAULT_OUTPUT_LIMIT, 1024, 2**31),
            limits=_guest_limits(env),
            box_limits=_box_limits(env),
        )


def _guest_limits(env: Mapping[str, str]) -> Limits:
    """Each command's limits (the original's ulimits; the file size in its 1 KiB blocks)."""
    default = Limits()
    return Limits(
        cpu_seconds=_int(env, "PBOTVM_GUEST_CPU_SECONDS", default.cpu_seconds, 1, 86400),
        file_bytes=1024 * _int(env, "PBOTVM_GUEST_FILE_KIB", default.file_bytes // 1024, 1,
                               2**31),
        processes=_int(env, "PBOTVM_GUEST_PROCESSES", default.processes, 1),
        wall_seconds=_float(env, "PBOTVM_GUEST_TIMEOUT", default.wall_seconds),
    )


def _box_limits(env: Mapping[str, str]) -> BoxLimits:
    """The whole request's limits."""
    default = BoxLimits()
    return BoxLimits(
        memory_bytes=MIB * _int(env, "PBOTVM_GUEST_MEMORY_MIB", default.memory_bytes // MIB, 16,
                                2**31),
        tmpfs_bytes=MIB * _int(env, "PBOTVM_GUEST_TMPFS_MIB", default.tmpfs_bytes // MIB, 1,
                               2**31),
        cpu_weight=_int(env, "PBOTVM_GUEST_CPU_WEIGHT", default.cpu_weight, 1, 10000),
    )
