"""Which shared libraries' symbols gdb reads for a program it runs.

gdb reads the symbols of every library a program loads before the program reaches main. A C
program compiled with ``-fsanitize=undefined`` loads the C++ runtime with UBSan's runtime,
and reading (demangling) its symbols was most of what a gdb run cost beyond gdb's start
(measured for a c2x program: under TCG 2.2-2.9 s reading every library's, 1.4-2.0 s reading
libc's alone; natively, without libc's debugging package, 200 against 135 ms reading all but
the C++ runtime's). The program itself never runs C++ code, so its reports cannot name any.
The driver has gdb read the symbols of the other libraries at every stop, before it looks at
anything, and the C++ runtime's only when the program links it itself (a C++ program).
"""

from __future__ import annotations

import mmap
import re
import struct
from collections.abc import Iterable

CXX_RUNTIME = "libstdc++.so"

_ELF_MAGIC = b"\x7fELF"
_ELFCLASS64 = 2
_ELFDATA2LSB = 1
_PT_LOAD = 1
_PT_DYNAMIC = 2
_DT_NULL = 0
_DT_NEEDED = 1
_DT_STRTAB = 5
_Elf = bytes | mmap.mmap
# Characters special in the basic regular expressions of gdb's `sharedlibrary REGEX`.
_REGEX_SPECIAL = re.compile(r"([.\[\]*^$\\])")


def needed_libraries(elf: _Elf) -> frozenset[str] | None:
    """The DT_NEEDED names of a 64-bit little-endian ELF file (a program as our compilers
    build it); None when ``elf`` is not one or does not read as one."""
    try:
        return _needed(elf)
    except (struct.error, IndexError, UnicodeDecodeError):
        return None


def _needed(elf: _Elf) -> frozenset[str] | None:
    if elf[:4] != _ELF_MAGIC or elf[4] != _ELFCLASS64 or elf[5] != _ELFDATA2LSB:
        return None
    phoff, = struct.unpack_from("<Q", elf, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", elf, 0x36)
    loads: list[tuple[int, int, int]] = []  # (vaddr, offset, size in the file)
    dynamic: tuple[int, int] | None = None  # (offset, size)
    for index in range(phnum):
        p_type, _, p_offset, p_vaddr, _, p_filesz = struct.unpack_from(
            "<IIQQQQ", elf, phoff + index * phentsize)
        if p_type == _PT_LOAD:
            loads.append((p_vaddr, p_offset, p_filesz))
        elif p_type == _PT_DYNAMIC:
            dynamic = (p_offset, p_filesz)
    if dynamic is None:
        return frozenset()  # statically linked
    names: list[int] = []
    strtab: int | None = None
    offset, size = dynamic
    for entry in range(offset, offset + size - 15, 16):
        tag, value = struct.unpack_from("<qQ", elf, entry)
        if tag == _DT_NULL:
            break
        if tag == _DT_NEEDED:
            names.append(value)
        elif tag == _DT_STRTAB:
            strtab = next((value - vaddr + file_offset for vaddr, file_offset, filesz in loads
                           if vaddr <= value < vaddr + filesz), None)
    if strtab is None:
        return None if names else frozenset()
    return frozenset(_string_at(elf, strtab + name) for name in names)


def _string_at(elf: _Elf, offset: int) -> str:
    end = elf.find(b"\0", offset)
    if end < 0:
        raise IndexError(offset)
    return elf[offset:end].decode()


def shared_libraries(info_lines: Iterable[str]) -> list[str]:
    """The paths in ``info sharedlibrary``'s table (``From To Syms-Read Path`` rows)."""
    paths = []
    for line in info_lines:
        words = line.split()
        if words and words[-1].startswith("/"):
            paths.append(words[-1])
    return paths


def reads_all(needed: frozenset[str] | None) -> bool:
    """Whether gdb reads every library's symbols as it loads it (as it would by itself) for a
    program that needs ``needed`` itself (None: not known)."""
    return needed is None or any(name.startswith(CXX_RUNTIME) for name in needed)


def worth_reading(path: str) -> bool:
    """Whether gdb should read the symbols of the library at ``path`` for a program that
    does not need the C++ runtime itself."""
    return not path.rsplit("/", 1)[-1].startswith(CXX_RUNTIME)


def read_command(path: str) -> str:
    """The gdb command that reads the symbols of the library at ``path`` and no other."""
    escaped = _REGEX_SPECIAL.sub(r"\\\1", path)
    return f"sharedlibrary ^{escaped}$"
