"""The host daemons' files under ``PBOTVM_STATE_DIR`` are theirs alone, whatever the umask:
files 0600, the directories they make 0700.

Another user who can open a machine's lock file can hold it (user ``vm`` on the host took it
read-only, and vm-server answered "resetting" while it did); the history store holds every
channel's code. A directory that exists is left as it is: the operator's, or one libvirt's
QEMU must enter (``pbotvm libvirt up`` checks that).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

FILE_MODE = 0o600
DIR_MODE = 0o700


def make_dir(path: Path) -> None:
    """``path`` and its missing parents, each made 0700."""
    missing = []
    while not path.exists() and path != path.parent:
        missing.append(path)
        path = path.parent
    for directory in reversed(missing):
        try:
            directory.mkdir(DIR_MODE)
        except FileExistsError:  # made meanwhile by someone else: theirs
            continue
        os.chmod(directory, DIR_MODE)  # an umask such as 0277 takes from mkdir's mode too


def open_file(path: Path, flags: int) -> int:
    """A descriptor of ``path`` (``flags`` with O_CREAT), created 0600; a file made before
    this rule, with another mode, is made 0600 (when it is ours to change)."""
    fd = os.open(path, flags | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
    try:
        if os.fstat(fd).st_mode & 0o7777 != FILE_MODE:
            with contextlib.suppress(PermissionError):
                os.fchmod(fd, FILE_MODE)
    except OSError:
        os.close(fd)
        raise
    return fd


def make_file(path: Path) -> None:
    """``path`` created 0600 if missing, else made 0600 without being opened: closing a
    descriptor of a SQLite file drops the locks that this process's connections hold on it."""
    try:
        os.close(open_file(path, os.O_RDONLY | os.O_EXCL))
    except FileExistsError:
        if path.stat().st_mode & 0o7777 != FILE_MODE:
            with contextlib.suppress(PermissionError):
                path.chmod(FILE_MODE)
