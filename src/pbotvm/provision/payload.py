"""What ships into the guest, and its installation into a root file system.

An allow-list: guest-server's own code, the modules it shares with the host, the language
table and the C family's headers, taken from this very package (a checkout's ``src/pbotvm``
or an installed wheel alike). Shared by the image build and ``setup-guest``: no pip in the
guest (an operator's VM may have neither pip nor a network), just these files in a private
directory and a launcher that puts it first on ``sys.path``. The dependencies (pyserial,
click) come from the distro. Standard library only: ``setup-guest`` runs this before those
dependencies exist.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pbotvm

PACKAGE = Path(pbotvm.__file__).resolve().parent
LIBDIR = "/usr/local/lib/pbotvm"
LAUNCHER = "/usr/local/bin/guest-server"
# Relative to the package. Nothing else of it reaches the guest: not the host's daemons,
# the operator's commands, nor the image builder.
GUEST_FILES = ("__init__.py", "settings.py", "logs.py", "procs.py", "protocol.py", "text.py",
               "tokenizer.py", "langspec/*.py", "guest/*.py", "guest/cfamily/*.py",
               "guest/cfamily/include/*")
# The C family's headers go where its compilers find them, as on the original's guests.
HEADERS = "guest/cfamily/include/*"
INCLUDE_DIR = "/usr/include"
ENTRY = ("pbotvm.guest.server", "main")  # pyproject.toml's guest-server script (a test checks)


def guest_files(package: Path = PACKAGE) -> list[Path]:
    """The package's files that go into the guest, sorted."""
    return sorted({path for pattern in GUEST_FILES for path in package.glob(pattern)
                   if path.is_file()})


def launcher(module: str, func: str, python: str, libdir: str = LIBDIR) -> str:
    return (f"#!{python}\nimport sys\nsys.path.insert(0, {libdir!r})\n"
            f"from {module} import {func}\nsys.exit({func}())\n")


@dataclass(frozen=True)
class Payload:
    """Every file guest-server needs, as paths inside the target root and their contents."""

    files: dict[str, bytes]
    modes: dict[str, int]

    def changes(self, root: Path) -> list[str]:
        """Target paths that differ from the payload: missing, changed, or left over."""
        wrong = [path for path, data in self.files.items()
                 if differs(in_root(root, path), data, self.modes[path])]
        return sorted([*wrong, *self.stale(root)])

    def stale(self, root: Path) -> list[str]:
        """Modules of an earlier copy that this one no longer has (never bytecode caches)."""
        base = in_root(root, LIBDIR)
        if not base.is_dir():
            return []
        present = {"/" + str(p.relative_to(root)) for p in base.rglob("*")
                   if p.is_file() and "__pycache__" not in p.parts}
        return sorted(present - self.files.keys())

    def install(self, root: Path) -> list[str]:
        """Make the target match; returns what changed (nothing on a second run)."""
        changed = self.changes(root)
        for path in changed:
            target = in_root(root, path)
            if path in self.files:
                write(target, self.files[path], self.modes[path])
            else:
                target.unlink()
        return changed


def payload(python: str, package: Path = PACKAGE) -> Payload:
    """guest-server's files from ``package``, launched by ``python``."""
    headers = set(package.glob(HEADERS))
    files = {f"{INCLUDE_DIR}/{path.name}" if path in headers
             else f"{LIBDIR}/pbotvm/{path.relative_to(package)}": path.read_bytes()
             for path in guest_files(package)}
    modes = dict.fromkeys(files, 0o644)
    files[LAUNCHER] = launcher(*ENTRY, python).encode()
    modes[LAUNCHER] = 0o755
    return Payload(files, modes)


def in_root(root: Path, path: str) -> Path:
    """The target system's absolute ``path``, that system being mounted at ``root``."""
    return root / path.lstrip("/")


def differs(target: Path, data: bytes, mode: int) -> bool:
    """Whether ``target`` is missing, or has other content or permissions."""
    return _read(target) != data or target.stat().st_mode & 0o777 != mode


def write(target: Path, data: bytes, mode: int) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    target.chmod(mode)


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        return None
