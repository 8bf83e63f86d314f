"""``sh`` is bash for the programs we run, as on the original's reference guests (Fedora,
openSUSE), whose /bin/sh is bash: snippets rely on it (``echo $((2**10))``). A directory put
first on the programs' PATH holds ``sh -> /bin/bash``; bash started as ``sh`` runs in POSIX
mode, as it does there. The system's own /bin/sh is left alone.
"""

from __future__ import annotations

import os
from pathlib import Path

SHIM_DIR = Path("/run/pbotvm/bin")
BASH = "/bin/bash"


def ensure(directory: Path = SHIM_DIR) -> None:
    """Create the directory and its link if they are missing (root, at start-up)."""
    link = directory / "sh"
    if os.path.islink(link) and os.readlink(link) == BASH:
        return
    directory.mkdir(mode=0o755, parents=True, exist_ok=True)
    temporary = directory / f".sh.{os.getpid()}"
    temporary.unlink(missing_ok=True)
    temporary.symlink_to(BASH)
    temporary.replace(link)  # atomic: a program starting now sees the old or the new link
