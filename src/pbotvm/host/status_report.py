"""``pbotvm status``: each machine's guests as the running vm-server sees them, for a person,
read from the status files it keeps (``machines.machine_state``); and the one reading of a
guest's state (idle, serving, reverting, silent) that the metrics share.

A machine is listed with one row per guest, so a machine served by several guests only adds
rows. Files a vm-server that no longer runs left behind are not listed.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from pbotvm.host.machines.machine_state import Status, read_status
from pbotvm.logs import escape_controls

STATES = ("idle", "serving", "reverting", "silent")
COLUMNS = ("GUEST", "STATE", "SINCE", "REQUESTS", "TIME-OUTS", "REVERTS", "LAST REVERT", "P50",
           "P95")


def state_of(status: Status, now: float) -> tuple[str, float]:
    """The guest's state and since when (``time.time()``): a revert or a request holds it,
    or its last heartbeat is too old (silent), or it waits for work (idle)."""
    if status.reverting_since is not None:
        return "reverting", status.reverting_since
    if status.serving_since is not None:
        return "serving", status.serving_since
    if status.last_beat is None or now - status.last_beat > status.stale_after:
        return "silent", status.started if status.last_beat is None else status.last_beat
    return "idle", status.free_since


def heartbeat_age(status: Status, now: float) -> float:
    """Seconds since the guest's last heartbeat (since vm-server began to watch it, if none
    came)."""
    return now - (status.started if status.last_beat is None else status.last_beat)


def running(state_dir: Path) -> list[Status]:
    """The guests of the vm-servers that run with this state directory. OSError when its
    ``machines`` directory cannot be read (a missing one holds nobody)."""
    try:
        names = os.listdir(state_dir / "machines")  # not glob, which hides a refusal
    except FileNotFoundError:
        return []
    found = (read_status(state_dir / "machines" / name)
             for name in sorted(names) if name.endswith(".json"))
    return [status for status in found if status is not None and status.server_running()]


def table(statuses: list[Status], now: float) -> str:
    """The report: a line per machine (and its vm-server), then a row per guest."""
    groups: dict[tuple[str, int], list[list[str]]] = {}
    for status in sorted(statuses, key=lambda s: (s.machine, s.pid, s.guest)):
        groups.setdefault((status.machine, status.pid), []).append(_row(status, now))
    rows = [list(COLUMNS), *(row for group in groups.values() for row in group)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]

    def line(cells: list[str]) -> str:
        return "  " + "  ".join(cell.ljust(width) for cell, width in zip(cells, widths,
                                                                         strict=True)).rstrip()

    lines = []
    for (machine, pid), group in groups.items():
        lines += [f"{escape_controls(machine)} (vm-server pid {pid})", line(rows[0])]
        lines += [line(row) for row in group]
    return "\n".join(lines)


def _row(status: Status, now: float) -> list[str]:
    state, since = state_of(status, now)
    last = "-"
    if status.last_revert_reason is not None:
        took = ("under way" if status.last_revert_seconds is None
                else _seconds(status.last_revert_seconds))
        last = f"{status.last_revert_reason} ({took})"
    cells = [status.guest, state, f"{_clock(since, now)} ({_span(now - since)})",
             str(status.requests), str(status.timeouts), str(status.reverts), last,
             _seconds(status.p50), _seconds(status.p95)]
    # A revert's reason quotes what the guest said (the limit that killed a program).
    return [escape_controls(cell) for cell in cells]


def _clock(at: float, now: float) -> str:
    """The time of day, with the date when it is not today's."""
    local = time.localtime(at)
    same_day = local[:3] == time.localtime(now)[:3]
    return time.strftime("%H:%M:%S" if same_day else "%Y-%m-%d %H:%M:%S", local)


def _span(seconds: float) -> str:
    whole = max(int(seconds), 0)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"
