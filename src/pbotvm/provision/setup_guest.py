"""``setup-guest``: turn a VM you brought (Debian/Ubuntu, Fedora, openSUSE) into a pbotvm guest.

Run as root inside the VM from a copy of this repository: packages from the distro, guest-server
copied from the checkout (no pip), user ``vm``, guest-server as a systemd service on the serial
ports, and the network off for good. Every step first checks whether it is already done, so a
second run changes nothing. With ``--root DIR`` it works on a mounted image instead, by files
alone. Standard library only: it runs before guest-server's dependencies are installed.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pbotvm.provision import payload as guest_install
from pbotvm.provision import units
from pbotvm.provision.distro import (
    SETUP_PACKAGES,
    Distro,
    Family,
    detect,
    native_packages,
    parse_os_release,
)
from pbotvm.provision.layout import GUEST_USER, HEART_INDEX, SERIAL_INDEX, guest_tty
from pbotvm.provision.profiles import BASE, PROFILES, Profile

GUEST_SHELL = "/bin/bash"
# guest-server's own needs: a new enough Python with its two dependencies.
DEPENDENCY_CHECK = "import sys, serial, click; sys.exit(sys.version_info < (3, 11))"


class SetupError(RuntimeError):
    """The message is shown to the operator as is."""


@dataclass(frozen=True)
class Options:
    root: Path
    profile: Profile
    packages: bool
    dry_run: bool

    @property
    def live(self) -> bool:
        """Setting up the running system (not an image mounted somewhere)."""
        return self.root == Path("/")


# --- running commands (the I/O edge) ----------------------------------------------------------

@dataclass(frozen=True)
class Runner:
    root: Path

    def __call__(self, argv: Sequence[str], what: str, *, capture: bool = False,
                 check: bool = True, env: Mapping[str, str] | None = None
                 ) -> subprocess.CompletedProcess[str]:
        try:
            proc = subprocess.run(list(argv), stdin=subprocess.DEVNULL, text=True,
                                  errors="replace", env={**os.environ, **(env or {})},
                                  stdout=subprocess.PIPE if capture else None,
                                  stderr=subprocess.STDOUT if capture else None, check=False)
        except FileNotFoundError:
            raise SetupError(f"{what}: {argv[0]} is not installed") from None
        if check and proc.returncode:
            raise SetupError(f"{what} failed (exit {proc.returncode}): {' '.join(argv)}")
        return proc

    def inside(self, argv: Sequence[str]) -> list[str]:
        """``argv`` as run in the target system."""
        return list(argv) if self.root == Path("/") else ["chroot", str(self.root), *argv]


# --- packages ---------------------------------------------------------------------------------

def install_commands(family: Family, names: Sequence[str]) -> list[list[str]]:
    if family is Family.DEBIAN:
        return [["apt-get", "update", "-q"],
                ["apt-get", "install", "-y", "-q", "--no-install-recommends", *names]]
    if family is Family.FEDORA:
        return [["dnf", "install", "-y", "--setopt=install_weak_deps=False", *names]]
    return [["zypper", "--non-interactive", "install", "--no-recommends", *names]]


def query_command(family: Family, names: Sequence[str]) -> list[str]:
    if family is Family.DEBIAN:
        return ["dpkg-query", "-W", "-f=${Package} ${db:Status-Abbrev}\n", *names]
    # --whatprovides also answers for names that are capabilities (java-devel, lua).
    return ["rpm", "-q", "--whatprovides", *names]


def missing_packages(family: Family, names: Sequence[str], status: int,
                     output: str) -> list[str] | None:
    """Which of ``names`` the query says are not installed; None when the query itself failed."""
    if family is Family.DEBIAN:
        if status not in (0, 1):
            return None
        installed = set(re.findall(r"^(\S+) ii", output, re.M))
        return [n for n in names if n not in installed]
    absent = set(re.findall(r"^no package provides (\S+)$", output, re.M))
    if status and not absent:
        return None
    return [n for n in names if n in absent]


@dataclass(frozen=True)
class Packages:
    family: Family
    names: tuple[str, ...]

    def missing(self, run: Runner) -> list[str]:
        proc = run(run.inside(query_command(self.family, self.names)),
                   "asking the package database", capture=True, check=False)
        missing = missing_packages(self.family, self.names, proc.returncode, proc.stdout)
        if missing is None:
            last = (proc.stdout.strip().splitlines() or ["no output"])[-1]
            raise SetupError(f"cannot tell which packages are installed: {last}")
        return missing

    def check(self, run: Runner) -> str | None:
        missing = self.missing(run)
        return f"install {len(missing)} packages: {' '.join(missing)}" if missing else None

    def apply(self, run: Runner) -> None:
        env = {"DEBIAN_FRONTEND": "noninteractive"}
        for argv in install_commands(self.family, self.missing(run)):
            run(run.inside(argv), f"{argv[0]} {argv[1]}", env=env)


# --- files, links, the user -------------------------------------------------------------------

@dataclass(frozen=True)
class GuestServer:
    payload: guest_install.Payload

    def check(self, run: Runner) -> str | None:
        changed = self.payload.changes(run.root)
        if not changed:
            return None
        return (f"install guest-server in {guest_install.LIBDIR} and {guest_install.LAUNCHER} "
                f"({len(changed)} of its files differ)")

    def apply(self, run: Runner) -> None:
        self.payload.install(run.root)


@dataclass(frozen=True)
class File:
    path: str
    text: str
    mode: int

    def check(self, run: Runner) -> str | None:
        target = guest_install.in_root(run.root, self.path)
        if guest_install.differs(target, self.text.encode(), self.mode):
            return f"write {self.path}"
        return None

    def apply(self, run: Runner) -> None:
        guest_install.write(guest_install.in_root(run.root, self.path), self.text.encode(),
                            self.mode)


@dataclass(frozen=True)
class Link:
    path: str
    target: str
    title: str

    def check(self, run: Runner) -> str | None:
        link = guest_install.in_root(run.root, self.path)
        if link.is_symlink() and os.readlink(link) == self.target:
            return None
        if link.exists() and not link.is_symlink():
            raise SetupError(f"{self.path} is a file of its own; move it away to let "
                             f"setup-guest {self.title}")
        return self.title

    def apply(self, run: Runner) -> None:
        link = guest_install.in_root(run.root, self.path)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.unlink(missing_ok=True)
        link.symlink_to(self.target)


def has_user(passwd: str, name: str) -> bool:
    return any(line.split(":", 1)[0] == name for line in passwd.splitlines())


@dataclass(frozen=True)
class User:
    name: str

    def argv(self, root: Path) -> list[str]:
        where = [] if root == Path("/") else ["--root", str(root)]
        return ["useradd", *where, "-m", "-s", GUEST_SHELL, self.name]

    def check(self, run: Runner) -> str | None:
        passwd = run.root / "etc/passwd"
        if passwd.is_file() and has_user(passwd.read_text(errors="replace"), self.name):
            return None
        return f"add user {self.name}: {' '.join(self.argv(Path('/')))}"

    def apply(self, run: Runner) -> None:
        run(self.argv(run.root), "useradd")


# --- the plan -----------------------------------------------------------------------------------

# Each step's ``check`` says what is left to do (None: nothing); ``apply`` does it.
Step = Packages | GuestServer | File | Link | User


@dataclass(frozen=True)
class Plan:
    packages: Packages | None
    unavailable: tuple[str, ...]  # Debian names of what to install by hand
    guest: tuple[Step, ...]  # a change restarts guest-server
    network: tuple[Step, ...]  # a change re-runs the network-off service
    masked: tuple[str, ...]

    @property
    def steps(self) -> list[Step]:
        return [*([self.packages] if self.packages else []), *self.guest, *self.network]


def package_names(profile: Profile) -> list[str]:
    """Debian names: guest-server's needs, setup-guest's own, then the profile's languages."""
    return list(dict.fromkeys([*BASE, *SETUP_PACKAGES, *profile.packages]))


