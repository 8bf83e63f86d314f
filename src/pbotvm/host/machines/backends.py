"""Which backend runs a machine's guest (``guest.Guest``): the operator's revert command when
there is one, else the guest that ``pbotvm vm up`` or ``pbotvm pty run`` recorded for the
machine's lines in the state directory, else the libvirt domain the machine names (the
original's way). vm-server, vm-watchdog and vm-exec all find it here, so they agree.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import replace

from pbotvm.config import HostSettings, Machine
from pbotvm.host.machines import libvirt_domain, libvirt_remote, ptyvm, qemu
from pbotvm.host.machines.command import CommandGuest
from pbotvm.host.machines.guest import Guest

KINDS = ("qemu", "libvirt", "pty")


def guest_for(settings: HostSettings, machine: Machine, kind: str = "auto",
              env: Mapping[str, str] | None = None) -> Guest:
    """The backend of ``machine`` (see the module's docstring); ``kind`` names one instead
    of looking (``qemu``, ``libvirt``, ``pty``)."""
    env = os.environ if env is None else env
    found: Guest | None
    if machine.uri:  # a guest on another host: only libvirt reaches it
        found = libvirt_remote.RemoteGuest(machine, settings, env)
    elif kind == "qemu":
        found = qemu.QemuGuest.of(settings, machine, env)
    elif kind == "pty":
        found = ptyvm.PtyGuest.of(settings, machine)
    elif kind == "libvirt":
        found = libvirt_domain.LibvirtGuest.of(settings, machine, env)
    else:
        found = (qemu.QemuGuest.recorded(settings, machine, env)
                 or ptyvm.PtyGuest.recorded(settings, machine))
        if found is None and not settings.revert_command:
            found = libvirt_domain.LibvirtGuest.of(settings, machine, env)
    if settings.revert_command:
        return CommandGuest(machine, settings.revert_command, settings.snapshot, found)
    assert found is not None
    return found


def with_recorded_guests(settings: HostSettings,
                         env: Mapping[str, str]) -> tuple[HostSettings, str | None]:
    """The settings with the default machine on the guests ``vm up`` (``qemu``) or
    ``libvirt up --guests N`` recorded in the state directory, and a log line saying which;
    as they were when none is recorded there or the operator says where the lines are."""
    found = qemu.with_vm_up_guest(settings, env)
    pool = libvirt_domain.recorded_pool(settings.state_dir)
    if found[1] is not None or not pool or qemu.lines_configured(env):
        return found
    default = settings.machines.resolve()
    machine = replace(default, guests=tuple(pool))
    machines = replace(settings.machines,
                       machines={**settings.machines.machines, machine.name: machine})
    line = (f"{machine.name}: the {len(pool)} domains `pbotvm libvirt up` started: "
            f"{', '.join(guest.domain for guest in pool)}")
    return replace(settings, machines=machines), line
