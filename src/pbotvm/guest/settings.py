"""guest-server's settings: its table (``SETTINGS``) and the object made from it."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pbotvm import logs
from pbotvm.guest.limits import MIB, BoxLimits, Limits
from pbotvm.protocol import VSOCK_PORT
from pbotvm.settings import Setting, positive, read, text, whole
from pbotvm.text import DEFAULT_OUTPUT_LIMIT

_LIMITS = Limits()
_BOX = BoxLimits()

SETTINGS = (
    Setting("PBOTVM_GUEST_SERIAL", "serial device for requests", text, "/dev/ttyS2",
            field="serial", option="--serial"),
    Setting("PBOTVM_GUEST_HEART", "serial device for the heartbeat", text, "/dev/ttyS3",
            field="heart", option="--heart"),
    Setting("PBOTVM_GUEST_USER", "unprivileged user that runs the programs", text, "vm",
            field="user", option="--user"),
    Setting("PBOTVM_VPORT", "vsock port requests come on", whole(1, 2**32 - 1), VSOCK_PORT,
            field="vport", option="--vport"),
    Setting("PBOTVM_OUTPUT_LIMIT", "bytes of a program's output kept; the rest is replaced "
            "by `[... output truncated: N more bytes]`", whole(1024, 2**31),
            DEFAULT_OUTPUT_LIMIT, field="output_limit"),
    Setting("PBOTVM_GUEST_CPU_SECONDS", "CPU seconds of each command (`ulimit -t`)",
            whole(1, 86400), _LIMITS.cpu_seconds, field="cpu_seconds"),
    Setting("PBOTVM_GUEST_FILE_KIB", "KiB of each file written (`ulimit -f`)",
            whole(1, 2**31), _LIMITS.file_bytes // 1024, field="file_kib"),
    Setting("PBOTVM_GUEST_PROCESSES", "processes and threads of user `vm` (`ulimit -u`), and "
            "in the request", whole(1, 65535), _LIMITS.processes, field="processes"),
    Setting("PBOTVM_GUEST_TIMEOUT", "wall-clock seconds of each command",
            positive, _LIMITS.wall_seconds, field="wall_seconds"),
    Setting("PBOTVM_GUEST_MEMORY_MIB", "MiB of memory of the whole request, no swap",
            whole(16, 2**31), _BOX.memory_bytes // MIB, field="memory_mib"),
    Setting("PBOTVM_GUEST_TMPFS_MIB", "MiB of the tmpfs behind /tmp, /var/tmp, /dev/shm and "
            "the home (its files count as memory)", whole(1, 2**31), _BOX.tmpfs_bytes // MIB,
            field="tmpfs_mib"),
    Setting("PBOTVM_GUEST_CPU_WEIGHT", "cgroup `cpu.weight` of a request, against other "
            "requests and guest-server", whole(1, 10000), _BOX.cpu_weight,
            field="cpu_weight"),
    logs.LOG_FORMAT,
    logs.DEBUG,
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
    def from_env(cls, env: Mapping[str, str] | None = None,
                 given: Mapping[str, Any] | None = None) -> GuestSettings:
        """From ``env`` (os.environ), where ``given`` (command-line values) does not say.
        Raises ``ConfigError``."""
        value = read(SETTINGS, os.environ if env is None else env, given)
        return cls(
            serial=value["serial"], heart=value["heart"], user=value["user"],
            vport=value["vport"], output_limit=value["output_limit"],
            limits=Limits(cpu_seconds=value["cpu_seconds"], file_bytes=1024 * value["file_kib"],
                          processes=value["processes"], wall_seconds=value["wall_seconds"]),
            box_limits=BoxLimits(memory_bytes=MIB * value["memory_mib"],
                                 tmpfs_bytes=MIB * value["tmpfs_mib"],
                                 cpu_weight=value["cpu_weight"]),
        )
