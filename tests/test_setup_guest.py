"""setup-guest: distro detection, package names, unit files, the plan, and real runs into a
fake root (``--root``), never against this machine's own root."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pbotvm.provision import distro, units
from pbotvm.provision import payload as guest_install
from pbotvm.provision import setup_guest as setup
from pbotvm.provision.distro import Distro, Family
from pbotvm.provision.layout import HEART_INDEX, SERIAL_INDEX, guest_tty
from pbotvm.provision.profiles import FULL, MINIMAL

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "guest" / "setup-guest"

DEBIAN_12 = """PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
VERSION="12 (bookworm)"
VERSION_CODENAME=bookworm
ID=debian
HOME_URL="https://www.debian.org/"
"""
FEDORA_40 = """NAME="Fedora Linux"
VERSION="40 (Server Edition)"
ID=fedora
VERSION_ID=40
PRETTY_NAME="Fedora Linux 40 (Server Edition)"
CPE_NAME="cpe:/o:fedoraproject:fedora:40"
"""
TUMBLEWEED = """NAME="openSUSE Tumbleweed"
# VERSION="20240618"
ID="opensuse-tumbleweed"
ID_LIKE="opensuse suse"
VERSION_ID="20240618"
PRETTY_NAME="openSUSE Tumbleweed"
"""
LEAP_15 = """NAME="openSUSE Leap"
VERSION="15.6"
ID="opensuse-leap"
ID_LIKE="suse opensuse"
VERSION_ID="15.6"
PRETTY_NAME="openSUSE Leap 15.6"
"""
ROCKY_9 = 'NAME="Rocky Linux"\nID="rocky"\nID_LIKE="rhel centos fedora"\nVERSION_ID="9.4"\n'
ARCH = "NAME=\"Arch Linux\"\nPRETTY_NAME='Arch Linux'\nID=arch\n"


@pytest.mark.parametrize(("text", "name", "family", "python"), [
    (DEBIAN_12, "Debian GNU/Linux 12 (bookworm)", Family.DEBIAN, "/usr/bin/python3"),
    (FEDORA_40, "Fedora Linux 40 (Server Edition)", Family.FEDORA, "/usr/bin/python3"),
    (TUMBLEWEED, "openSUSE Tumbleweed", Family.SUSE, "/usr/bin/python3"),
    (LEAP_15, "openSUSE Leap 15.6", Family.SUSE, "/usr/bin/python3.11"),
    (ROCKY_9, "Rocky Linux 9.4", Family.FEDORA, "/usr/bin/python3"),
    (ARCH, "Arch Linux", None, "/usr/bin/python3"),
    ("", "unknown", None, "/usr/bin/python3"),
])
def test_detect(text: str, name: str, family: Family | None, python: str) -> None:
    assert distro.detect(distro.parse_os_release(text)) == Distro(name, family, python)


def test_parse_os_release_unquotes_like_a_shell() -> None:
    fields = distro.parse_os_release('A="say \\"hi\\" $x"\nB=\'single\'\n# C=no\nD="unbalanced\n')
    assert fields == {"A": 'say "hi" $x', "B": "single", "D": "unbalanced"}


def test_every_profile_package_has_a_name_on_each_family() -> None:
    wanted = setup.package_names(FULL)
    for family in (Family.FEDORA, Family.SUSE):
        _, unavailable = distro.native_packages(Distro("x", family), wanted)
        # The only gaps are openSUSE's: its Brainfuck interpreter is not beef, it has no
        # unversioned ``python`` command, and we do not know its clang sanitizer runtime.
        assert unavailable == ([] if family is Family.FEDORA
                               else ["beef", "libclang-rt-dev", "python-is-python3"])


def test_debian_names_come_from_the_profile_without_the_image_only_packages() -> None:
    names, unavailable = distro.native_packages(Distro("d", Family.DEBIAN),
                                                setup.package_names(MINIMAL))
    assert unavailable == []
    assert "linux-image-amd64" not in names and "busybox-static" not in names
    assert set(names) == set(MINIMAL.packages) - distro.IMAGE_ONLY | {"iproute2"}


def test_native_names_for_fedora_and_leap() -> None:
    fedora, _ = distro.native_packages(Distro("f", Family.FEDORA), setup.package_names(MINIMAL))
    assert fedora[:3] == ["python3", "python3-pyserial", "python3-click"]
    assert {"procps-ng", "iproute", "glibc-devel", "libasan", "libubsan"} <= set(fedora)
    leap = distro.detect(distro.parse_os_release(LEAP_15))
    names, _ = distro.native_packages(leap, ["python3", "python3-serial", "python3-click", "gcc"])
    assert names == ["python311", "python311-pyserial", "python311-click", "gcc", "libasan8",
                     "libubsan1"]
    assert distro.native_packages(Distro("arch", None), ["bash", "busybox-static"]) == \
        ([], ["bash"])


@pytest.mark.parametrize(("family", "status", "output", "missing"), [
    (Family.DEBIAN, 1, "bash ii \npython3-click un \ndpkg-query: no packages found matching gdb\n",
     ["python3-click", "gdb"]),
    (Family.DEBIAN, 0, "bash ii \npython3-click ii \ngdb ii \n", []),
    (Family.DEBIAN, 127, "chroot: failed to run command 'dpkg-query'\n", None),
    (Family.FEDORA, 1, "bash-5.2.26-3.fc40.x86_64\nno package provides python3-click\n"
                       "gdb-14.2-1.fc40.x86_64\n", ["python3-click"]),
    (Family.SUSE, 0, "bash-5.2\nlibasan8-14\ngdb-14\n", []),
    (Family.SUSE, 127, "chroot: failed to run command 'rpm'\n", None),
])
def test_missing_packages(family: Family, status: int, output: str,
                          missing: list[str] | None) -> None:
    names = ["bash", "python3-click", "gdb"]
    assert setup.missing_packages(family, names, status, output) == missing


def test_install_commands_are_non_interactive() -> None:
    assert setup.install_commands(Family.DEBIAN, ["gdb"])[-1] == \
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", "gdb"]
    assert setup.install_commands(Family.FEDORA, ["gdb"]) == \
        [["dnf", "install", "-y", "--setopt=install_weak_deps=False", "gdb"]]
    assert setup.install_commands(Family.SUSE, ["gdb"]) == \
        [["zypper", "--non-interactive", "install", "--no-recommends", "gdb"]]


def test_units_use_the_layout_ttys_and_the_launcher() -> None:
    text = units.guest_service("vm")
    serial, heart = guest_tty(SERIAL_INDEX), guest_tty(HEART_INDEX)
    assert f"ExecStartPre=stty -F {serial} raw -echo" in text
    assert f"ExecStart={guest_install.LAUNCHER} --serial {serial} --heart {heart} --user vm" \
        in text
    assert "Restart=on-failure" in text and f"After={units.NETWORK_SERVICE}" in text
    assert "\nDelegate=yes\n" in text  # for the requests' cgroups
    # Disabling the network-off service must be enough to get the network back.
    assert "Wants=" not in text and "Requires=" not in text
    assert f"ExecStart={units.NETWORK_SCRIPT}" in units.network_off_service()


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_systemd_accepts_the_units(tmp_path: Path) -> None:
    for name, text in ((units.GUEST_SERVICE, units.guest_service("vm")),
                       (units.NETWORK_SERVICE, units.network_off_service())):
        (tmp_path / name).write_text(text)
    proc = subprocess.run(["systemd-analyze", "verify", "--man=no",
                           *map(str, sorted(tmp_path.iterdir()))],
                          capture_output=True, text=True, check=False)
    # Our executables are not installed on this machine; anything else is a unit file error.
    complaints = [line for line in proc.stderr.splitlines() if "is not executable" not in line]
    assert complaints == []


def test_network_off_script_keeps_loopback(tmp_path: Path) -> None:
    bin_dir, log = tmp_path / "bin", tmp_path / "ip.log"
    bin_dir.mkdir()
    (bin_dir / "ip").write_text(f'#!/bin/sh\necho "$@" >> {log}\n')
    (bin_dir / "ip").chmod(0o755)
    script = tmp_path / "off"
    script.write_text(units.network_off_script())
    subprocess.run(["sh", str(script)], env={"PATH": f"{bin_dir}:/usr/bin:/bin"}, check=True)
    links = sorted(os.listdir("/sys/class/net"))
    expected = [f"link set dev {n} down" for n in links if n != "lo"]
    assert (log.read_text().splitlines() if log.exists() else []) == expected


def plan_for(family: Family | None, packages: bool = True,
             managers: tuple[str, ...] = ()) -> setup.Plan:
    options = setup.Options(Path("/r"), MINIMAL, packages, dry_run=False)
    payload = guest_install.Payload({}, {})
    return setup.plan(Distro("d", family), options, payload, managers)


def test_plan() -> None:
    the_plan = plan_for(Family.FEDORA, managers=("NetworkManager.service",))
    assert the_plan.packages is not None and the_plan.packages.family is Family.FEDORA
    assert "python3-pyserial" in the_plan.packages.names
    assert the_plan.masked == ("NetworkManager.service",)
    links = [(s.path, s.target) for s in the_plan.steps if isinstance(s, setup.Link)]
    assert ("/etc/systemd/system/NetworkManager.service", "/dev/null") in links
    assert (f"/etc/systemd/system/multi-user.target.wants/{units.GUEST_SERVICE}",
            f"/etc/systemd/system/{units.GUEST_SERVICE}") in links
    assert setup.User("vm") in the_plan.guest
    assert plan_for(Family.FEDORA, packages=False).packages is None
    unknown = plan_for(None)
    assert unknown.packages is None and "python3-click" in unknown.unavailable
    assert "install by hand" in (setup.manual_text(Distro("Arch", None), unknown.unavailable)
                                 or "")


def test_user_command_and_passwd_check() -> None:
    assert setup.User("vm").argv(Path("/")) == ["useradd", "-m", "-s", "/bin/bash", "vm"]
    assert setup.User("vm").argv(Path("/mnt")) == \
        ["useradd", "--root", "/mnt", "-m", "-s", "/bin/bash", "vm"]
    assert setup.has_user("root:x:0:0::/root:/bin/bash\nvm:x:1000:1000::/home/vm:/bin/bash", "vm")
    assert not setup.has_user("vmx:x:1000:1000::/home/vmx:/bin/sh\n", "vm")


def test_activation() -> None:
    guest, net, nm = units.GUEST_SERVICE, units.NETWORK_SERVICE, "NetworkManager.service"
    first = setup.activation(True, True, True, {nm: True}, [nm])
    assert first == [["systemctl", "daemon-reload"], ["systemctl", "restart", "--no-block", guest],
                     ["systemctl", "stop", nm], ["systemctl", "restart", net]]
    settled = {guest: True, net: True, nm: False}
    assert setup.activation(False, False, False, settled, [nm]) == []
    assert setup.activation(False, False, False, {**settled, guest: False}, [nm]) == \
        [["systemctl", "restart", "--no-block", guest]]


# --- real runs into a fake root ---------------------------------------------------------------

def fake_root(tmp: Path, os_release: str) -> Path:
    root = tmp / "root"
    (root / "etc").mkdir(parents=True)
    for name in ("passwd", "group", "shadow", "gshadow", "login.defs"):
        if Path("/etc", name).exists():
            lines = Path("/etc", name).read_text().splitlines(keepends=True)
            (root / "etc" / name).write_text("".join(ln for ln in lines
                                                     if not ln.startswith("vm:")))
    (root / "etc/os-release").write_text(os_release)
    vendor = root / "usr/lib/systemd/system"
    vendor.mkdir(parents=True)
    (vendor / "NetworkManager.service").write_text("[Service]\nExecStart=/usr/sbin/NM\n")
    return root


def run_setup(*args: str) -> subprocess.CompletedProcess[str]:
    # -I -S: no site-packages at all, as on a guest that has neither pyserial nor click yet.
    return subprocess.run([sys.executable, "-I", "-S", str(SCRIPT), *args], capture_output=True,
                          text=True, check=False, timeout=60)


def tree(root: Path) -> dict[str, tuple[int, int, str]]:
    return {str(p.relative_to(root)): (p.lstat().st_mode, p.lstat().st_mtime_ns,
                                       os.readlink(p) if p.is_symlink() else "")
            for p in sorted(root.rglob("*"))}


@pytest.mark.root
def test_real_run_into_a_fake_root_is_idempotent(tmp_path: Path) -> None:
    root = fake_root(tmp_path, FEDORA_40)
    dry = run_setup("--root", str(root), "--no-packages", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "would mask NetworkManager.service" in dry.stdout
    assert not (root / "etc/systemd").exists()

    first = run_setup("--root", str(root), "--no-packages")
    assert first.returncode == 0, first.stderr
    assert "Traceback" not in first.stderr
    etc = root / "etc/systemd/system"
    assert (etc / units.GUEST_SERVICE).read_text() == units.guest_service("vm")
    assert (etc / units.NETWORK_SERVICE).read_text() == units.network_off_service()
    for unit in (units.GUEST_SERVICE, units.NETWORK_SERVICE):
        assert os.readlink(etc / "multi-user.target.wants" / unit) == f"/etc/systemd/system/{unit}"
    assert os.readlink(etc / "NetworkManager.service") == "/dev/null"
    assert os.access(root / units.NETWORK_SCRIPT.lstrip("/"), os.X_OK)
    launcher = root / guest_install.LAUNCHER.lstrip("/")
    assert os.access(launcher, os.X_OK)
    assert launcher.read_text().startswith("#!/usr/bin/python3\n")
    assert (root / "usr/local/lib/pbotvm/pbotvm/guest/server.py").is_file()
    user = [ln for ln in (root / "etc/passwd").read_text().splitlines() if ln.startswith("vm:")]
    assert len(user) == 1 and user[0].endswith(":/home/vm:/bin/bash")
    assert (root / "home/vm").is_dir()
    assert "virsh snapshot-create-as <domain> 1" in first.stdout
    assert "systemctl unmask NetworkManager.service" in first.stdout

    before = tree(root)
    second = run_setup("--root", str(root), "--no-packages")
    assert second.returncode == 0, second.stderr
    assert "nothing to change" in second.stdout
    assert tree(root) == before


@pytest.mark.root
def test_failures_are_one_line(tmp_path: Path) -> None:
    missing = run_setup("--root", str(tmp_path / "nope"), "--no-packages")
    assert (missing.returncode, missing.stderr) == \
        (1, f"setup-guest: error: --root {tmp_path / 'nope'} is not a directory\n")
    # Packages wanted, but the root has no dpkg-query to ask (chroot fails).
    root = fake_root(tmp_path, DEBIAN_12)
    broken = run_setup("--root", str(root))
    assert broken.returncode == 1
    assert broken.stderr.startswith("setup-guest: error: cannot tell which packages are "
                                    "installed: chroot:")
    assert len(broken.stderr.splitlines()) == 1
