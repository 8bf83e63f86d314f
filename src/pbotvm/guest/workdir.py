"""The per-request work directory under the user's home, and persist-key storage.

Everything here runs as root in the request's supervisor. The directory stays root-owned
(mode 0700) until its files are written, so no other process of the user can plant a
symlink for root to write through; only then is it handed to the user.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import pwd
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

log = logging.getLogger("pbotvm.guest")

PERSIST_ROOT = Path("/root/factdata")
PERSIST_DEVICE = Path("/dev/vdb1")  # the original's data disk for persistent factoids


@contextlib.contextmanager
def work_directory(user: pwd.struct_passwd, files: Mapping[str, bytes],
                   persist_key: str | None = None,
                   persist_root: Path = PERSIST_ROOT) -> Iterator[Path]:
    """A directory holding ``files``, owned by ``user``; removed afterwards.

    Without a persist key it is fresh and unique. With one it is ``<home>/<key>``, filled from
    ``<persist_root>/<key>`` and saved back there afterwards. Callers must have stopped the
    user's processes before leaving the block.
    """
    bad = bad_name(files, persist_key)
    if bad is not None:
        raise ValueError(f"bad file name {bad!r}")
    with _taking_turns(persist_key, persist_root):
        path = _create(Path(user.pw_dir), persist_key, persist_root)
        try:
            for name, content in files.items():
                _write_new(path, name, content)
            _chown_tree(path, user.pw_uid, user.pw_gid)
            path.chmod(0o755)
            yield path
        finally:
            try:
                if persist_key:
                    # Closed to the user again first: another request's process must not
                    # swap entries for symlinks while root copies.
                    os.chown(path, 0, 0)
                    path.chmod(0o700)
                    _save(path, persist_root / persist_key)
            finally:
                _remove(path)


def bad_name(files: Iterable[str], persist_key: str | None) -> str | None:
    """The first name that is not a plain directory entry (``..`` would be the parent)."""
    for name in (*files, *([persist_key] if persist_key else [])):
        if name in ("", ".", "..") or "/" in name or "\0" in name:
            return name
    return None


@contextlib.contextmanager
def _taking_turns(persist_key: str | None, persist_root: Path) -> Iterator[None]:
    """Requests with a persist key run one at a time (they are rare): two with the same key
    would share one directory. The lock is the storage directory itself, which no key
    can name."""
    if not persist_key:
        yield
        return
    _mount_persist_device(persist_root)
    fd = os.open(persist_root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _create(home: Path, persist_key: str | None, persist_root: Path) -> Path:
    if not persist_key:
        return Path(tempfile.mkdtemp(prefix="run-", dir=home))
    path = home / persist_key
    _remove(path)
    path.mkdir(mode=0o700)
    source = persist_root / persist_key
    try:
        if source.is_dir():
            shutil.copytree(source, path, symlinks=True, dirs_exist_ok=True,
                            copy_function=_copy_regular_file)
            path.chmod(0o700)  # copytree copied the saved mode; stay closed until handed over
    except BaseException:
        _remove(path)  # a half restore must not be saved back over the good copy
        raise
    return path


def _write_new(directory: Path, name: str, content: bytes) -> None:
    target = directory / name
    _remove(target)  # a restored directory may hold a file or link of that name
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(content)


def _chown_tree(path: Path, uid: int, gid: int) -> None:
    os.chown(path, uid, gid)
    for parent, dirs, names in os.walk(path):
        for name in dirs + names:
            os.chown(os.path.join(parent, name), uid, gid, follow_symlinks=False)


def _copy_regular_file(src: str, dst: str) -> None:
    """copytree's copy function: only regular files (a FIFO would block the copy for ever)."""
    if stat.S_ISREG(os.lstat(src).st_mode):
        shutil.copy2(src, dst, follow_symlinks=False)


def _save(path: Path, target: Path) -> None:
    """Replace ``target`` with a copy of ``path`` (its contents, not ``path`` inside it)."""
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    shutil.copytree(path, staging, symlinks=True, dirs_exist_ok=True,
                    copy_function=_copy_regular_file)
    _remove(target)
    staging.rename(target)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        remove_tree(path)
    else:
        path.unlink(missing_ok=True)


_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def remove_tree(path: Path) -> None:
    """Remove a directory tree of any depth, never following a symlink.

    A program can leave a tree thousands of levels deep: ``shutil.rmtree`` recurses (and
    fails past Python's recursion limit), and holding a descriptor per level would run out of
    descriptors. This walks with one descriptor, down by name and back up by ``..``, which
    is safe because nothing of the user's runs any more; each step up is checked against
    the directory it came from.
    """
    fd = os.open(path, _DIRECTORY)
    # Per level: the directory's inode, its name in its parent, its subdirectories left.
    stack: list[tuple[int, str, list[str]]] = [(os.fstat(fd).st_ino, "", _clear_files(fd))]
    try:
        while stack:
            _, _, pending = stack[-1]
            if pending:
                name = pending.pop()
                child = os.open(name, _DIRECTORY, dir_fd=fd)
                os.close(fd)
                fd = child
                stack.append((os.fstat(fd).st_ino, name, _clear_files(fd)))
                continue
            _, name, _ = stack.pop()
            if not stack:
                break
            parent = os.open("..", _DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = parent
            if os.fstat(fd).st_ino != stack[-1][0]:
                raise OSError(f"{path}: the tree changed while it was being removed")
            os.rmdir(name, dir_fd=fd)
    finally:
        os.close(fd)
    os.rmdir(path)


def _clear_files(fd: int) -> list[str]:
    """Unlink everything in the directory but its subdirectories, which it returns."""
    subdirectories = []
    with os.scandir(fd) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                subdirectories.append(entry.name)
            else:
                os.unlink(entry.name, dir_fd=fd)
    return subdirectories


def _mount_persist_device(root: Path) -> None:
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        is_block = stat.S_ISBLK(PERSIST_DEVICE.stat().st_mode)
    except FileNotFoundError:
        return
    if is_block and not os.path.ismount(root):
        done = subprocess.run(["mount", str(PERSIST_DEVICE), str(root)], capture_output=True,
                              text=True, check=False)
        if done.returncode:
            log.warning("cannot mount %s on %s: %s", PERSIST_DEVICE, root, done.stderr.strip())
