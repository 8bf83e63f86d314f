"""Whether the user a libvirt daemon runs QEMU as can reach a file, and if not, why.

A system daemon runs QEMU as a user of its own (Debian: ``libvirt-qemu``), which cannot enter
root's home, where the image cache and the state directory are by default. libvirt says who
that user is in its capabilities (the DAC security model's base label); the check is made from
the files' modes, so it needs no process running as that user.
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import stat
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

READ, WRITE, SEARCH = 4, 2, 1  # permission bits, as in a mode's rwx triplets

_DAC_LABEL = re.compile(r"\+?(\d+):\+?(\d+)")


@dataclass(frozen=True)
class QemuUser:
    uid: int
    gid: int
    groups: frozenset[int]  # the primary group and the supplementary ones

    @property
    def name(self) -> str:
        try:
            return f"{pwd.getpwuid(self.uid).pw_name} (uid {self.uid})"
        except KeyError:
            return f"uid {self.uid}"


def qemu_user(capabilities: str) -> QemuUser | None:
    """Who runs QEMU, from a daemon's capabilities XML; None when it does not say (no DAC
    model: a session daemon's QEMU is its own user)."""
    for model in ET.fromstring(capabilities).iterfind("host/secmodel"):
        if model.findtext("model") != "dac":
            continue
        for label in model.iterfind("baselabel"):
            if match := _DAC_LABEL.fullmatch((label.text or "").strip()):
                uid, gid = int(match[1]), int(match[2])
                return QemuUser(uid, gid, _groups(uid, gid))
    return None


def _groups(uid: int, gid: int) -> frozenset[int]:
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        return frozenset({gid})
    return frozenset({gid, *os.getgrouplist(name, gid)})


def allows(mode: int, owner: int, group: int, user: QemuUser, need: int) -> bool:
    """Whether a file's mode lets ``user`` do ``need`` (READ, WRITE, SEARCH bits) with it."""
    if user.uid == 0:
        return True
    if user.uid == owner:
        bits = mode >> 6
    elif group in user.groups:
        bits = mode >> 3
    else:
        bits = mode
    return bits & need == need


def _describe(path: Path, info: os.stat_result) -> str:
    def name(lookup: str, number: int) -> str:
        try:
            return (pwd.getpwuid(number).pw_name if lookup == "user"
                    else grp.getgrgid(number).gr_name)
        except KeyError:
            return str(number)

    return (f"{path} is {stat.filemode(info.st_mode)} "
            f"{name('user', info.st_uid)}:{name('group', info.st_gid)}")


def denied(path: Path, user: QemuUser, need: int) -> str | None:
    """Why ``user`` cannot reach ``path`` (every directory above it searched) and use it for
    ``need``; None when it can."""
    path = Path(os.path.abspath(path))
    for step, bits in [*((d, SEARCH) for d in reversed(path.parents)), (path, need)]:
        try:
            info = os.stat(step)
        except FileNotFoundError:
            return f"{step} does not exist"
        if not allows(info.st_mode, info.st_uid, info.st_gid, user, bits):
            return _describe(step, info)
    return None
