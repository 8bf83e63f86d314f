"""What a request may use, as data: the original's limits on each command it runs, and the
limits its box puts on all its processes together. guest-server reads them from its
environment (``guest.settings``)."""

from __future__ import annotations

from dataclasses import dataclass, replace

MIB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    """Each command's: the original's ``ulimit -f 2000; ulimit -t 8; ulimit -u 200`` and its
    60 s time-out."""

    cpu_seconds: int = 8
    file_bytes: int = 2000 * 1024
    processes: int = 200
    wall_seconds: float = 60.0


# A compiler's CPU and wall-clock time: the original's 60 s time-out (it had no ulimits for
# compilers), and room for an object file with a big initialised array.
COMPILE = Limits(cpu_seconds=60, file_bytes=64 * MIB, wall_seconds=60.0)


def compile_limits(program: Limits) -> Limits:
    """What a compile of any language may use: ``COMPILE``, within the request's process
    limit. javac's, ghc's and clang++'s first compile take more than a program's 8 s of CPU
    under TCG."""
    return replace(COMPILE, processes=program.processes)


@dataclass(frozen=True)
class BoxLimits:
    """The whole request's (every process of it at once), which the original did not have:
    memory (its cgroup, no swap), the one tmpfs behind /tmp, /var/tmp, /dev/shm and the home
    (whose pages count as memory too), and its CPU share against other requests and
    guest-server (cgroup v2 ``cpu.weight``, 1-10000; 100 is the kernel's default)."""

    memory_bytes: int = 512 * MIB
    tmpfs_bytes: int = 128 * MIB
    cpu_weight: int = 100
