"""astyle, the C family's pretty-printer (the last step before sending): the guest compiles
what it prints.

It runs on a copy in a private temporary directory (the original wrote ``prog.c`` to the
shared cwd, a race between concurrent requests). astyle 3.1 resolves file names against
``$PWD``, not the real cwd, so PWD is set too. Without astyle, or when it fails, the code goes
out as it is, as in the original.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

# K&R style, unpad parentheses, pad headers and operators, no backup, break blocks, quiet.
# --options=none: a user's ~/.astylerc must not change what the guest compiles.
ASTYLE_COMMAND = ("astyle", "--options=none", "-A3", "-UHpnfq")
_TIMEOUT = 10.0


def pretty(code: str, sourcefile: str) -> str:
    """``code`` formatted by astyle as the file ``sourcefile`` (``prog.c`` or ``prog.cpp``)."""
    with tempfile.TemporaryDirectory(prefix="pbotvm-astyle-") as directory:
        path = Path(directory, Path(sourcefile).name)
        with path.open("w", encoding="utf-8", newline="") as file:
            file.write(code)
        try:
            done = subprocess.run(
                [*ASTYLE_COMMAND, path.name], cwd=directory, env={**os.environ, "PWD": directory},
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                timeout=_TIMEOUT, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return code
        if done.returncode != 0:
            return code
        with path.open(encoding="utf-8", errors="replace", newline="") as file:
            return file.read()
