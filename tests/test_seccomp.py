"""The box's system call filter: its BPF program run by a small interpreter here (pure), its
numbers against the kernel's headers, and the filter at work in a process (root)."""

from __future__ import annotations

import ctypes
import errno
import json
import os
import platform
import re
import socket
import struct
from pathlib import Path

import pytest

from pbotvm.guest import seccomp
from pbotvm.guest.seccomp import ALLOW, ERRNO, Abi, Instruction

AUDIT_ARCH_I386 = 0x40000003
AUDIT_ARCH_ARM = 0x40000028
ENOSYS = ERRNO | errno.ENOSYS
EAFNOSUPPORT = ERRNO | errno.EAFNOSUPPORT
# The kernel's names of the numbers each table holds, in its order.
SOCKETS = ("socket", "socketpair")
ABSENT = ("add_key", "request_key", "keyctl", "io_uring_setup")
HEADERS = {"x86_64": Path("/usr/include/x86_64-linux-gnu/asm/unistd_64.h"),
           "aarch64": Path("/usr/include/asm-generic/unistd.h")}
OTHER_ABI = {"x86_64": AUDIT_ARCH_I386, "aarch64": AUDIT_ARCH_ARM}
READ = {"x86_64": 0, "aarch64": 63}


def verdict(program: list[Instruction], nr: int, arch: int, arg0: int = 0) -> int:
    """What seccomp answers for a call, run as the kernel runs classic BPF."""
    data = struct.pack("=IIQ6Q", nr, arch, 0, arg0, 0, 0, 0, 0, 0)
    accumulator, pc = 0, 0
    while True:
        instruction = program[pc]
        if instruction.code == seccomp.LD:
            (accumulator,) = struct.unpack_from("=I", data, instruction.k)
        elif instruction.code in (seccomp.JEQ, seccomp.JGE):
            taken = (accumulator == instruction.k if instruction.code == seccomp.JEQ
                     else accumulator >= instruction.k)
            pc += instruction.jt if taken else instruction.jf
        elif instruction.code == seccomp.RET:
            return instruction.k
        else:
            raise AssertionError(f"unknown instruction {instruction}")
        pc += 1


@pytest.mark.parametrize("machine", sorted(seccomp.ABIS))
def test_only_keyrings_io_uring_and_vsock_sockets_are_denied(machine: str) -> None:
    abi = seccomp.ABIS[machine]
    program = seccomp.program(abi)
    assert verdict(program, READ[machine], abi.arch) == ALLOW
    assert verdict(program, 0xFFFFFFFF, abi.arch) == ALLOW  # a call a tracer skips
    for number in abi.absent:
        assert verdict(program, number, abi.arch) == ENOSYS
    for number in abi.sockets:
        assert verdict(program, number, abi.arch, socket.AF_INET) == ALLOW
        assert verdict(program, number, abi.arch, socket.AF_UNIX) == ALLOW
        assert verdict(program, number, abi.arch, seccomp.AF_VSOCK) == EAFNOSUPPORT
        # The kernel reads the family as an int: the high half cannot hide it.
        assert verdict(program, number, abi.arch, seccomp.AF_VSOCK | 1 << 32) == EAFNOSUPPORT


@pytest.mark.parametrize("machine", sorted(seccomp.ABIS))
def test_every_call_of_another_abi_is_denied(machine: str) -> None:
    abi = seccomp.ABIS[machine]
    program = seccomp.program(abi)
    for number in (READ[machine], *abi.sockets, 0, 359, 0x40000000 | 41):
        assert verdict(program, number, OTHER_ABI[machine], seccomp.AF_VSOCK) == ENOSYS
    if abi.foreign_bit:  # x32: the native arch, numbers with the bit
        for number in (READ[machine], *abi.sockets):
            assert verdict(program, abi.foreign_bit | number, abi.arch) == ENOSYS


