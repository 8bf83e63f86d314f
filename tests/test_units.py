"""The host's systemd units, written by ``pbotvm units install`` into a temporary root (never
into this machine's /etc)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from pbotvm import cli
from pbotvm.host import units


def install(root: Path, state: Path) -> list[Path]:
    result = CliRunner().invoke(cli.main, ["units", "install", "--root", str(root)],
                                env={"PBOTVM_STATE_DIR": str(state)})
    assert result.exit_code == 0, result.output
    return [root / line.removeprefix(f"wrote {root}/")
            for line in result.output.splitlines() if line.startswith("wrote ")]


def test_install_writes_both_units_for_this_installation(tmp_path: Path) -> None:
    root, state = tmp_path / "root", Path("/var/lib/pbotvm-test")
    written = install(root, state)
    assert [p.relative_to(root) for p in written] == [
        units.UNIT_DIR / units.SERVER_UNIT, units.UNIT_DIR / units.WATCHDOG_UNIT]
    assert (root / "var/lib/pbotvm-test").is_dir()  # may be written: it must exist
    bin_dir = Path(sys.executable).parent
    for path, exe in zip(written, ("vm-server", "vm-watchdog"), strict=True):
        lines = path.read_text().splitlines()
        for wanted in (f"ExecStart={bin_dir / exe}", f"Environment=PBOTVM_STATE_DIR={state}",
                       f"ReadWritePaths={state}", f"EnvironmentFile=-{units.ENV_FILE}",
                       "Restart=on-failure", "NoNewPrivileges=yes", "ProtectSystem=strict",
                       "KillMode=mixed", "WantedBy=multi-user.target"):
            assert wanted in lines, (path.name, wanted)
    assert f"After=network.target libvirtd.service {units.SERVER_UNIT}" in \
        written[1].read_text()


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_systemd_accepts_the_units(tmp_path: Path) -> None:
    written = install(tmp_path, Path("/var/lib/pbotvm-test"))
    proc = subprocess.run(["systemd-analyze", "verify", "--man=no", *map(str, written)],
                          capture_output=True, text=True, check=False)
    assert proc.stderr.splitlines() == []  # e.g. "Failed to parse protect system value"


def test_with_guests_a_pool_comes_up_before_vm_server(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli.main, ["units", "install", "--root", str(tmp_path),
                                           "--guests", "2"],
                                env={"PBOTVM_STATE_DIR": "/var/lib/pbotvm-test"})
    assert result.exit_code == 0, result.output
    unit_dir = tmp_path / units.UNIT_DIR
    guests = (unit_dir / units.GUESTS_UNIT).read_text().splitlines()
    pbotvm = Path(sys.executable).parent / "pbotvm"
    for wanted in (f"ExecStart={pbotvm} vm up --guests 2", f"ExecStop={pbotvm} vm down",
                   "Type=oneshot", "RemainAfterExit=yes", f"Before={units.SERVER_UNIT}"):
        assert wanted in guests, wanted
    server = (unit_dir / units.SERVER_UNIT).read_text().splitlines()
    assert f"Wants={units.GUESTS_UNIT}" in server
    if shutil.which("systemd-analyze") is not None:
        proc = subprocess.run(["systemd-analyze", "verify", "--man=no",
                               *map(str, sorted(unit_dir.iterdir()))],
                              capture_output=True, text=True, check=False)
        assert proc.stderr.splitlines() == []