def plan(distro: Distro, options: Options, payload: guest_install.Payload,
         managers: Sequence[str]) -> Plan:
    names, unavailable = native_packages(distro, package_names(options.profile))
    packages = (Packages(distro.family, tuple(names))
                if options.packages and distro.family and names else None)
    guest: tuple[Step, ...] = (GuestServer(payload), User(GUEST_USER),
             File(f"{units.UNIT_DIR}/{units.GUEST_SERVICE}", units.guest_service(GUEST_USER),
                  0o644),
             Link(*units.wants_link(units.GUEST_SERVICE), f"enable {units.GUEST_SERVICE}"))
    network: tuple[Step, ...] = (File(units.NETWORK_SCRIPT, units.network_off_script(), 0o755),
               File(f"{units.UNIT_DIR}/{units.NETWORK_SERVICE}", units.network_off_service(),
                    0o644),
               Link(*units.wants_link(units.NETWORK_SERVICE), f"enable {units.NETWORK_SERVICE}"),
               *(Link(*units.mask_link(m), f"mask {m}") for m in managers))
    return Plan(packages, tuple(unavailable), guest, network, tuple(managers))


def activation(guest_changed: bool, network_changed: bool, units_changed: bool,
               active: Mapping[str, bool], masked: Sequence[str]) -> list[list[str]]:
    """systemctl commands that make the running system match what was written.

    The network goes last: taking it down may end the operator's ssh session. guest-server's
    start is not waited for: without the serial ports it keeps retrying, which must not stop
    the network from going down.
    """
    commands = [["systemctl", "daemon-reload"]] if units_changed else []
    if guest_changed or not active.get(units.GUEST_SERVICE):
        commands.append(["systemctl", "restart", "--no-block", units.GUEST_SERVICE])
    running = [m for m in masked if active.get(m)]
    if running:
        commands.append(["systemctl", "stop", *running])
    if network_changed or running or not active.get(units.NETWORK_SERVICE):
        commands.append(["systemctl", "restart", units.NETWORK_SERVICE])
    return commands


