"""The request cgroup's pure parts, and where guest-server makes request cgroups, decided on a
made-up hierarchy (plain files: no root, no cgroupfs)."""

import os
from pathlib import Path

import pytest

from pbotvm.guest import cgroup
from pbotvm.guest.limits import MIB, BoxLimits, Limits
from pbotvm.guest.sandbox import CPU_LIMIT, MEMORY_LIMIT, WALL_LIMIT, limit_hit

# Lines as the kernel writes them (a hybrid host's, a pure cgroup v2 host's).
HYBRID_MOUNTINFO = """\
25 24 0:22 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
31 25 0:26 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
41 25 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""
ESCAPED_MOUNTINFO = "30 24 0:27 / /sys/fs/my\\040cgroups rw shared:4 - cgroup2 cgroup2 rw\n"


@pytest.mark.parametrize(("mountinfo", "expected"), [
    (HYBRID_MOUNTINFO, Path("/sys/fs/cgroup/unified")),
    (ESCAPED_MOUNTINFO, Path("/sys/fs/my cgroups")),
    ("22 1 8:1 / / rw - ext4 /dev/vda rw\n", None),
])
def test_the_cgroup2_mount_is_found(mountinfo: str, expected: Path | None) -> None:
    assert cgroup.mount_point(mountinfo) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("0::/system.slice/pbotvm-guest-server.service\n", "/system.slice/pbotvm-guest-server.service"),
    ("9:name=systemd:/\n4:memory:/x\n0::/\n", "/"),
    ("4:memory:/x\n", None),
])
def test_own_cgroup(text: str, expected: str | None) -> None:
    assert cgroup.own_path(text) == expected


def test_limit_files() -> None:
    files = cgroup.limit_files(Limits(processes=50), BoxLimits(memory_bytes=256 * MIB,
                                                               cpu_weight=20))
    assert files == {"memory.max": str(256 * MIB), "memory.swap.max": "0",
                     "memory.oom.group": "1", "pids.max": "51", "cpu.weight": "20"}


def test_oom_kills_are_counted_from_memory_events() -> None:
    events = "low 0\nhigh 0\nmax 12\noom 2\noom_kill 2\noom_group_kill 1\n"
    assert cgroup.oom_kills(events) == 2
    assert cgroup.oom_kills("") == 0


@pytest.mark.parametrize(("status", "cpu", "timed_out", "memory_killed", "expected"), [
    (137, 0.2, False, True, MEMORY_LIMIT),
    (137, 0.2, False, False, None),  # `kill -9 $$`: no OOM kill was counted
    (1, 0.2, False, True, None),  # a child of the program was killed; the program went on
    (137, 7.95, False, False, CPU_LIMIT),
    (137, 0.2, True, True, WALL_LIMIT),
])
def test_which_limit_stopped_the_program(status: int, cpu: float, timed_out: bool,
                                         memory_killed: bool, expected: str | None) -> None:
    assert limit_hit(status, cpu, Limits(), timed_out, memory_killed) == expected


def _cgroup(path: Path, controllers: str = "cpu io memory pids", procs: str = "") -> Path:
    """A directory with the files the kernel would put in a cgroup (those we touch)."""
    path.mkdir(parents=True, exist_ok=True)
    for name, text in (("cgroup.controllers", controllers), ("cgroup.procs", procs),
                       ("cgroup.subtree_control", ""), ("cgroup.kill", "")):
        (path / name).write_text(text)
    return path


def test_a_delegated_cgroup_hands_its_controllers_to_requests(tmp_path: Path) -> None:
    service = _cgroup(tmp_path / "system.slice/g.service", procs=f"{os.getpid()}\n")
    _cgroup(service / cgroup.SERVER_LEAF)
    stale = service / f"{cgroup.REQUEST_PREFIX}1234"
    stale.mkdir()  # empty: its supervisor is gone
    assert cgroup.make_base(tmp_path, "/system.slice/g.service") == service
    assert (service / cgroup.SERVER_LEAF / "cgroup.procs").read_text() == str(os.getpid())
    assert (service / "cgroup.subtree_control").read_text() == "+cpu +memory +pids"
    assert not stale.exists()


def test_in_the_root_cgroup_requests_go_under_a_child_of_it(tmp_path: Path) -> None:
    _cgroup(tmp_path, procs="1\n57\n")
    _cgroup(tmp_path / cgroup.BASE)
    assert cgroup.make_base(tmp_path, "/") == tmp_path / cgroup.BASE
    for path in (tmp_path, tmp_path / cgroup.BASE):
        assert (path / "cgroup.subtree_control").read_text() == "+cpu +memory +pids"


@pytest.mark.parametrize(("controllers", "procs", "reason"), [
    ("hugetlb", "", "offers no cpu, memory, pids controller"),  # a hybrid host's v2 part
    ("cpu memory", "", "offers no pids controller"),
    ("cpu memory pids", "1\n", "holds other processes too"),  # e.g. a login session's
])
def test_where_requests_cannot_have_cgroups_the_reason_is_given(
        tmp_path: Path, controllers: str, procs: str, reason: str) -> None:
    here = _cgroup(tmp_path / "user.slice", controllers, procs)
    with pytest.raises(cgroup.Unavailable, match=reason):
        cgroup.make_base(tmp_path, "/user.slice")
    assert (here / "cgroup.subtree_control").read_text() == ""
