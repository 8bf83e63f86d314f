"""The history store and the edit session: bounds, paging, processes at once, a broken store,
and the "Same output." rule (the original's show_output, observed thresholds in
edit_sequences.json)."""

from __future__ import annotations

import logging
import multiprocessing
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pbotvm.host.request.edit import store as store_module
from pbotvm.host.request.edit.grammar import HistoryChange
from pbotvm.host.request.edit.session import HISTORY_BUSY, SAME_OUTPUT, EditSession
from pbotvm.host.request.edit.store import FILENAME, HistoryStore


def entries(state: Path, channel: str, lang: str = "sh") -> list[str]:
    store = HistoryStore.open(state)
    try:
        return list(store.history(channel, lang)[:])
    finally:
        store.close()


def test_push_drop_and_bound(tmp_path: Path) -> None:
    store = HistoryStore.open(tmp_path)
    for n in range(30):
        with store.transaction():
            store.apply("sh", HistoryChange("#c", 0, (f"echo {n}",)), keep=10)
    assert entries(tmp_path, "#c") == [f"echo {n}" for n in range(29, 19, -1)]
    with store.transaction():
        store.apply("sh", HistoryChange("#c", 3, ("new", "newer")[::-1]), keep=10)
    assert entries(tmp_path, "#c")[:3] == ["newer", "new", "echo 26"]
    assert entries(tmp_path, "#c", "bash") == []  # per language


def test_history_is_read_page_by_page(tmp_path: Path) -> None:
    store = HistoryStore.open(tmp_path)
    with store.transaction():
        store.apply("sh", HistoryChange("#c", 0, tuple(f"e{n}" for n in range(40, 0, -1))))
    history = store.history("#c", "sh")
    assert (history[0], history[35], len(history)) == ("e40", "e5", 40)
    with pytest.raises(IndexError):
        history[40]


def test_a_multi_line_entry_stays_one_entry(tmp_path: Path) -> None:
    session = EditSession(HistoryStore.open(tmp_path), "#c", "sh")
    session.edit("echo a\necho b")
    assert session.edit("show").reply == "echo a\necho b"
    assert session.edit("undo").reply == "No more undos remaining."


def test_malformed_edits_leave_the_store_as_it_was(tmp_path: Path) -> None:
    session = EditSession(HistoryStore.open(tmp_path), "#c", "sh")
    session.edit("echo one")
    session.edit("echo two")
    for code in ["s/a/b", "s/(/x/", "s/a/b/q", "replace 'x\\' with 'y\\'", "remove nope 'x'",
                 "prepend 'x", "append 'x", "remove 'x", "s/zzz/y/", "replace 'qq' with 'z'",
                 "undo undo undo"]:
        assert session.edit(code).reply is not None, code
        assert entries(tmp_path, "#c") == ["echo two", "echo one"], code


def at_once(rounds_of: Callable[..., None], state: Path, clients: int,
            rounds: int) -> dict[int, list[Any]]:
    """``clients`` processes running ``rounds_of`` on the store in ``state`` from the same
    instant; each client's list of results."""
    context = multiprocessing.get_context("fork")
    start = context.Event()
    results: multiprocessing.Queue[tuple[int, list[Any]]] = context.Queue()
    workers = [context.Process(target=rounds_of, args=(str(state), k, rounds, start, results))
               for k in range(clients)]
    for worker in workers:
        worker.start()
    start.set()
    got = dict(results.get(timeout=120) for _ in workers)
    for worker in workers:
        worker.join(10)
        assert worker.exitcode == 0
    return got


def _edit_rounds(state: str, client: int, rounds: int, start: multiprocessing.synchronize.Event,
                 results: multiprocessing.Queue[tuple[int, list[str]]]) -> None:
    start.wait()
    codes = []
    for r in range(rounds):
        mine = EditSession.open(Path(state), f"#c{client}", "sh")
        edit = mine.edit(f"echo c{client}r0" if r == 0 else f"s/r{r - 1}$/r{r}/")
        codes.append(edit.code)
        EditSession.open(Path(state), "#shared", "sh").edit(f"echo c{client}r{r}")
    results.put((client, codes))


def test_eight_processes_edit_at_once(tmp_path: Path) -> None:
    clients, rounds = 8, 20
    got = at_once(_edit_rounds, tmp_path, clients, rounds)
    for k in range(clients):
        wanted = [f"echo c{k}r{r}" for r in range(rounds)]
        assert got[k] == wanted  # each edit saw its own channel's newest entry
        assert entries(tmp_path, f"#c{k}") == wanted[::-1]
    shared = entries(tmp_path, "#shared")
    assert sorted(shared) == sorted(f"echo c{k}r{r}" for k in range(clients)
                                    for r in range(rounds))  # none lost, none doubled
    for k in range(clients):  # each client's entries in its own order
        mine = [entry for entry in shared if entry.startswith(f"echo c{k}r")]
        assert mine == [f"echo c{k}r{r}" for r in range(rounds)][::-1]


