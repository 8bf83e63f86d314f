"""Image profiles: which Debian packages go into the guest.

The languages' packages come from the language table (``langspec``), so a language added
there is installed by the ``full`` profile, setup-guest and ``./dev`` alike.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from pbotvm.langspec import LANGUAGES, LangSpec

# Every image: the kernel we boot directly, busybox for our initramfs, guest-server's
# Python and its dependencies from Debian (the guest has no network), and the tools the
# guest's own scripts use.
BASE = ("linux-image-amd64", "busybox-static", "python3", "python3-serial", "python3-click",
        "bash", "procps")
# The C family also needs the C library's headers and gdb (crash reports, print()...).
C_FAMILY = ("gcc", "libc6-dev", "gdb")
# Every toolchain Debian packages for the language table, in table order.
LANGUAGE_PACKAGES = tuple(dict.fromkeys(
    package for spec in LANGUAGES if spec.toolchain.package
    for package in (spec.toolchain.package, *spec.toolchain.also)))


@dataclass(frozen=True)
class Profile:
    name: str
    packages: tuple[str, ...]
    disk_mib: int


MINIMAL = Profile("minimal", (*BASE, "perl", *C_FAMILY), disk_mib=2048)
FULL = Profile("full", tuple(dict.fromkeys((*MINIMAL.packages, *LANGUAGE_PACKAGES,
                                            "fortune-mod"))), disk_mib=8192)

PROFILES = {p.name: p for p in (MINIMAL, FULL)}


def languages(packages: Collection[str]) -> list[LangSpec]:
    """The languages whose programs these packages install, in the table's order."""
    return [spec for spec in LANGUAGES if spec.toolchain.package is not None
            and {spec.toolchain.package, *spec.toolchain.also} <= set(packages)]

if __name__ == "__main__":
    # ./dev installs these on a development machine (no venv yet: standard library only).
    print(*(p for p in FULL.packages if p not in BASE), sep="\n")
