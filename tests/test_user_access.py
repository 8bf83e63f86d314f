"""What user vm must be able to read and run, checked before guest-server starts: the pure
rules, then the check itself and the refusals of guest-server and the PTY VM, with this package
copied into a directory only root enters (as a venv under /root, or a checkout in a
``mktemp -d`` directory)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from pbotvm.guest import user_access
from pbotvm.guest.cfamily import gdb_ahead, pch
from pbotvm.guest.user_access import ENTER, READ, RUN, Need
from pbotvm.provision.payload import PACKAGE
from tests.support.stack import free_port

BIN = Path(sys.executable).parent


def test_the_package_modules_a_source_imports() -> None:
    source = ("import os\nimport pbotvm.text\nfrom pbotvm.guest.cfamily import channel, symbols"
              "\nfrom . import here\nfrom json import loads\n")
    assert user_access.imported_modules(source) == {
        "pbotvm", "pbotvm.text", "pbotvm.guest", "pbotvm.guest.cfamily",
        "pbotvm.guest.cfamily.channel", "pbotvm.guest.cfamily.symbols"}


def test_the_code_gdbs_driver_imports_is_found_in_its_files() -> None:
    package = PACKAGE / "guest" / "cfamily"
    assert user_access.driver_imports(gdb_ahead.DRIVER) == sorted([
        PACKAGE / "__init__.py", PACKAGE / "guest" / "__init__.py", package / "__init__.py",
        package / "channel.py", package / "guest_gdb.py", package / "symbols.py"])


def test_the_c_family_brings_gdb_and_its_driver() -> None:
    programs = {"gcc": "/usr/bin/gcc", "gdb": "/usr/bin/gdb", "python3": "/usr/bin/python3"}
    wanted = user_access.needs(programs.get)
    assert wanted[0] == Need(gdb_ahead.DRIVER, "gdb's driver", READ)
    assert {need.path for need in wanted} >= {
        *pch.OUR_HEADERS, pch.PCH_DIR, Path("/usr/bin/gdb"), Path("/usr/bin/gcc"),
        Path("/usr/bin/python3"), *user_access.driver_imports(gdb_ahead.DRIVER)}
    assert Need(pch.PCH_DIR, "the precompiled preludes", ENTER) in wanted
    assert Need(Path("/usr/bin/python3"), "python3, for python3", RUN) in wanted
    assert len([need for need in wanted if need.path == Path("/usr/bin/gcc")]) == 1
    without_c = user_access.needs({"python3": "/usr/bin/python3"}.get)
    assert without_c == [Need(Path("/usr/bin/python3"), "python3, for python3", RUN)]


def test_the_first_directory_in_the_way_is_named() -> None:
    closed = {Path("/root")}
    unreadable = {Path("/srv/x")}

    def allowed(path: Path, mode: int) -> bool:
        if path in unreadable:
            return False
        return not any(step in closed for step in (path, *path.parents))

    assert user_access.obstacle(Path("/root/v/a.py"), os.R_OK, allowed) == Path("/root")
    assert user_access.obstacle(Path("/srv/x"), os.R_OK, allowed) == Path("/srv/x")
    assert user_access.obstacle(Path("/srv/y"), os.R_OK, allowed) is None
    need = Need(Path("/root/v/a.py"), "gdb's driver", READ)
    assert user_access.first_refusal("vm", [need], allowed, lambda path: "drwx------ root:root"
                                     ) == ("user vm cannot read /root/v/a.py (gdb's driver): "
                                           "/root is drwx------ root:root")
    assert user_access.refusal("vm", need, need.path, "-rw------- root:root") == (
        "user vm cannot read /root/v/a.py (gdb's driver): it is -rw------- root:root")


# --- as root, with real processes ---------------------------------------------------------------

@pytest.fixture
def closed_copy() -> Iterator[Path]:
    """This package copied into a directory only root enters, in one anyone may enter; yields
    the closed directory (its ``pbotvm`` is the copy)."""
    open_dir = Path(tempfile.mkdtemp(prefix="pbotvm-access-"))
    try:
        open_dir.chmod(0o755)
        closed = open_dir / "closed"
        closed.mkdir()
        closed.chmod(0o700)
        shutil.copytree(PACKAGE, closed / "pbotvm",
                        ignore=shutil.ignore_patterns("__pycache__"))
        yield closed
    finally:
        shutil.rmtree(open_dir)


def _driver(closed: Path) -> Path:
    return closed / "pbotvm" / "guest" / "cfamily" / "gdb_driver.py"


@pytest.mark.root
def test_the_check_names_what_vm_cannot_read_and_why(closed_copy: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    driver = _driver(closed_copy)
    monkeypatch.setattr(gdb_ahead, "DRIVER", driver)
    assert user_access.problem("vm") == (
        f"user vm cannot read {driver} (gdb's driver): {closed_copy} is drwx------ root:root")
    closed_copy.chmod(0o755)
    driver.chmod(0o600)
    assert user_access.problem("vm") == (
        f"user vm cannot read {driver} (gdb's driver): it is -rw------- root:root")
    driver.chmod(0o644)
    assert user_access.problem("vm") is None
    missing = closed_copy / "nothing.py"
    monkeypatch.setattr(gdb_ahead, "DRIVER", missing)
    assert user_access.problem("vm") == f"{missing} (gdb's driver) does not exist"


def _refusal(argv: list[str], closed: Path) -> subprocess.CompletedProcess[str]:
    """``argv`` run with the closed copy first on its path, as if installed there."""
    return subprocess.run(argv, env={**os.environ, "PYTHONPATH": str(closed)},
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30,
                          check=False)


@pytest.mark.root
def test_guest_server_refuses_to_start_in_one_line(closed_copy: Path, tmp_path: Path) -> None:
    done = _refusal([str(BIN / "guest-server"), "--serial", str(tmp_path / "serial"),
                     "--heart", str(tmp_path / "heart"), "--no-vsock"], closed_copy)
    assert done.returncode == 1
    assert done.stderr.splitlines()[-1] == (
        f"Error: user vm cannot read {_driver(closed_copy)} (gdb's driver): {closed_copy} is "
        "drwx------ root:root")


@pytest.mark.root
def test_the_pty_vm_refuses_to_start_in_one_line(closed_copy: Path) -> None:
    done = _refusal([str(BIN / "pbotvm"), "pty", "run", "--serial", str(free_port()),
                     "--heart", str(free_port())], closed_copy)
    assert (done.returncode, done.stderr) == (1, (
        f"Error: user vm cannot read {_driver(closed_copy)} (gdb's driver): {closed_copy} is "
        "drwx------ root:root\n"))
