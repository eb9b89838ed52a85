"""A SQLite write-ahead journal of buffered entries, so a crash loses nothing.

Each entry is inserted (one small transaction) before ``queue_entry`` returns
and deleted once its flush succeeded or it was dead-lettered. The database runs
in WAL mode. ``durability="normal"`` uses ``synchronous=NORMAL``: a commit is in
the WAL file when ``append`` returns, so it survives the process being killed
(SIGKILL), but not a power loss. ``durability="fsync"`` uses ``synchronous=FULL``:
every commit is fsynced, which also survives power loss, at the price of one
fsync per entry.

Entries are stored with `pickle`; a journal is a private file of the process
that writes it and must not be loaded from an untrusted source.
"""

from __future__ import annotations

import os
import pickle
import sqlite3
import threading
from collections.abc import Iterable
from typing import Any, Literal, NamedTuple

__all__ = ["Durability", "EntryJournal", "JournalRow"]

Durability = Literal["normal", "fsync"]
_SYNCHRONOUS = {"normal": "NORMAL", "fsync": "FULL"}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS buffered_entries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    uuid TEXT NOT NULL,
    source TEXT NOT NULL,
    priority INTEGER NOT NULL,
    queued_at_wall REAL NOT NULL,
    payload BLOB NOT NULL
)
"""


class JournalRow(NamedTuple):
    """An entry read back from the journal."""

    id: int
    uuid: str
    source: str
    priority: int
    queued_at_wall: float
    entry: Any


class EntryJournal:
    """Appends, deletes and reads back buffered entries in one SQLite file.

    Thread-safe: one connection guarded by a lock. One live journal per file.

    Args:
        path: the SQLite file (created if missing).
        durability: ``"normal"`` (survives a killed process) or ``"fsync"``
            (also survives power loss; one fsync per appended entry).
    """

    def __init__(self, path: str | os.PathLike[str], durability: Durability = "normal") -> None:
        if durability not in _SYNCHRONOUS:
            raise ValueError(f"durability must be 'normal' or 'fsync', got {durability!r}")
        self.path = os.fspath(path)
        self.durability = durability
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute(f"PRAGMA synchronous={_SYNCHRONOUS[durability]}")
        self._conn.execute(_SCHEMA)
        self._closed = False

    def append(
        self, uuid: str, source: str, priority: int, queued_at_wall: float, entry: Any
    ) -> int:
        """Store one entry durably (per ``durability``) and return its row id.

        Raises:
            TypeError: the entry cannot be pickled; nothing was stored.
        """
        try:
            payload = pickle.dumps(entry, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:
            raise TypeError(
                f"entry {uuid!r} cannot be written to the journal (pickle failed: {exc})"
            ) from exc
        with self._lock:
            cursor = self._conn.execute(
                "INSERT INTO buffered_entries (uuid, source, priority, queued_at_wall, payload)"
                " VALUES (?, ?, ?, ?, ?)",
                (uuid, source, priority, queued_at_wall, payload),
            )
        row_id = cursor.lastrowid
        assert row_id is not None
        return row_id

    def remove(self, ids: Iterable[int | None]) -> None:
        """Delete the given rows in one transaction (None ids are ignored)."""
        rows = [(row_id,) for row_id in ids if row_id is not None]
        if not rows:
            return
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.executemany("DELETE FROM buffered_entries WHERE id = ?", rows)
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def pending(self) -> list[JournalRow]:
        """Every stored entry, oldest first."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT id, uuid, source, priority, queued_at_wall, payload"
                " FROM buffered_entries ORDER BY id"
            ).fetchall()
        return [
            JournalRow(row_id, uuid, source, priority, wall, pickle.loads(payload))
            for row_id, uuid, source, priority, wall, payload in rows
        ]

    def __len__(self) -> int:
        with self._lock:
            (count,) = self._conn.execute("SELECT COUNT(*) FROM buffered_entries").fetchone()
        return int(count)

    def close(self) -> None:
        """Close the connection; idempotent."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._conn.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"EntryJournal(path={self.path!r}, durability={self.durability!r}, {state})"
