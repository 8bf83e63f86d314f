"""The channels' code histories and last outputs, in one SQLite file (the only SQLite user).

The original kept ``history/<channel>-<lang>.hist`` and ``.last-output`` files, named after
the channel or nick as given (a ``/`` in a name reached other directories) and rewritten whole
by whichever vm-exec came last. Here a channel or nick is only ever a value in a row. A
request reads a history in a read transaction (a snapshot: WAL lets readers go on while a
writer commits), works out its change without holding any lock (an edit may take a second),
then writes it in a short ``BEGIN IMMEDIATE`` transaction, only if the history's generation
is still the one it read. So vm-server's workers and a ``vm-exec`` in a shell can edit at
once without losing or tearing an entry, and no slow edit makes another request wait.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import overload

from pbotvm.host import state_files
from pbotvm.host.request.edit.grammar import MAX_HISTORY, HistoryChange

FILENAME = "history.sqlite3"
BUSY_TIMEOUT = 5.0  # seconds to wait for another process's transaction
_PAGE = 16  # history entries fetched at once: most requests need one or two

_SCHEMA = """
CREATE TABLE IF NOT EXISTS history (
    channel TEXT NOT NULL,
    lang TEXT NOT NULL,
    seq INTEGER NOT NULL,
    code TEXT NOT NULL,
    PRIMARY KEY (channel, lang, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS generation (
    channel TEXT NOT NULL,
    lang TEXT NOT NULL,
    changes INTEGER NOT NULL,
    PRIMARY KEY (channel, lang)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS last_output (
    channel TEXT NOT NULL,
    lang TEXT NOT NULL,
    at REAL NOT NULL,
    output TEXT NOT NULL,
    PRIMARY KEY (channel, lang)
) WITHOUT ROWID;
"""


@contextmanager
def _alone(path: Path) -> Iterator[None]:
    """An exclusive lock on a file beside the store, for its one-time set-up."""
    try:
        lock = state_files.open_file(path.with_name(path.name + ".init"), os.O_RDONLY)
    except OSError as e:
        raise StoreError(f"{path}: {e}") from None
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield
    finally:
        os.close(lock)


class StoreError(Exception):
    """The store cannot be used; the message says which file and why, in one line."""


class HistoryStore:
    """One connection to the store file. Use it from one thread."""

    def __init__(self, connection: sqlite3.Connection, path: Path) -> None:
        self._db = connection
        self.path = path

    @classmethod
    def open(cls, state_dir: Path) -> HistoryStore:
        path = state_dir / FILENAME
        try:
            state_files.make_dir(state_dir)
            # Made 0600 before SQLite opens it: its -wal and -shm files take its mode.
            state_files.make_file(path)
            db = sqlite3.connect(path, timeout=BUSY_TIMEOUT, isolation_level=None)
        except (OSError, sqlite3.Error) as e:
            raise StoreError(f"{path}: {e}") from None
        store = cls(db, path)
        with store.guarded():
            if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                # A new file: whoever switches it to WAL needs it alone, and SQLite answers
                # "locked" at once (no busy wait) to another process doing the same.
                with _alone(path):
                    db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")  # WAL stays consistent; a crash may lose
            db.executescript(_SCHEMA)                # the last commits, not tear them
        return store

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def guarded(self) -> Iterator[None]:
        """Any SQLite failure (corrupt file, read-only, locked too long) as a StoreError."""
        try:
            yield
        except sqlite3.Error as e:
            raise StoreError(f"{self.path}: {e}") from None

    @contextmanager
    def transaction(self, *, write: bool = True) -> Iterator[None]:
        """A write transaction (other writers wait until it ends), or a read transaction
        (one snapshot of the store, which nobody waits for); rolled back on error."""
        with self.guarded():
            self._db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def generation(self, channel: str, lang: str) -> int:
        """How many changes the history of ``channel`` in ``lang`` has had."""
        row = self._db.execute("SELECT changes FROM generation WHERE channel = ? AND lang = ?",
                               (channel, lang)).fetchone()
        return 0 if row is None else int(row[0])

    def history(self, channel: str, lang: str) -> Sequence[str]:
        """The entries of ``channel`` in ``lang``, newest first, read as they are indexed."""
        return _StoredHistory(self._db, channel, lang)

    def apply(self, lang: str, change: HistoryChange, keep: int = MAX_HISTORY) -> None:
        """Drop the newest ``change.drop`` entries, push ``change.push``, keep ``keep``."""
        key = (change.channel, lang)
        db = self._db
        db.execute("INSERT INTO generation (channel, lang, changes) VALUES (?, ?, 1) "
                   "ON CONFLICT DO UPDATE SET changes = changes + 1", key)
        if change.drop:
            db.execute("DELETE FROM history WHERE channel = ? AND lang = ? AND seq IN ("
                       "SELECT seq FROM history WHERE channel = ? AND lang = ? "
                       "ORDER BY seq DESC LIMIT ?)", (*key, *key, change.drop))
        if change.push:
            (top,) = db.execute("SELECT COALESCE(MAX(seq), 0) FROM history "
                                "WHERE channel = ? AND lang = ?", key).fetchone()
            db.executemany("INSERT INTO history (channel, lang, seq, code) VALUES (?, ?, ?, ?)",
                           [(*key, top + n, code)
                            for n, code in enumerate(reversed(change.push), 1)])
            # Entries are numbered without gaps (drops take the newest, pushes go on top),
            # so the newest ``keep`` are the last ``keep`` numbers: an index range to cut.
            db.execute("DELETE FROM history WHERE channel = ? AND lang = ? AND seq <= ?",
                       (*key, top + len(change.push) - keep))

    def last_output(self, channel: str, lang: str) -> tuple[float, str] | None:
        """When the last answer in ``channel`` and ``lang`` was printed, and its text."""
        with self.guarded():
            row = self._db.execute("SELECT at, output FROM last_output "
                                   "WHERE channel = ? AND lang = ?", (channel, lang)).fetchone()
        return None if row is None else (float(row[0]), str(row[1]))

    def set_last_output(self, channel: str, lang: str, at: float, output: str) -> None:
        with self.guarded():
            self._db.execute("INSERT OR REPLACE INTO last_output (channel, lang, at, output) "
                             "VALUES (?, ?, ?, ?)", (channel, lang, at, output))


class _StoredHistory(Sequence[str]):
    """A history read page by page as the grammar asks for entries (within its transaction)."""

    def __init__(self, db: sqlite3.Connection, channel: str, lang: str) -> None:
        self._db = db
        self._key = (channel, lang)
        self._entries: list[str] = []
        self._complete = False

    def _fetch_to(self, index: int) -> None:
        while len(self._entries) <= index and not self._complete:
            want = max(_PAGE, index + 1 - len(self._entries))
            rows = self._db.execute("SELECT code FROM history WHERE channel = ? AND lang = ? "
                                    "ORDER BY seq DESC LIMIT ? OFFSET ?",
                                    (*self._key, want, len(self._entries))).fetchall()
            self._entries.extend(row[0] for row in rows)
            self._complete = len(rows) < want

    @overload
    def __getitem__(self, index: int) -> str: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[str]: ...

    def __getitem__(self, index: int | slice) -> str | Sequence[str]:
        if isinstance(index, slice):
            self._fetch_to(len(self) - 1)
            return self._entries[index]
        if index < 0:
            raise IndexError("a history is read from its newest entry")
        self._fetch_to(index)
        return self._entries[index]

    def __len__(self) -> int:
        (count,) = self._db.execute("SELECT COUNT(*) FROM history WHERE channel = ? AND lang = ?",
                                    self._key).fetchone()
        return int(count)
