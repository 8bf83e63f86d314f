"""Which shared libraries' symbols the gdb driver has gdb read (``guest/cfamily/symbols.py``).

The ELF cases compile real programs (gcc and g++, which ./dev setup installs); no root.
"""

import shutil
import subprocess
from pathlib import Path

import pytest

from pbotvm.guest.cfamily import symbols

# gdb 13.1's `info sharedlibrary` for a c2x program, stopped in main, symbols read lazily.
INFO_SHAREDLIBRARY = [
    "From                To                  Syms Read   Shared Object Library",
    "0x00007ffff7fcb060  0x00007ffff7ff0111  Yes (*)     /lib64/ld-linux-x86-64.so.2",
    "0x00007ffff7eef230  0x00007ffff7f623d8  No          /lib/x86_64-linux-gnu/libm.so.6",
    "0x00007ffff7807660  0x00007ffff7843fae  Yes         /lib/x86_64-linux-gnu/libubsan.so.1",
    "0x00007ffff749d1d0  0x00007ffff75995be  No          /lib/x86_64-linux-gnu/libstdc++.so.6",
    "(*): Shared library is missing debugging information.",
]


def test_the_libraries_are_read_off_gdbs_table() -> None:
    assert symbols.shared_libraries(INFO_SHAREDLIBRARY) == [
        "/lib64/ld-linux-x86-64.so.2", "/lib/x86_64-linux-gnu/libm.so.6",
        "/lib/x86_64-linux-gnu/libubsan.so.1", "/lib/x86_64-linux-gnu/libstdc++.so.6"]
    assert symbols.shared_libraries(["No shared libraries loaded at this time."]) == []


def test_only_the_cxx_runtime_is_left_unread_and_only_for_a_program_without_it() -> None:
    assert [symbols.worth_reading(path)
            for path in symbols.shared_libraries(INFO_SHAREDLIBRARY)] == [True, True, True, False]
    assert not symbols.reads_all(frozenset({"libc.so.6", "libm.so.6", "libubsan.so.1"}))
    assert symbols.reads_all(frozenset({"libstdc++.so.6", "libc.so.6"}))
    assert symbols.reads_all(None)


def test_the_read_command_names_one_library_exactly() -> None:
    assert symbols.read_command("/lib/x86_64-linux-gnu/libm.so.6") == (
        r"sharedlibrary ^/lib/x86_64-linux-gnu/libm\.so\.6$")
    assert symbols.read_command("/opt/a[1]*/b$") == r"sharedlibrary ^/opt/a\[1\]\*/b\$$"


def compiled(tmp_path: Path, compiler: str, source: str, *options: str) -> bytes:
    if shutil.which(compiler) is None:
        pytest.skip(f"needs {compiler}")
    suffix = ".cpp" if compiler == "g++" else ".c"
    (tmp_path / f"prog{suffix}").write_text(source)
    subprocess.run([compiler, f"prog{suffix}", *options, "-o", "prog"], cwd=tmp_path,
                   check=True)
    return (tmp_path / "prog").read_bytes()


def test_what_a_program_links_itself(tmp_path: Path) -> None:
    hello = "#include <stdio.h>\nint main(void) { puts(\"hi\"); }\n"
    # As c2x compiles it: UBSan's runtime brings the C++ runtime, the program does not.
    c = compiled(tmp_path, "gcc", hello, "-fsanitize=alignment,undefined", "-lm")
    assert symbols.needed_libraries(c) == {"libubsan.so.1", "libm.so.6", "libc.so.6"}
    cxx = compiled(tmp_path, "g++", "#include <iostream>\nint main() { std::cout << 1; }\n")
    needed = symbols.needed_libraries(cxx)
    assert needed is not None and "libstdc++.so.6" in needed and symbols.reads_all(needed)


def test_a_static_program_needs_nothing_and_a_broken_file_is_not_known(tmp_path: Path) -> None:
    static = compiled(tmp_path, "gcc", "int main(void) { return 0; }\n", "-static")
    assert symbols.needed_libraries(static) == frozenset()
    for broken in (b"", b"#!/bin/sh\necho hi\n", static[:64], static[:200]):
        assert symbols.needed_libraries(broken) is None
