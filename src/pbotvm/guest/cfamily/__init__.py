"""The C family in the guest: compile the host's preprocessed code, run the program, and
report through gdb what the original's guest-gdb reported (``run.run_request``).

The package also holds prelude.h and prelude.hpp, the headers its programs are compiled with
(installed as /usr/include/prelude.h and /usr/include/prelude.hpp).
"""

from __future__ import annotations

from pathlib import Path

# The original's guest modules derived from _c_base, plus the display names the original
# only compiled (-lang=c++ and -lang=clang++ reach the guest as "c++" and "clang++").
LANGS = frozenset({"c11", "c2x", "c89", "c99", "clang", "clang11", "clang2x", "clang89",
                   "clang99", "cpp", "clangpp", "c++", "clang++"})
PRELUDES = (Path(__file__).with_name("prelude.h"), Path(__file__).with_name("prelude.hpp"))