def is_active(run: Runner, unit: str) -> bool:
    return run(["systemctl", "is-active", "--quiet", unit], "systemctl is-active",
               check=False).returncode == 0


# --- what the operator reads --------------------------------------------------------------------

def network_on_text(masked: Sequence[str]) -> str:
    lines = [f"  systemctl disable --now {units.NETWORK_SERVICE}"]
    if masked:
        lines.append(f"  systemctl unmask {' '.join(masked)}")
    lines.append("  reboot   (or start your network manager by hand)")
    return "\n".join(lines)


def manual_text(distro: Distro, unavailable: Sequence[str]) -> str | None:
    if not unavailable:
        return None
    if distro.family is None:
        return (f"unknown distribution ({distro.name}): install by hand Python 3.11 or newer "
                f"with pyserial and click, and (Debian names) {' '.join(unavailable)}")
    return f"{distro.name} has no packages for (Debian names) {' '.join(unavailable)}"


def summary(the_plan: Plan, live_systemd: bool) -> str:
    serial, heart = guest_tty(SERIAL_INDEX), guest_tty(HEART_INDEX)
    when = "now" if live_systemd else "the next boot"
    return f"""
Done. From {when} on:
  {units.GUEST_SERVICE}: guest-server, requests on {serial}, heartbeat on {heart},
    programs run as user {GUEST_USER} (it retries every second until the serial ports are
    there; see systemctl status {units.GUEST_SERVICE})
  {units.NETWORK_SERVICE}: every link but loopback down, network managers masked
To turn networking back on:
{network_on_text(the_plan.masked)}
and run setup-guest again to turn it off.

Then, on the host: give the domain its serial ports and vsock (PBOTVM_DOMAIN=<domain>
pbotvm devices add-all; they appear at its next start), start it, run a request of each
language you use so the guest is warm, and take the snapshot vm-server reverts to:
  virsh snapshot-create-as <domain> 1"""


