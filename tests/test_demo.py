"""The README's main command: ``pbotvm demo`` answers through the PTY VM and the real guest."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

PBOTVM = Path(sys.executable).parent / "pbotvm"

# What every demo request must get back, in order (the reply line after "<pbot>").
ANSWERS = ["hello from Linux as vm", "45", "hello world", "[a b]", "42", "err",
           "Language 'nosuchlang' is not supported.",
           # Two at once, each on a guest of the demo's pool of two.
           "alice done", "bob done"]


def replies(output: str) -> list[str]:
    return [line.removeprefix("<pbot>   ").rsplit("   (", 1)[0]
            for line in output.splitlines() if line.startswith("<pbot>   ")]


def run_demo(*args: str, timeout: float) -> list[str]:
    proc = subprocess.run([str(PBOTVM), "demo", *args], capture_output=True, text=True,
                          timeout=timeout, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.rstrip().endswith("Stopped.")
    return replies(proc.stdout)


@pytest.mark.root
def test_demo_on_the_pty_vm() -> None:
    assert run_demo("--pty", timeout=120) == ANSWERS


@pytest.mark.vm
def test_demo_on_the_real_guest() -> None:
    got = run_demo(timeout=600)
    assert got[:len(ANSWERS)] == ANSWERS
    # The runaway loop is stopped (CPU limit or time-out), the VM reverted, and the file it
    # wrote is gone for the next request.
    assert got[len(ANSWERS)].startswith(("[Killed", "[Timed-out]")), got
    assert got[len(ANSWERS) + 1] == "cat: /tmp/left-behind: No such file or directory"
