"""Where the guest's serial lines are, and its user: the one place the image, setup-guest and
the QEMU command agree on.

The original's code (not its doc) uses /dev/ttyS2 for data and /dev/ttyS3 for the heartbeat,
and guest-server defaults to those; an ``isa-serial`` with ``index=N`` is the guest's ttySN.
"""

from __future__ import annotations

SERIAL_INDEX = 2
HEART_INDEX = 3
CONSOLE = "ttyS0"
GUEST_USER = "vm"  # programs run as this user (guest-server's default too)


def guest_tty(index: int) -> str:
    return f"/dev/ttyS{index}"
