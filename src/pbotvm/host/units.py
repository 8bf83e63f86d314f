"""systemd units for the host's daemons (vm-server, vm-watchdog): restarted when they fail,
confined as far as their work allows, written by ``pbotvm units install``.

What the confinement leaves them: the state directory writable (status files, locks, edit
history; the QEMU backend's disk when a revert has to restart it), the network for the guest's
ports and the paste service, and every device (``/dev/kvm`` when a revert restarts QEMU).
``NoNewPrivileges`` means a revert command cannot gain privileges through ``sudo``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

UNIT_DIR = Path("etc/systemd/system")
SERVER_UNIT = "pbotvm-vm-server.service"
WATCHDOG_UNIT = "pbotvm-vm-watchdog.service"
ENV_FILE = Path("/etc/pbotvm/pbotvm.env")

HARDENING = """\
NoNewPrivileges=yes
ProtectSystem=strict
ReadWritePaths={state_dir}
PrivateTmp=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
SystemCallArchitectures=native
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_VSOCK
"""


@dataclass(frozen=True)
class Unit:
    name: str
    text: str


def _service(description: str, exe: Path, state_dir: Path, *, after: str = "",
             stop: str = "") -> str:
    return f"""# Written by pbotvm units install.
[Unit]
Description={description}
After=network.target libvirtd.service{after}

[Service]
Type=exec
ExecStart={exe}
Environment=PBOTVM_STATE_DIR={state_dir}
# PBOTVM_* settings (machines file, revert command, ...); they override the line above.
EnvironmentFile=-{ENV_FILE}
Restart=on-failure
RestartSec=2
# SIGTERM to the daemon alone: a revert command it started is let finish, not killed with it.
KillMode=mixed
{stop}{HARDENING.format(state_dir=state_dir)}
[Install]
WantedBy=multi-user.target
"""


def server_unit(bin_dir: Path, state_dir: Path) -> Unit:
    # It answers the requests in flight, then waits for the reverts it started.
    return Unit(SERVER_UNIT, _service("pbotvm vm-server: runs PBot's code in the guest VM",
                                      bin_dir / "vm-server", state_dir,
                                      stop="TimeoutStopSec=60\n"))


def watchdog_unit(bin_dir: Path, state_dir: Path) -> Unit:
    return Unit(WATCHDOG_UNIT, _service(
        "pbotvm vm-watchdog: reverts a guest that burns CPU while nobody uses it",
        bin_dir / "vm-watchdog", state_dir, after=f" {SERVER_UNIT}"))


def install(root: Path, bin_dir: Path, state_dir: Path) -> list[Path]:
    """Write both units under ``root`` (``/`` for this machine) and create the state
    directory they may write; returns the files written."""
    (root / state_dir.relative_to("/")).mkdir(parents=True, exist_ok=True)
    written = []
    for unit in (server_unit(bin_dir, state_dir), watchdog_unit(bin_dir, state_dir)):
        path = root / UNIT_DIR / unit.name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(unit.text)
        written.append(path)
    return written