# --- the command --------------------------------------------------------------------------------

def read_distro(root: Path) -> Distro:
    for path in (root / "etc/os-release", root / "usr/lib/os-release"):
        if path.is_file():
            return detect(parse_os_release(path.read_text(errors="replace")))
    return Distro("no os-release", None)


def parse_args(argv: Sequence[str] | None) -> Options:
    parser = argparse.ArgumentParser(
        prog="setup-guest",
        description="Set up this VM (or, with --root, a mounted image) as a pbotvm guest: "
                    "packages, guest-server and its service, user vm, network off.")
    parser.add_argument("--root", type=Path, default=Path("/"), metavar="DIR",
                        help="work on the system mounted at DIR, by files alone (default: /)")
    parser.add_argument("--profile", choices=sorted(PROFILES), default="minimal",
                        help="languages to install (default: minimal)")
    parser.add_argument("--no-packages", dest="packages", action="store_false",
                        help="install no packages (they are there, or you install them)")
    parser.add_argument("--dry-run", action="store_true",
                        help="print what would be done and change nothing")
    args = parser.parse_args(argv)
    return Options(args.root.resolve(), PROFILES[args.profile], args.packages, args.dry_run)


def say(line: str) -> None:
    print(line, flush=True)


def setup(options: Options) -> None:
    if not options.root.is_dir():
        raise SetupError(f"--root {options.root} is not a directory")
    if os.geteuid() != 0 and not options.dry_run:
        raise SetupError("setup-guest must run as root")
    distro = read_distro(options.root)
    run = Runner(options.root)
    payload = guest_install.payload(distro.python)
    the_plan = plan(distro, options, payload, units.installed_managers(options.root))
    say(f"setup-guest: {distro.name} ({distro.manager or 'no known package manager'}), "
        f"profile {options.profile.name}, root {options.root}"
        + (", dry run" if options.dry_run else ""))
    if options.packages and (manual := manual_text(distro, the_plan.unavailable)):
        say(f"setup-guest: {manual}")
    prefix = "  would " if options.dry_run else "  "
    changed: list[Step] = []
    for step in the_plan.steps:
        if (what := step.check(run)) is not None:
            say(prefix + what)
            if not options.dry_run:
                step.apply(run)
            changed.append(step)
    live_systemd = options.live and Path("/run/systemd/system").is_dir()
    commands = activation(
        guest_changed=any(s in changed for s in the_plan.guest),
        network_changed=any(s in changed for s in the_plan.network),
        units_changed=any(isinstance(s, File | Link) for s in changed),
        active={u: is_active(run, u)
                for u in (units.GUEST_SERVICE, units.NETWORK_SERVICE, *the_plan.masked)},
        masked=the_plan.masked) if live_systemd else []
    if not changed and not commands:
        say("  nothing to change: this guest is already set up")
    if options.dry_run:
        for argv in commands:
            say(f"  would run: {' '.join(argv)}")
        return
    if options.live and run([distro.python, "-c", DEPENDENCY_CHECK], "checking Python",
                            capture=True, check=False).returncode:
        say(f"setup-guest: warning: {distro.python} is not Python 3.11+ with pyserial and "
            "click, so guest-server cannot start; install them")
    say(summary(the_plan, live_systemd))
    for argv in commands:
        say(f"  run: {' '.join(argv)}")
        run(argv, " ".join(argv[:2]))


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    try:
        setup(options)
    except SetupError as e:
        print(f"setup-guest: error: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"setup-guest: error: {e.strerror or e}: {e.filename or ''}".rstrip(": "),
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("setup-guest: interrupted", file=sys.stderr)
        return 130
    return 0
