"""Image profiles: which Debian packages go into the guest."""

from __future__ import annotations

from dataclasses import dataclass

# Every image: the kernel we boot directly, busybox for our initramfs, guest-server's
# Python and its dependencies from Debian (the guest has no network), and the tools the
# guest's own scripts use.
BASE = ("linux-image-amd64", "busybox-static", "python3", "python3-serial", "python3-click",
        "bash", "procps")


@dataclass(frozen=True)
class Profile:
    name: str
    packages: tuple[str, ...]
    disk_mib: int


MINIMAL = Profile("minimal", (*BASE, "perl", "gcc", "libc6-dev", "gdb"), disk_mib=2048)

# Debian bookworm's toolchains for the language table (bf, fbc and tendra are not packaged).
FULL = Profile("full", (*MINIMAL.packages, "g++", "clang", "bc", "clisp", "golang-go", "ghc",
                        "default-jdk-headless", "nodejs", "ksh", "lua5.4", "php-cli",
                        "python-is-python3", "ruby", "guile-3.0", "tcl", "zsh", "fortune-mod"),
               disk_mib=8192)

PROFILES = {p.name: p for p in (MINIMAL, FULL)}
