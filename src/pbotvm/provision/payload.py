"""Put guest-server into a root file system straight from a source checkout.

Shared by the image build and ``setup-guest``: no pip and no wheel (an operator's VM may have
neither), just the package's guest files copied to a private directory and a launcher that puts
that directory first on ``sys.path``. The dependencies (pyserial, click) come from the distro.
Standard library only: ``setup-guest`` runs this before those dependencies exist.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

LIBDIR = "/usr/local/lib/pbotvm"
LAUNCHER = "/usr/local/bin/guest-server"
SCRIPT = "guest-server"


class InstallError(RuntimeError):
    """The message is shown to the operator as is."""


# The operator's commands: never run in the guest, and an edit to them must not make the
# cached image stale.
HOST_ONLY = ("host", "cli.py")


def guest_sources(repo: Path) -> list[Path]:
    """What goes into the guest: the package minus host-only code, and the project metadata."""
    package = repo / "src" / "pbotvm"
    files = [p for p in package.rglob("*.py")
             if not set(HOST_ONLY) & set(p.relative_to(package).parts)]
    return sorted([*files, repo / "pyproject.toml"])


def entry_point(pyproject: str, name: str = SCRIPT) -> tuple[str, str]:
    """``module, function`` of the console script ``name`` declared in pyproject.toml."""
    target = tomllib.loads(pyproject).get("project", {}).get("scripts", {}).get(name)
    if not isinstance(target, str) or ":" not in target:
        raise InstallError(f"pyproject.toml declares no {name} console script")
    module, _, func = target.partition(":")
    return module.strip(), func.strip()


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


def payload(repo: Path, python: str) -> Payload:
    """guest-server's files from the checkout at ``repo``, launched by ``python``."""
    pyproject = repo / "pyproject.toml"
    if not pyproject.is_file():
        raise InstallError(f"no pbotvm source checkout at {repo} (pyproject.toml is missing)")
    module, func = entry_point(pyproject.read_text())
    files = {f"{LIBDIR}/{p.relative_to(repo / 'src')}": p.read_bytes()
             for p in guest_sources(repo) if p.suffix == ".py"}
    modes = dict.fromkeys(files, 0o644)
    files[LAUNCHER] = launcher(module, func, python).encode()
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
