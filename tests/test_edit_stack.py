"""Edits through the real processes: vm-client -> vm-server (-> PTY guest), and vm-exec from a
shell beside it, sharing one history store."""

from __future__ import annotations

import json
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from pbotvm.host.request.edit import grammar, worddiff
from pbotvm.host.request.edit.store import FILENAME, HistoryStore
from pbotvm.text import truncation_marker
from tests.conftest import bystander, make_stack
from tests.support.stack import BIN, LocalStack

pytestmark = pytest.mark.root


def vm_exec(stack: LocalStack, line: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "vm-exec"), line], env={**stack.env, **env}, text=True,
                          capture_output=True, timeout=60, check=False)


def stored(state: Path, channel: str) -> list[str]:
    store = HistoryStore.open(state)
    try:
        return list(store.history(channel, "sh")[:])
    finally:
        store.close()


def store_bytes(stack: LocalStack) -> int:
    state = Path(stack.env["PBOTVM_STATE_DIR"])
    return sum(path.stat().st_size for path in state.glob(FILENAME + "*"))


def attack(stack: LocalStack, code: str, clients: int, channel: str) -> list[str]:
    """``clients`` requests of one nick at once."""
    with ThreadPoolExecutor(clients) as pool:
        return list(pool.map(lambda _: stack.ask(code, nick="attacker", channel=channel),
                             range(clients)))


def test_eight_clients_edit_their_channels_at_once(stack: LocalStack) -> None:
    clients, rounds = 8, 20

    def client(k: int) -> list[str]:
        replies = []
        for r in range(rounds):
            code = f"-lang=sh echo c{k}r0" if r == 0 else f"-lang=sh s/r{r - 1}$/r{r}/"
            replies.append(stack.ask(code, channel=f"#conc{k}"))
        return replies

    def copier(n: int) -> list[str]:
        # vm-exec from a shell, at the same time: copy reads another channel's newest entry
        # and writes this one's history, without the guest.
        out = []
        for r in range(rounds):
            line = json.dumps({"channel": f"#cli{n}", "code": f"-lang=sh copy #conc{r % 8}"})
            out.append(vm_exec(stack, line).stdout.strip())
        return out

    with ThreadPoolExecutor(clients + 2) as pool:
        edits = [pool.submit(client, k) for k in range(clients)]
        copies = [pool.submit(copier, n) for n in range(2)]
        replies = [future.result() for future in edits]
        copied = [line for future in copies for line in future.result()]
    state = Path(stack.env["PBOTVM_STATE_DIR"])
    for k in range(clients):
        assert replies[k] == [f"c{k}r{r}" for r in range(rounds)]
        assert stored(state, f"#conc{k}") == [f"echo c{k}r{r}" for r in range(rounds)][::-1]
    wanted = {f"echo c{k}r{r}" for k in range(clients) for r in range(rounds)}
    assert all(line in wanted or line.startswith("No history for #conc") for line in copied)
    for n in range(2):
        assert set(stored(state, f"#cli{n}")) <= wanted


def test_a_corrupt_store_gives_one_line_and_the_code_runs(stack: LocalStack,
                                                          tmp_path: Path) -> None:
    (tmp_path / FILENAME).write_bytes(b"garbage" * 1000)
    done = vm_exec(stack, "-lang=sh echo hello", PBOTVM_STATE_DIR=str(tmp_path))
    assert (done.returncode, done.stdout.strip()) == (0, "hello")
    assert len(done.stderr.splitlines()) == 1
    assert "history store unusable" in done.stderr and FILENAME in done.stderr


def test_a_private_message_keeps_a_history_but_never_same_output(stack: LocalStack) -> None:
    long = "-lang=sh echo " + "p" * 60
    assert stack.ask(long, channel="somenick") == "p" * 60
    assert stack.ask(long, channel="somenick") == "p" * 60
    assert stack.ask("-lang=sh show", channel="somenick") == "echo " + "p" * 60
    assert stack.ask("-lang=sh copy somenick", channel="#pm") == "echo " + "p" * 60


# Issue 19: the line that grew the code to 100 MB inside vm-server's loop (another client
# waited 16 s, the history grew by 213 MB); ten of them took 1.19 GB and 46 s.
DOT_BOMB = "-lang=sh " + " and ".join(["replace all '.' with '..........'"] * 8)


def test_an_edit_that_grows_the_code_without_end_is_refused_and_nobody_waits(
        stack: LocalStack) -> None:
    assert stack.ask("-lang=sh echo .", nick="attacker", channel="#bomb") == "."
    before = store_bytes(stack)
    with bystander(stack):
        assert attack(stack, DOT_BOMB, 10, "#bomb") == [grammar.TOO_LONG] * 10
    assert stored(Path(stack.env["PBOTVM_STATE_DIR"]), "#bomb") == ["echo ."]
    assert store_bytes(stack) - before < 1024 * 1024


def test_backtracking_regexes_delay_nobody(stack: LocalStack) -> None:
    # 28 of these at once made another client wait 28 s.
    entry = "-lang=sh echo " + "a" * 40 + "b"
    assert stack.ask(entry, nick="attacker", channel="#regex") == "a" * 40 + "b"
    with bystander(stack):
        replies = attack(stack, "-lang=sh s/(a|aa)+$/x/", 6, "#regex")
    assert replies == [grammar.REGEX_TOO_SLOW] * 6


def test_a_diff_of_long_entries_delays_nobody(stack: LocalStack) -> None:
    # Entries of 14 KB (made by a few replaces) once took diff 25 s inside the loop.
    words = "a " * 7000
    for end in ("x", "y"):
        stack.ask(f"-lang=sh : {end} {words}{end}", nick="attacker", channel="#diff")
    with bystander(stack):
        assert attack(stack, "-lang=sh diff", 4, "#diff") == [worddiff.TOO_LARGE] * 4


def test_every_edit_reply_passes_the_output_cap(tmp_path: Path) -> None:
    # show answered 100 000 006 bytes, copy and diff 10 MB.
    limit = 4096
    with make_stack(tmp_path, PBOTVM_TIMEOUT="5", PBOTVM_OUTPUT_LIMIT=str(limit)) as s:
        # Sent whole, the code is not an edit's: it runs, and is kept, as it is.
        for letter in "xy":
            assert s.ask("-lang=sh : " + letter * 20000, channel="#big") == \
                "Success (no output)."
        for command, letter in (("show", "y"), ("undo", "x"), ("copy #big", "x")):
            code = ": " + letter * 20000
            wanted = code[:limit] + "\n" + truncation_marker(len(code) - limit)
            assert s.ask(f"-lang=sh {command}", channel="#big") == wanted, command
