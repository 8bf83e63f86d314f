"""Which distribution a guest runs (from /etc/os-release) and its names for our packages.

The profiles (``provision/profiles.py``) name Debian packages; the other families translate each
Debian name here, so a profile is written once.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum


class Family(StrEnum):
    DEBIAN = "debian"
    FEDORA = "fedora"
    SUSE = "suse"


# os-release ID / ID_LIKE words -> family
FAMILY_IDS = {"debian": Family.DEBIAN, "ubuntu": Family.DEBIAN,
              "fedora": Family.FEDORA, "rhel": Family.FEDORA, "centos": Family.FEDORA,
              "suse": Family.SUSE, "opensuse": Family.SUSE, "sles": Family.SUSE}

MANAGER = {Family.DEBIAN: "apt-get", Family.FEDORA: "dnf", Family.SUSE: "zypper"}

# Our image boots its own kernel through our own initramfs; a VM you bring has both.
IMAGE_ONLY = frozenset({"linux-image-amd64", "busybox-static"})

# What setup-guest itself needs besides a profile: ``ip``, for the network-off service.
SETUP_PACKAGES = ("iproute2",)

# Debian name -> (Fedora names, openSUSE names); () where that family has no such package.
OTHER_NAMES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "python3": (("python3",), ("python3",)),
    "python3-serial": (("python3-pyserial",), ("python3-pyserial",)),
    "python3-click": (("python3-click",), ("python3-click",)),
    "bash": (("bash",), ("bash",)),
    "procps": (("procps-ng",), ("procps",)),
    "iproute2": (("iproute",), ("iproute2",)),
    "perl": (("perl",), ("perl",)),
    # Debian's gcc depends on the sanitizer runtimes the C languages link with; these do not.
    "gcc": (("gcc", "libasan", "libubsan"), ("gcc", "libasan8", "libubsan1")),
    "libc6-dev": (("glibc-devel",), ("glibc-devel",)),
    "gdb": (("gdb",), ("gdb",)),
    "g++": (("gcc-c++",), ("gcc-c++",)),
    "clang": (("clang",), ("clang",)),
    # The sanitizer runtime clang links the C family's programs with. openSUSE's name for it
    # is not known to us: there clang stays as it was.
    "libclang-rt-dev": (("compiler-rt",), ()),
    "bc": (("bc",), ("bc",)),
    "beef": (("beef",), ()),  # openSUSE's Brainfuck is bff, under another name
    "clisp": (("clisp",), ("clisp",)),
    "golang-go": (("golang",), ("go",)),
    "ghc": (("ghc",), ("ghc",)),
    "default-jdk-headless": (("java-devel",), ("java-devel",)),
    "nodejs": (("nodejs",), ("nodejs-common",)),
    "ksh": (("ksh",), ("ksh",)),
    "lua5.4": (("lua",), ("lua",)),
    "php-cli": (("php-cli",), ("php8-cli",)),
    "python-is-python3": (("python-unversioned-command",), ()),
    "ruby": (("ruby",), ("ruby",)),
    "guile-3.0": (("guile30",), ("guile",)),
    "tcl": (("tcl",), ("tcl",)),
    "zsh": (("zsh",), ("zsh",)),
    "fortune-mod": (("fortune-mod",), ("fortune",)),
}

# openSUSE Leap 15's python3 is 3.6; guest-server needs 3.11, which Leap ships beside it.
LEAP15_PYTHON = "/usr/bin/python3.11"
LEAP15_NAMES = {"python3": ("python311",), "python3-serial": ("python311-pyserial",),
                "python3-click": ("python311-click",)}


@dataclass(frozen=True)
class Distro:
    name: str  # for messages: PRETTY_NAME, or what identifies it
    family: Family | None
    python: str = "/usr/bin/python3"  # the interpreter guest-server's launcher names

    @property
    def manager(self) -> str | None:
        return MANAGER[self.family] if self.family else None


def parse_os_release(text: str) -> dict[str, str]:
    """os-release's ``KEY=value`` lines, values unquoted the way a shell would."""
    fields = {}
    for line in text.splitlines():
        match = re.fullmatch(r"\s*([A-Za-z0-9_]+)=(.*)", line)
        if not match:
            continue
        try:
            words = shlex.split(match[2])
        except ValueError:  # an unbalanced quote: take the rest of the line as it is
            words = [match[2].strip("\"'")]
        fields[match[1]] = " ".join(words)
    return fields


def detect(fields: Mapping[str, str]) -> Distro:
    ids = [fields.get("ID", ""), *fields.get("ID_LIKE", "").split()]
    family = next((FAMILY_IDS[i] for i in ids if i in FAMILY_IDS), None)
    name = fields.get("PRETTY_NAME") or " ".join(
        v for v in (fields.get("NAME"), fields.get("VERSION_ID")) if v) or "unknown"
    if family is Family.SUSE and _major(fields.get("VERSION_ID", "")) < 16:
        return Distro(name, family, LEAP15_PYTHON)
    return Distro(name, family)


def _major(version: str) -> int:
    # Tumbleweed's VERSION_ID is a date, so it counts as new.
    match = re.match(r"\d+", version)
    return int(match[0]) if match else 10**9


def native_packages(distro: Distro, debian_names: Iterable[str]) -> tuple[list[str], list[str]]:
    """The distro's package names for ``debian_names``, and the Debian names it has none for.

    Order is kept and duplicates dropped; image-only packages are left out.
    """
    names: list[str] = []
    unavailable: list[str] = []
    for debian in debian_names:
        if debian in IMAGE_ONLY:
            continue
        native = _native(distro, debian)
        if not native:
            unavailable.append(debian)
        names.extend(n for n in native if n not in names)
    return names, unavailable


def _native(distro: Distro, debian: str) -> tuple[str, ...]:
    if distro.family is Family.DEBIAN:
        return (debian,)
    if distro.python == LEAP15_PYTHON and debian in LEAP15_NAMES:
        return LEAP15_NAMES[debian]
    if distro.family is None or debian not in OTHER_NAMES:
        return ()
    fedora, suse = OTHER_NAMES[debian]
    return suse if distro.family is Family.SUSE else fedora
