"""systemd units for the host's daemons (vm-server, vm-watchdog): restarted when they fail,
confined as far as their work allows, written by ``pbotvm units install``; with ``--guests
N``, a unit that brings up a pool of N QEMU guests (``pbotvm vm up --guests N``) before them.

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
GUESTS_UNIT = "pbotvm-guests.service"
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
             wants: str = "", stop: str = "") -> str:
    return f"""# Written by pbotvm units install.
[Unit]
Description={description}
After=network.target libvirtd.service{after}
{f"Wants={wants}{chr(10)}" if wants else ""}
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


def server_unit(bin_dir: Path, state_dir: Path, guests: int = 0) -> Unit:
    # It answers the requests in flight, then waits for the reverts it started.
    return Unit(SERVER_UNIT, _service("pbotvm vm-server: runs PBot's code in the guest VM",
                                      bin_dir / "vm-server", state_dir,
                                      after=f" {GUESTS_UNIT}" if guests else "",
                                      wants=GUESTS_UNIT if guests else "",
                                      stop="TimeoutStopSec=60\n"))


def watchdog_unit(bin_dir: Path, state_dir: Path) -> Unit:
    return Unit(WATCHDOG_UNIT, _service(
        "pbotvm vm-watchdog: reverts a guest that burns CPU while nobody uses it",
        bin_dir / "vm-watchdog", state_dir, after=f" {SERVER_UNIT}"))


def guests_unit(bin_dir: Path, state_dir: Path, guests: int) -> Unit:
    """The pool, up before vm-server and down after it. Not confined as the daemons are: QEMU
    needs /dev/kvm and the image cache, and the first boot builds the image (minutes)."""
    pbotvm = bin_dir / "pbotvm"
    return Unit(GUESTS_UNIT, f"""# Written by pbotvm units install.
[Unit]
Description=pbotvm guests: a pool of {guests} QEMU guests for vm-server
After=network.target
Before={SERVER_UNIT}

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart={pbotvm} vm up --guests {guests}
ExecStop={pbotvm} vm down
Environment=PBOTVM_STATE_DIR={state_dir}
EnvironmentFile=-{ENV_FILE}
TimeoutStartSec=1800

[Install]
WantedBy=multi-user.target
""")


def install(root: Path, bin_dir: Path, state_dir: Path, guests: int = 0) -> list[Path]:
    """Write the units under ``root`` (``/`` for this machine) and create the state
    directory they may write; returns the files written. ``guests``: also the unit of a pool
    of that many QEMU guests."""
    (root / state_dir.relative_to("/")).mkdir(parents=True, exist_ok=True)
    written = []
    units = [server_unit(bin_dir, state_dir, guests), watchdog_unit(bin_dir, state_dir)]
    if guests:
        units.insert(0, guests_unit(bin_dir, state_dir, guests))
    for unit in units:
        path = root / UNIT_DIR / unit.name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(unit.text)
        written.append(path)
    return written