def _appends(state: str, client: int, rounds: int, start: multiprocessing.synchronize.Event,
             results: multiprocessing.Queue[tuple[int, list[str | None]]]) -> None:
    start.wait()
    replies = []
    for r in range(rounds):
        session = EditSession.open(Path(state), "#same", "sh")
        replies.append(session.edit(f"append 'c{client}r{r}'").reply)
        session.close()
    results.put((client, replies))


def test_edits_of_one_history_at_once_lose_nothing(tmp_path: Path) -> None:
    # Each edit is worked out on a snapshot: one that another edit overtook runs again on
    # the new history (or says so), and never drops what the other wrote.
    EditSession.open(tmp_path, "#same", "sh").edit("echo")
    clients, rounds = 6, 15
    got = at_once(_appends, tmp_path, clients, rounds)
    top = entries(tmp_path, "#same")[0].split()
    made = [f"c{k}r{r}" for k in range(clients) for r in range(rounds) if got[k][r] is None]
    assert {reply for replies in got.values() for reply in replies} <= {None, HISTORY_BUSY}
    assert sorted(top[1:]) == sorted(made)
    assert len(made) > clients * rounds // 2


def test_a_corrupt_store_costs_one_line(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / FILENAME).write_bytes(b"this is not a database" * 100)
    with caplog.at_level(logging.WARNING, logger="pbotvm.edit"):
        session = EditSession.open(tmp_path, "#c", "sh")
        edit = session.edit("echo hi")
        assert (edit.reply, edit.code, edit.only_show) == (None, "echo hi", False)
        assert session.edit("show").reply == "No recent code to show."
        assert session.answer("x" * 60 + "\n", factoid=False) == "x" * 60 + "\n"
    assert len(caplog.records) == 1
    assert FILENAME in caplog.records[0].getMessage()
    assert "not a database" in caplog.records[0].getMessage()


def test_a_state_dir_that_cannot_be_made(tmp_path: Path,
                                         caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "file").write_text("")
    with caplog.at_level(logging.WARNING, logger="pbotvm.edit"):
        session = EditSession.open(tmp_path / "file" / "state", "#c", "sh")
        assert session.edit("s/a/b/").reply == "No recent code to change."
    assert len(caplog.records) == 1


def test_a_store_locked_too_long(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_module, "BUSY_TIMEOUT", 0.1)
    EditSession.open(tmp_path, "#c", "sh").edit("echo before")
    other = sqlite3.connect(tmp_path / FILENAME, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        with caplog.at_level(logging.WARNING, logger="pbotvm.edit"):
            session = EditSession.open(tmp_path, "#c", "sh")
            assert session.edit("echo during").code == "echo during"
            assert session.answer("out\n", factoid=False) == "out\n"
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert len(caplog.records) == 1
    assert "locked" in caplog.records[0].getMessage()
    assert entries(tmp_path, "#c") == ["echo before"]


LONG = "x" * 50 + "\n"  # observed: 50 visible characters (and the newline) qualify


@pytest.mark.parametrize(("first", "second", "channel", "factoid", "paste", "gap", "same"), [
    (LONG, LONG, "#c", False, False, 1, True),
    ("x" * 49 + "\n", "x" * 49 + "\n", "#c", False, False, 1, False),  # observed
    (LONG, LONG, "#c", False, False, 240, True),
    (LONG, LONG, "#c", False, False, 240.5, False),
    (LONG, "y" * 50 + "\n", "#c", False, False, 1, False),
    (LONG, LONG, "nick", False, False, 1, False),  # observed: not in a private message
    (LONG, LONG, "#c", True, False, 1, False),  # observed: not for a factoid
    (LONG, LONG, "#c", False, True, 1, False),  # a pasted answer is neither
])
def test_same_output(tmp_path: Path, first: str, second: str, channel: str, factoid: bool,
                     paste: bool, gap: float, same: bool) -> None:
    session = EditSession(HistoryStore.open(tmp_path), channel, "sh")
    assert session.answer(first, factoid=False, now=1000.0) == first
    answer = session.answer(second, factoid=factoid, paste=paste, now=1000.0 + gap)
    assert answer == (SAME_OUTPUT if same else second)


def test_same_output_counts_from_the_printed_answer(tmp_path: Path) -> None:
    session = EditSession(HistoryStore.open(tmp_path), "#c", "sh")
    assert session.answer(LONG, factoid=False, now=0.0) == LONG
    assert session.answer(LONG, factoid=False, now=200.0) == SAME_OUTPUT
    assert session.answer(LONG, factoid=False, now=300.0) == LONG  # 300 s after the print
    other = EditSession(HistoryStore.open(tmp_path), "#c", "bash")
    assert other.answer(LONG, factoid=False, now=301.0) == LONG  # per language
    factoid = EditSession(HistoryStore.open(tmp_path), "#d", "sh")
    assert factoid.answer(LONG, factoid=True, now=0.0) == LONG
    assert factoid.answer(LONG, factoid=False, now=1.0) == SAME_OUTPUT  # observed
