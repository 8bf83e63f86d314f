"""The systemd side of a guest set up by ``setup-guest``: guest-server's service, a service
that keeps the network off, and which network managers to mask.

Everything here is text and paths; enabling and masking are plain symlinks, so they work the
same on a running system and on a mounted image.
"""

from __future__ import annotations

from pathlib import Path

from pbotvm.provision.layout import HEART_INDEX, SERIAL_INDEX, guest_tty
from pbotvm.provision.payload import LAUNCHER

UNIT_DIR = "/etc/systemd/system"
GUEST_SERVICE = "pbotvm-guest-server.service"
NETWORK_SERVICE = "pbotvm-network-off.service"
NETWORK_SCRIPT = "/usr/local/sbin/pbotvm-network-off"
TARGET = "multi-user.target"
VENDOR_UNIT_DIRS = ("usr/lib/systemd/system", "lib/systemd/system")

# Whatever could bring a link back up: NetworkManager (Fedora, openSUSE, desktops),
# systemd-networkd (Ubuntu's netplan, cloud images), ifupdown (Debian; ifup@ is its udev
# hotplug path) and wicked (openSUSE Leap), with their helpers and wait-online units.
NETWORK_MANAGERS = (
    "NetworkManager.service", "NetworkManager-wait-online.service",
    "systemd-networkd.service", "systemd-networkd.socket", "systemd-networkd-wait-online.service",
    "networking.service", "ifup@.service", "dhcpcd.service",
    "wicked.service", "wickedd.service", "wickedd-auto4.service", "wickedd-dhcp4.service",
    "wickedd-dhcp6.service", "wickedd-nanny.service",
)


def guest_service(user: str) -> str:
    serial, heart = guest_tty(SERIAL_INDEX), guest_tty(HEART_INDEX)
    return f"""# Written by pbotvm setup-guest.
[Unit]
Description=pbotvm guest-server (requests on {serial}, heartbeat on {heart})
After={NETWORK_SERVICE}
# Keep restarting for as long as it takes (e.g. while the host adds the serial ports).
StartLimitIntervalSec=0

[Service]
# Raw ttys: no echo of requests, no line editing, no CR/LF translation.
ExecStartPre=stty -F {serial} raw -echo 115200
ExecStartPre=stty -F {heart} raw -echo 115200
ExecStart={LAUNCHER} --serial {serial} --heart {heart} --user {user}
# Its cgroup is its own to divide: each request gets one under it (memory, processes, CPU).
Delegate=yes
Restart=on-failure
RestartSec=1

[Install]
WantedBy={TARGET}
"""


def network_off_service() -> str:
    # Only ordered before guest-server, never wanted by it: disabling this unit must be
    # enough to let the network come back.
    return f"""# Written by pbotvm setup-guest.
[Unit]
Description=pbotvm: every network link but loopback down
Before={GUEST_SERVICE}

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart={NETWORK_SCRIPT}

[Install]
WantedBy={TARGET}
"""


def network_off_script() -> str:
    return """#!/bin/sh
# Written by pbotvm setup-guest: take every network link but loopback down.
for path in /sys/class/net/*; do
    name=${path##*/}
    [ "$name" = lo ] || ip link set dev "$name" down
done
"""


def wants_link(unit: str) -> tuple[str, str]:
    """What ``systemctl enable`` creates for one of our units: link path and its target."""
    return f"{UNIT_DIR}/{TARGET}.wants/{unit}", f"{UNIT_DIR}/{unit}"


def mask_link(unit: str) -> tuple[str, str]:
    return f"{UNIT_DIR}/{unit}", "/dev/null"


def installed_managers(root: Path) -> list[str]:
    """The network managers that ``root`` has unit files for."""
    return [unit for unit in NETWORK_MANAGERS
            if any((root / d / unit).exists() for d in (*VENDOR_UNIT_DIRS, UNIT_DIR.lstrip("/")))]
