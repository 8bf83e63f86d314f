"""Whether gdb would name an address of a program (``(int *) 0x555555558010 <g>``): read from
the program's ELF symbol table, as gdb's minimal symbols are.

gdb looks for a symbol only within the section that holds the address: the last symbol of that
section at or before it names it when the symbol's size covers it, and a symbol of no size is
a label gdb may use at any distance. "No name" here only when no symbol of that section covers
the address and no label of it comes before: then gdb has none to print either; otherwise
the printer leaves the value to gdb.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

_SHF_ALLOC = 0x2
_SHT_SYMTAB = 2
_STT_SECTION, _STT_FILE = 3, 4
_PT_LOAD = 1


@dataclass(frozen=True)
class Program:
    first_load: int  # the lowest PT_LOAD address: 0 for a position-independent program
    sections: tuple[tuple[int, int, int], ...]  # (start, end, index) of allocated sections
    symbols: tuple[tuple[int, int, int], ...]  # (value, size, section index)

    def may_name(self, address: int) -> bool:
        """Whether gdb may print a symbol after this address (relative to ``first_load``'s
        base: the address as the ELF file has it)."""
        index = next((i for start, end, i in self.sections if start <= address < end), None)
        if index is None:
            return False
        # gdb takes the last symbol before the address, or a label after a symbol that
        # ends short of it; any symbol that covers the address, or label before it, may do.
        return any(value <= address and (size == 0 or address < value + size)
                   for value, size, shndx in self.symbols if shndx == index)


def read(path: Path) -> Program | None:
    """The program's sections and symbols; None for anything but a 64-bit little-endian ELF
    file with a symbol table."""
    try:
        data = path.read_bytes()
        if data[:6] != b"\x7fELF\x02\x01":
            return None
        (phoff, shoff) = struct.unpack_from("<QQ", data, 0x20)
        phentsize, phnum, shentsize, shnum = struct.unpack_from("<HHHH", data, 0x36)
        loads = []
        for k in range(phnum):
            p_type, _, _, p_vaddr = struct.unpack_from("<IIQQ", data, phoff + k * phentsize)
            if p_type == _PT_LOAD:
                loads.append(p_vaddr)
        headers = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + k * shentsize)
                   for k in range(shnum)]
        sections = tuple((h[3], h[3] + h[5], k) for k, h in enumerate(headers)
                         if h[2] & _SHF_ALLOC and h[5])
        symtab = next((h for h in headers if h[1] == _SHT_SYMTAB), None)
        if symtab is None or not loads:
            return None
        offset, size, entsize = symtab[4], symtab[5], symtab[9]
        symbols = []
        for at in range(offset, offset + size, entsize):
            _, info, _, shndx, value, sym_size = struct.unpack_from("<IBBHQQ", data, at)
            if info & 0xF not in (_STT_SECTION, _STT_FILE) and shndx:
                symbols.append((value, sym_size, shndx))
        return Program(min(loads), sections, tuple(symbols))
    except (OSError, struct.error):
        return None
