"""The system calls no process of a request may make, as a seccomp filter: the kernel's keyrings
(a user's keyrings outlive its processes, the persistent one by days, so one request could
leave keys for the next), vsock sockets (guest-server listens there, and only the host may send
it requests), io_uring (it makes sockets without the socket system call, where no filter sees
them) and any system call of another ABI (on x86_64, ``int 0x80`` reaches the 32-bit table,
whose numbers the checks below do not name).

Classic BPF, written out for the architectures we know; on another there is no filter, and
guest-server says so once at start-up. A denied call fails as on a kernel built without the
feature, so programs take their usual way around it: ENOSYS for keyrings, io_uring and another
ABI, EAFNOSUPPORT for the vsock family.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import struct
from dataclasses import dataclass

AF_VSOCK = 40

# Classic BPF, as seccomp runs it over struct seccomp_data.
LD = 0x20  # BPF_LD | BPF_W | BPF_ABS: A = the 32-bit word at offset k
JEQ = 0x15  # BPF_JMP | BPF_JEQ | BPF_K: A == k ?
JGE = 0x35  # BPF_JMP | BPF_JGE | BPF_K: A >= k ?
RET = 0x06  # BPF_RET | BPF_K: the verdict k
NR, ARCH, ARG0 = 0, 4, 16  # seccomp_data offsets; ARG0 is args[0]'s low half (little-endian)
ALLOW = 0x7FFF0000  # SECCOMP_RET_ALLOW
ERRNO = 0x00050000  # SECCOMP_RET_ERRNO, the error number in the low 16 bits

_PR_SET_SECCOMP = 22
_SECCOMP_MODE_FILTER = 2
_libc = ctypes.CDLL(None, use_errno=True)


@dataclass(frozen=True)
class Abi:
    """An architecture's native system call ABI, as far as the filter needs it."""

    arch: int  # AUDIT_ARCH_*, seccomp_data.arch of a native call
    sockets: tuple[int, ...]  # socket, socketpair: the family is their first argument
    absent: tuple[int, ...]  # add_key, request_key, keyctl, io_uring_setup
    foreign_bit: int = 0  # a number with this bit is another ABI's (x32 on x86_64)


ABIS = {
    "x86_64": Abi(arch=0xC000003E, sockets=(41, 53), absent=(248, 249, 250, 425),
                  foreign_bit=0x40000000),
    "aarch64": Abi(arch=0xC00000B7, sockets=(198, 199), absent=(217, 218, 219, 425)),
}


@dataclass(frozen=True)
class Instruction:
    """struct sock_filter: jt and jf count the instructions to skip."""

    code: int
    jt: int
    jf: int
    k: int


def program(abi: Abi) -> list[Instruction]:
    """Allow every call but those the module names."""
    # (label, code, k, label if true, label if false); "" is the next instruction.
    lines = [
        ("", LD, ARCH, "", ""),
        ("", JEQ, abi.arch, "", "absent"),
        ("", LD, NR, "", ""),
        *([("", JGE, abi.foreign_bit, "foreign", "")] if abi.foreign_bit else []),
        *[("", JEQ, number, "absent", "") for number in abi.absent],
        *[("", JEQ, number, "family", "") for number in abi.sockets],
        ("", RET, ALLOW, "", ""),
        ("family", LD, ARG0, "", ""),  # the kernel takes the family as an int
        ("", JEQ, AF_VSOCK, "", "allow"),
        ("", RET, ERRNO | errno.EAFNOSUPPORT, "", ""),
        # -1 is no call but a tracer skipping one, whose return value an errno would replace.
        *([("foreign", JEQ, 0xFFFFFFFF, "allow", "absent")] if abi.foreign_bit else []),
        ("allow", RET, ALLOW, "", ""),
        ("absent", RET, ERRNO | errno.ENOSYS, "", ""),
    ]
    where = {label: index for index, (label, *_) in enumerate(lines) if label}

    def skip(index: int, label: str) -> int:
        return where[label] - index - 1 if label else 0

    return [Instruction(code, skip(index, true), skip(index, false), k)
            for index, (_, code, k, true, false) in enumerate(lines)]


def pack(instructions: list[Instruction]) -> bytes:
    return b"".join(struct.pack("=HBBI", i.code, i.jt, i.jf, i.k) for i in instructions)


class _Program(ctypes.Structure):  # struct sock_fprog
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_char_p)]


MACHINE = platform.machine()
# None where no table is written: requests run without a filter there.
FILTER = pack(program(ABIS[MACHINE])) if MACHINE in ABIS else None


def install(packed: bytes) -> None:
    """Filter this process and every process it starts from now on, for good. As root, so
    no_new_privs is not needed (and set-user-ID programs keep working as before)."""
    fprog = _Program(len(packed) // 8, packed)
    if _libc.prctl(_PR_SET_SECCOMP, ctypes.c_ulong(_SECCOMP_MODE_FILTER), ctypes.byref(fprog),
                   ctypes.c_ulong(0), ctypes.c_ulong(0)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"seccomp filter: {os.strerror(err)}")
