"""Where a system libvirt's QEMU user can read a domain's files (pure parts and files only:
the stock-daemon run is in test_vm_libvirt.py)."""

from __future__ import annotations

import grp
import pwd
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from pbotvm.host.machines import libvirt_domain as ld
from pbotvm.host.machines.devices import LibvirtError
from pbotvm.host.machines.libvirt_access import (
    READ,
    SEARCH,
    WRITE,
    QemuUser,
    allows,
    denied,
    qemu_user,
)
from pbotvm.image.build import Image

# The secmodel part of `virsh capabilities` from libvirt 9.0 (Debian 12), as the tests' private
# daemon answers with Debian's built-in QEMU user and with `user = "root"` in qemu.conf.
CAPS = """<capabilities><host><uuid>x</uuid>
  <secmodel><model>none</model><doi>0</doi></secmodel>
  <secmodel><model>dac</model><doi>0</doi>
    <baselabel type='kvm'>{label}</baselabel><baselabel type='qemu'>{label}</baselabel>
  </secmodel></host></capabilities>"""


def _nameless() -> int:
    """An id no user and no group of this machine has: Debian's libvirt-daemon-system names
    64055 libvirt-qemu, and a test's words must not depend on what else is installed."""
    taken = {user.pw_uid for user in pwd.getpwall()} | {group.gr_gid for group in grp.getgrall()}
    return next(n for n in range(64055, 2**31) if n not in taken)


