"""What ships into the guest: an allow-list taken from the package itself, complete enough for
guest-server to run from it alone, and never host code."""

from __future__ import annotations

import subprocess
import sys
import tomllib
import venv
from pathlib import Path

import pytest

from pbotvm.image import build
from pbotvm.provision import payload
from pbotvm.provision.profiles import MINIMAL

REPO = Path(__file__).resolve().parents[1]
LIB = payload.LIBDIR.lstrip("/")
# Shared with the host; everything else the guest imports is under pbotvm.guest.
SHARED = {"pbotvm", "pbotvm.settings", "pbotvm.logs", "pbotvm.procs", "pbotvm.protocol",
          "pbotvm.text", "pbotvm.tokenizer", "pbotvm.langspec"}


def test_launcher_runs_the_console_script_pyproject_declares() -> None:
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["guest-server"] == ":".join(payload.ENTRY)
    text = payload.launcher(*payload.ENTRY, "/usr/bin/python3.11")
    assert text.startswith("#!/usr/bin/python3.11\n")
    assert "sys.path.insert(0, '/usr/local/lib/pbotvm')" in text


def test_payload_is_the_allow_list() -> None:
    files = payload.payload("/usr/bin/python3").files
    modules = sorted(p.removeprefix(f"{payload.LIBDIR}/") for p in files
                     if p.startswith(payload.LIBDIR))
    assert "pbotvm/guest/server.py" in modules and "pbotvm/langspec/table.py" in modules
    for name in modules:
        assert (name.startswith(("pbotvm/guest/", "pbotvm/langspec/"))
                or name.removesuffix(".py").replace("/", ".") in SHARED
                or name == "pbotvm/__init__.py"), name
    assert not any(part in p for p in files for part in ("/host/", "/image/", "/provision/",
                                                          "cli.py"))
    assert {"/usr/include/prelude.h", "/usr/include/prelude.hpp"} <= set(files)


@pytest.mark.root
def test_payload_installs_and_syncs(tmp_path: Path) -> None:
    files = payload.payload("/usr/bin/python3")
    assert files.install(tmp_path) == sorted(files.files)
    assert files.install(tmp_path) == []
    lib = tmp_path / LIB
    stale = lib / "pbotvm/guest/gone.py"
    stale.write_text("")
    cache = lib / "pbotvm/__pycache__/x.pyc"
    cache.parent.mkdir()
    cache.write_text("")
    (tmp_path / payload.LAUNCHER.lstrip("/")).chmod(0o644)
    assert files.install(tmp_path) == sorted([payload.LAUNCHER,
                                              f"{payload.LIBDIR}/pbotvm/guest/gone.py"])
    assert not stale.exists() and cache.exists()


def test_guest_server_runs_from_the_payload_alone(tmp_path: Path) -> None:
    payload.payload("/usr/bin/python3").install(tmp_path)
    lib = tmp_path / LIB
    # -I: no site-packages of ours (pyserial and click are the guest's from its distro).
    site = [p for p in sys.path if p.endswith("site-packages")]
    probe = (f"import sys; sys.path[:0] = [{str(lib)!r}, *{site!r}]; "
             "import pbotvm.guest.server; "
             "print('\\n'.join(m.__file__ for n, m in sorted(sys.modules.items()) "
             "if n.startswith('pbotvm')))")
    out = subprocess.run([sys.executable, "-I", "-c", probe], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out and all(path.startswith(str(lib)) for path in out), out


@pytest.mark.slow
def test_the_payload_comes_from_an_installed_wheel(tmp_path: Path) -> None:
    """No checkout needed: `pip install pbotvm`, then `pbotvm vm up` or setup-guest."""
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels),
                    str(REPO)], check=True, capture_output=True)
    wheel = next(wheels.glob("pbotvm-*.whl"))
    env = tmp_path / "venv"
    venv.create(env, system_site_packages=True, with_pip=False)
    python = env / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q",
                    "--no-deps", str(wheel)], check=True, capture_output=True)
    probe = ("from pbotvm.image import build; from pbotvm.provision import payload, profiles; "
             "p = payload.payload('/usr/bin/python3'); "
             "print(payload.PACKAGE); print(len(p.files)); "
             "print('/usr/include/prelude.h' in p.files); "
             "print(build.cache_key(profiles.MINIMAL))")
    lines = subprocess.run([str(python), "-I", "-c", probe], capture_output=True, text=True,
                           check=True, cwd=tmp_path).stdout.split()
    assert lines[0].startswith(str(env)) and "site-packages" in lines[0]
    assert int(lines[1]) == len(payload.payload("/usr/bin/python3").files)
    assert lines[2] == "True"
    assert lines[3] == build.cache_key(MINIMAL)
