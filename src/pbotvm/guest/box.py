"""Each request's box: what it sees of the guest. Namespaces of its own: mounts, where
everything is read-only but one fresh tmpfs, shown at /tmp, /var/tmp, /dev/shm and the user's
home, and the directories root itself writes to during a request (the persist-key storage, the
precompiled preludes: not the user's to write); IPC; PIDs, so that its /proc shows its own
processes alone, which no other request can see or signal; and a network with loopback alone,
so nothing of the guest's (or, on the PTY VM, the host's) is in reach. Every process in it runs
under the system call filter (``seccomp``): no keyrings, no vsock. Nothing a program makes
outlives its request: the namespaces, and the tmpfs with them, go with its last process.

The server forks each supervisor into a PID namespace of its own (``fork``), whose first
process it is; the supervisor enters the rest before its request comes (``shut_in``), so that
every process of the request runs in it. guest-server tries it once at start-up
(``available``) and says in one log line what a request gets, or why it cannot be had (no
CAP_SYS_ADMIN, Linux before 5.12): requests then share those directories, the processes and
the network, as under the original.
"""

from __future__ import annotations

import ctypes
import fcntl
import logging
import os
import socket
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pbotvm.guest import seccomp

log = logging.getLogger("pbotvm.guest")

STAGING = Path("/run/pbotvm/box")  # where the tmpfs is made, before it is shown in its places
PAGE = 4096

_CLONE_NEWNS = 0x00020000
_CLONE_NEWIPC = 0x08000000  # System V IPC objects and POSIX message queues outlive processes
_CLONE_NEWNET = 0x40000000
_CLONE_NEWPID = 0x20000000
_MS_NOSUID = 0x2
_MS_NODEV = 0x4
_MS_BIND = 0x1000
_MS_REC = 0x4000
_MS_PRIVATE = 0x40000
_MS_NOEXEC = 0x8
_MNT_DETACH = 0x2
_MOUNT_ATTR_RDONLY = 0x1
_AT_FDCWD = -100
_AT_RECURSIVE = 0x8000
_SYS_MOUNT_SETATTR = 442  # the same number on every architecture that has it
_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1
_IFREQ = struct.Struct("16sH22x")  # struct ifreq: the name, then ifr_flags in a 24-byte union
_libc = ctypes.CDLL(None, use_errno=True)


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


@dataclass(frozen=True)
class Place:
    """One place where the tmpfs is shown."""

    name: str  # its directory in the tmpfs
    path: Path
    mode: int
    users: bool  # owned by the user (the home), else by root


def places(home: Path) -> list[Place]:
    shared = 0o1777  # anyone may create, only the owner may remove: as /tmp always is
    return [Place("tmp", Path("/tmp"), shared, users=False),
            Place("var-tmp", Path("/var/tmp"), shared, users=False),
            Place("shm", Path("/dev/shm"), shared, users=False),
            Place("home", home, 0o755, users=True)]


def tmpfs_options(size: int) -> str:
    # At most one file per page, so that inodes are bounded too where no cgroup counts them.
    return f"size={size},nr_inodes={max(size // PAGE, 1024)},mode=0755"


def shut_in(home: Path, uid: int, gid: int, tmpfs_bytes: int,
            writable: Sequence[Path] = (), visible: Sequence[Path] = ()) -> None:
    """Enter a fresh box (see the module's docstring) as root: ``home`` becomes the user's
    (``uid``, ``gid``), each directory of ``writable`` that exists stays as it is, and
    writable for root, and each of ``visible`` stays readable where a place would hide it
    (guest-server's own code, which gdb's driver imports, in a checkout under /tmp).

    The caller is the first process of the PID namespace ``fork`` made."""
    STAGING.mkdir(parents=True, exist_ok=True)
    covered = [place.path for place in places(home)]
    kept = [(path, False) for path in writable if path.is_dir()] + [
        (path, True) for path in visible
        if path.is_dir() and any(path.is_relative_to(place) for place in covered)]
    _unshare(_CLONE_NEWNS | _CLONE_NEWIPC, "mount and IPC namespaces")
    _mount(None, Path("/"), None, _MS_REC | _MS_PRIVATE)  # nothing of ours reaches the host
    _set_read_only(Path("/"), read_only=True, recursive=True)
    _mount("tmpfs", STAGING, "tmpfs", _MS_NOSUID | _MS_NODEV, tmpfs_options(tmpfs_bytes))
    held = []
    for index, (path, read_only) in enumerate(kept):
        # Held before the places cover it (a test's persist storage may be under /tmp).
        holder = STAGING / f"kept-{index}"
        holder.mkdir(mode=0o700)
        _mount(str(path), holder, None, _MS_BIND)
        _set_read_only(holder, read_only=read_only)
        held.append(holder)
    for place in places(home):
        if not place.path.is_dir():
            continue  # e.g. no /dev/shm: there is nothing there to share either
        directory = STAGING / place.name
        directory.mkdir()
        directory.chmod(place.mode)
        if place.users:
            os.chown(directory, uid, gid)
        _mount(str(directory), place.path, None, _MS_BIND)
    for holder, (path, _) in zip(held, kept, strict=True):
        path.mkdir(parents=True, exist_ok=True)  # in the tmpfs when it was under a place
        _mount(str(holder), path, None, _MS_BIND)
    _umount(STAGING, _MNT_DETACH)
    _unshare(_CLONE_NEWNET, "network namespace")
    _loopback_up()
    # The PID namespace's own /proc, over the guest's, which showed every process. Not in
    # place of it: an unmount waits for an RCU grace period, 1-2 ms. Writable: a process may
    # write its own /proc files (sandbox gives each its OOM score).
    _mount("proc", Path("/proc"), "proc", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC)
    if seccomp.FILTER is not None:
        seccomp.install(seccomp.FILTER)