QEMU_ID = _nameless()
QEMU = QemuUser(QEMU_ID, QEMU_ID, frozenset({QEMU_ID}))


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A directory any user may enter (pytest's own are under a 0700 one)."""
    path = Path(tempfile.mkdtemp(prefix="pbotvm-access-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


def test_the_qemu_user_is_the_dac_base_label() -> None:
    user = qemu_user(CAPS.format(label="+64055:+64055"))
    assert user is not None and (user.uid, user.gid) == (64055, 64055)
    root = qemu_user(CAPS.format(label="+0:+0"))
    assert root is not None and root.uid == 0
    session = "<capabilities><host><secmodel><model>none</model></secmodel></host></capabilities>"
    assert qemu_user(session) is None


def test_the_qemu_user_is_named_when_it_has_a_name() -> None:
    assert QemuUser(0, 0, frozenset({0})).name == "root (uid 0)"
    assert QEMU.name == f"uid {QEMU_ID}"


@pytest.mark.parametrize(("mode", "owner", "group", "need", "ok"), [
    (0o700, 0, 0, SEARCH, False),  # /root
    (0o711, 0, 0, SEARCH, True),  # /var/lib/libvirt/images
    (0o711, 0, 0, READ, False),
    (0o644, 0, 0, READ, True),
    (0o644, 0, 0, READ | WRITE, False),
    (0o600, QEMU_ID, QEMU_ID, READ | WRITE, True),  # handed over to QEMU's user
    (0o060, 0, QEMU_ID, READ | WRITE, True),  # through its group
    (0o064, QEMU_ID, 0, READ, False),  # the owner's bits count, not the others'
])
def test_allows_reads_the_mode_as_the_kernel_does(mode: int, owner: int, group: int,
                                                  need: int, ok: bool) -> None:
    assert allows(mode, owner, group, QEMU, need) is ok


def test_denied_names_the_first_step_in_the_way(open_dir: Path) -> None:
    closed = open_dir / "home"
    (closed / "cache").mkdir(parents=True)
    (closed / "cache" / "disk").write_text("x")
    closed.chmod(0o700)
    why = denied(closed / "cache" / "disk", QEMU, READ)
    assert why is not None and why.startswith(f"{closed} is drwx------ ")
    closed.chmod(0o711)
    assert denied(closed / "cache" / "disk", QEMU, READ) is None
    assert denied(closed / "nothing", QEMU, READ) == f"{closed / 'nothing'} does not exist"


@pytest.fixture
def image_and_state(open_dir: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Image, Path]:
    """An image cache and a state directory in a home only its owner enters (root's, 0700),
    and libvirt's images directory as Debian's package makes it."""
    home = open_dir / "root"
    image = Image(home / ".cache/pbotvm/images/minimal-1")
    image.directory.mkdir(parents=True)
    for path in (image.kernel, image.initrd, image.disk):
        path.write_bytes(path.name.encode())
    home.chmod(0o700)
    images = open_dir / "var/lib/libvirt/images"
    images.mkdir(parents=True)
    images.chmod(0o711)
    monkeypatch.setattr(ld, "IMAGES_DIR", images)
    return image, home / ".local/state/pbotvm/libvirt"


def test_files_move_to_the_images_directory_when_qemu_cannot_read_them(
        image_and_state: tuple[Image, Path]) -> None:
    image, state = image_and_state
    copied, paths = ld.place_for_qemu(QEMU, image, ld.DomainPaths(state), "pbot-vm", "tcg")
    assert paths.state_dir == ld.IMAGES_DIR / "pbotvm-pbot-vm"
    assert copied.directory == paths.state_dir / "image"
    assert copied.disk.read_bytes() == b"disk.qcow2"
    assert stat.S_IMODE(copied.kernel.stat().st_mode) == 0o644
    # A second `up` keeps the copy; a rebuilt image replaces it.
    before = copied.disk.stat().st_ino
    ld.place_for_qemu(QEMU, image, ld.DomainPaths(state), "pbot-vm", "tcg")
    assert copied.disk.stat().st_ino == before
    image.disk.write_bytes(b"rebuilt")
    ld.place_for_qemu(QEMU, image, ld.DomainPaths(state), "pbot-vm", "tcg")
    assert copied.disk.read_bytes() == b"rebuilt"


def test_files_stay_where_qemu_can_read_them(image_and_state: tuple[Image, Path]) -> None:
    image, state = image_and_state
    paths = ld.DomainPaths(state)
    # Root's QEMU, or no DAC model (a session daemon): nothing to do.
    assert ld.place_for_qemu(None, image, paths, "d", "tcg") == (image, paths)
    assert ld.place_for_qemu(QemuUser(0, 0, frozenset({0})), image, paths, "d", "tcg") == (
        image, paths)
    # The operator opened the way: the cache and the state directory are used as they are.
    image.directory.parents[3].chmod(0o711)
    state.mkdir(parents=True)
    assert ld.place_for_qemu(QEMU, image, paths, "d", "tcg") == (image, paths)


def test_a_closed_images_directory_is_one_line_before_anything_is_defined(
        image_and_state: tuple[Image, Path]) -> None:
    image, state = image_and_state
    ld.IMAGES_DIR.chmod(0o700)
    with pytest.raises(LibvirtError) as e:
        ld.place_for_qemu(QEMU, image, ld.DomainPaths(state), "pbot-vm", "tcg")
    message = str(e.value)
    assert "\n" not in message
    assert message.startswith(f"libvirt runs QEMU as uid {QEMU_ID}, which cannot read the domain's "
                              f"files ({ld.IMAGES_DIR} is drwx------ ")
    assert message.endswith(f"let it into {ld.IMAGES_DIR}, or set user = \"root\" in the "
                            "daemon's qemu.conf")
    assert list(ld.IMAGES_DIR.iterdir()) == []  # nothing copied


def test_kvm_closed_to_qemus_user_is_one_line(image_and_state: tuple[Image, Path],
                                              monkeypatch: pytest.MonkeyPatch,
                                              open_dir: Path) -> None:
    kvm = open_dir / "kvm"
    kvm.write_text("")
    kvm.chmod(0o600)
    monkeypatch.setattr(ld, "KVM", kvm)
    image, state = image_and_state
    with pytest.raises(LibvirtError, match=r"cannot open .*kvm \(.* is -rw------- .*\): add it "
                                           r"to that device's group, or set PBOTVM_ACCEL=tcg$"):
        ld.place_for_qemu(QEMU, image, ld.DomainPaths(state), "pbot-vm", "kvm")
