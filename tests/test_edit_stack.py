"""Edits through the real processes: vm-client -> vm-server (-> PTY guest), and vm-exec from a
shell beside it, sharing one history store."""

from __future__ import annotations

import json
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pbotvm.host.edit.store import FILENAME, HistoryStore
from pbotvm.host.stack import BIN, LocalStack


def vm_exec(stack: LocalStack, line: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "vm-exec"), line], env={**stack.env, **env}, text=True,
                          capture_output=True, timeout=60, check=False)


def stored(state: Path, channel: str) -> list[str]:
    store = HistoryStore.open(state)
    try:
        return list(store.history(channel, "sh")[:])
    finally:
        store.close()


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