def _loopback_up() -> None:
    """A new network namespace has loopback, down."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            _, flags = _IFREQ.unpack(fcntl.ioctl(sock, _SIOCGIFFLAGS, _IFREQ.pack(b"lo", 0)))
            fcntl.ioctl(sock, _SIOCSIFFLAGS, _IFREQ.pack(b"lo", flags | _IFF_UP))
    except OSError as e:
        raise OSError(e.errno, f"loopback up: {e.strerror}") from None


def fork() -> int:
    """``os.fork``, the child the first process of a new PID namespace: the box's. When it
    exits, the kernel kills whatever is left in it. This process's later children are born
    in its own namespace again."""
    own = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    try:
        _unshare(_CLONE_NEWPID, "PID namespace")
        pid = -1
        try:
            pid = os.fork()
        finally:
            if pid != 0:
                _check(_libc.setns(own, _CLONE_NEWPID), "setns to our PID namespace")
        return pid
    finally:
        os.close(own)


def available(home: Path, uid: int, gid: int, tmpfs_bytes: int,
              writable: Sequence[Path] = (), visible: Sequence[Path] = ()) -> bool:
    """Whether ``shut_in`` works here (tried in a child process); one log line says what a
    request gets, or why it gets none of it."""
    read_end, write_end = os.pipe()
    try:
        pid = fork()
    except OSError as e:
        os.close(read_end)
        os.close(write_end)
        _unavailable(_why(e), home)
        return False
    if pid == 0:
        os.close(read_end)
        code = 1
        try:
            shut_in(home, uid, gid, tmpfs_bytes, writable, visible)
            code = 0
        except BaseException as e:
            os.write(write_end, _why(e).encode())
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as reasons:
        reason = reasons.read().decode(errors="replace")
    code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    if code == 0:
        log.info("box: each request in its own mount, IPC, PID and network (loopback only) "
                 "namespaces, %s, a %d MiB tmpfs at /tmp, /var/tmp, /dev/shm and %s, "
                 "everything else read-only",
                 "without keyrings, vsock or io_uring" if seccomp.FILTER is not None
                 else f"no system call filter for {seccomp.MACHINE} (keyrings and vsock open)",
                 tmpfs_bytes >> 20, home)
        return True
    _unavailable(reason or f"status {code}", home)
    return False


def _why(e: BaseException) -> str:
    # Our OSErrors name the step that failed; "[Errno 1]" would say nothing more.
    return e.strerror if isinstance(e, OSError) and e.strerror else str(e)


def _unavailable(reason: str, home: Path) -> None:
    log.warning("box: unavailable (%s): /tmp, /var/tmp, /dev/shm and %s, the guest's "
                "processes, network, keyrings and vsock are open to all requests", reason, home)


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _unshare(flags: int, what: str) -> None:
    _check(_libc.unshare(flags), what)


def _mount(source: str | None, target: Path, fstype: str | None, flags: int,
           data: str | None = None) -> None:
    _check(_libc.mount(source and source.encode(), str(target).encode(),
                       fstype and fstype.encode(), ctypes.c_ulong(flags),
                       data and data.encode()), f"mount {target}")


def _umount(target: Path, flags: int) -> None:
    _check(_libc.umount2(str(target).encode(), flags), f"umount {target}")


def _set_read_only(path: Path, *, read_only: bool, recursive: bool = False) -> None:
    attr = _MountAttr(attr_set=_MOUNT_ATTR_RDONLY if read_only else 0,
                      attr_clr=0 if read_only else _MOUNT_ATTR_RDONLY)
    _check(_libc.syscall(_SYS_MOUNT_SETATTR, _AT_FDCWD, str(path).encode(),
                         _AT_RECURSIVE if recursive else 0, ctypes.byref(attr),
                         ctypes.sizeof(attr)), f"mount_setattr {path}")