@pytest.mark.parametrize("machine", sorted(seccomp.ABIS))
def test_every_jump_lands_in_the_program_and_it_ends_in_a_verdict(machine: str) -> None:
    program = seccomp.program(seccomp.ABIS[machine])
    for index, instruction in enumerate(program):
        if instruction.code != seccomp.RET:
            assert index + 1 + max(instruction.jt, instruction.jf) < len(program)
    assert program[-1].code == seccomp.RET
    assert len(seccomp.pack(program)) == 8 * len(program)


@pytest.mark.parametrize("machine", sorted(seccomp.ABIS))
def test_the_numbers_are_the_kernels(machine: str) -> None:
    header = HEADERS[machine]
    if not header.exists():
        pytest.skip(f"no {header} (linux-libc-dev)")
    numbers = dict(re.findall(r"#define __NR_(\w+) (\d+)", header.read_text()))
    abi = seccomp.ABIS[machine]
    assert abi.sockets == tuple(int(numbers[name]) for name in SOCKETS)
    assert abi.absent == tuple(int(numbers[name]) for name in ABSENT)


def test_the_arch_values_are_audits() -> None:
    # AUDIT_ARCH_*: the ELF machine, 64-bit, little-endian (linux/audit.h, linux/elf-em.h).
    em = {"x86_64": 62, "aarch64": 183}
    for machine, abi in seccomp.ABIS.items():
        assert abi.arch == em[machine] | 0x80000000 | 0x40000000
    assert seccomp.ABIS["x86_64"] == Abi(arch=0xC000003E, sockets=(41, 53),
                                         absent=(248, 249, 250, 425), foreign_bit=0x40000000)


# --- in a process ---------------------------------------------------------------------------------

def _errors_under_the_filter() -> dict[str, str]:
    """Each call's outcome in a child that installed the filter: "ok" or the errno's name."""
    assert seccomp.FILTER is not None
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    abi = seccomp.ABIS[platform.machine()]
    add_key, _, keyctl, io_uring_setup = abi.absent
    params = ctypes.create_string_buffer(120)  # struct io_uring_params
    calls = {
        "keyctl": lambda: libc.syscall(ctypes.c_long(keyctl), ctypes.c_long(0),
                                       ctypes.c_long(-4), ctypes.c_long(1)),
        "add_key": lambda: libc.syscall(ctypes.c_long(add_key), b"user", b"k", b"v",
                                        ctypes.c_long(1), ctypes.c_long(-4)),
        "io_uring_setup": lambda: libc.syscall(ctypes.c_long(io_uring_setup),
                                               ctypes.c_long(1), params),
    }
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            seccomp.install(seccomp.FILTER)
            got = {name: "ok" if call() >= 0 else errno.errorcode[ctypes.get_errno()]
                   for name, call in calls.items()}
            for name, family in (("vsock", seccomp.AF_VSOCK), ("inet", socket.AF_INET)):
                try:
                    socket.socket(family, socket.SOCK_STREAM).close()
                    got[name] = "ok"
                except OSError as e:
                    got[name] = errno.errorcode[e.errno or 0]
            try:
                socket.socketpair(seccomp.AF_VSOCK)
            except OSError as e:
                got["vsock pair"] = errno.errorcode[e.errno or 0]
            socket.socketpair(socket.AF_UNIX)[0].close()
            got["unix pair"] = "ok"
            os.write(write_end, json.dumps(got).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as reader:
        outcomes: dict[str, str] = json.loads(reader.read())
    os.waitpid(pid, 0)
    return outcomes


@pytest.mark.root
@pytest.mark.skipif(seccomp.FILTER is None, reason=f"no filter for {platform.machine()}")
def test_the_filter_denies_keyrings_io_uring_and_vsock_and_nothing_else() -> None:
    assert _errors_under_the_filter() == {
        "keyctl": "ENOSYS", "add_key": "ENOSYS", "io_uring_setup": "ENOSYS",
        "vsock": "EAFNOSUPPORT", "inet": "ok", "vsock pair": "EAFNOSUPPORT",
        "unix pair": "ok"}
