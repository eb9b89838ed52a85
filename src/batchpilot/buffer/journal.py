"""A SQLite write-ahead journal of buffered entries, so a crash loses nothing.

Each entry is inserted (one small transaction) before ``queue_entry`` returns
and deleted once its flush succeeded or it was dead-lettered. The database runs
in WAL mode. ``durability="normal"`` uses ``synchronous=NORMAL``: a commit is in
the WAL file when ``append`` returns, so it survives the process being killed
(SIGKILL), but not a power loss. ``durability="fsync"`` uses ``synchronous=FULL``:
every commit is fsynced, which also survives power loss, at the price of one
fsync per entry.

Entries are stored with a safe, versioned codec (`batchpilot.buffer.codec`):
JSON for plain data by default, pickle only with ``serializer="pickle"`` (for
journals you trust). Opening a journal never runs code from it unless the
reader opted in to pickle. A row that does not decode is moved to the
``quarantined_entries`` table of the same file (with the reason), the count is
logged, and the other rows are recovered. A file that is not a journal, of a
newer format, a directory or in a missing folder gives an error naming the path.

One manager per journal file, enforced: the journal holds the core's `PidLock`
(an OS ``flock`` on ``<journal>.lock``, naming the holder's pid) while it is
open, so a second opener, in this process or another, gets `JournalInUseError`
instead of delivering the first one's entries again. The OS drops the lock when
its holder dies, even by SIGKILL, so the next manager takes a stale lock over.

File format 2 (this version) adds the ``journal_info`` table (``format``) and
the quarantine; a format 1 journal (batchpilot 0.1: untagged pickles) is
upgraded in place when opened and its plain-data rows still load.
"""

from __future__ import annotations

import errno
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterable
from typing import Any, Literal, NamedTuple

from .._core.pidlock import LockHeldError, PidLock
from ..errors import BatchpilotError
from .codec import SERIALIZERS, Serializer, UndecodableEntry, decode, encode

__all__ = ["Durability", "EntryJournal", "JournalError", "JournalInUseError", "JournalRow"]

_log = logging.getLogger("batchpilot.buffer")

Durability = Literal["normal", "fsync"]
_SYNCHRONOUS = {"normal": "NORMAL", "fsync": "FULL"}

FORMAT = 2
"""The journal file format this version writes (see the module docstring)."""

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS buffered_entries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    uuid TEXT NOT NULL,
    source TEXT NOT NULL,
    priority INTEGER NOT NULL,
    queued_at_wall REAL NOT NULL,
    payload BLOB NOT NULL
)""",
    """CREATE TABLE IF NOT EXISTS quarantined_entries (
    id INTEGER PRIMARY KEY,
    uuid TEXT NOT NULL,
    source TEXT NOT NULL,
    priority INTEGER NOT NULL,
    queued_at_wall REAL NOT NULL,
    payload BLOB NOT NULL,
    reason TEXT NOT NULL,
    quarantined_at REAL NOT NULL
)""",
    "CREATE TABLE IF NOT EXISTS journal_info (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
)
_OUR_TABLES = frozenset({"buffered_entries", "quarantined_entries", "journal_info"})


class JournalError(BatchpilotError, ValueError):
    """The journal file cannot be used: not a journal, damaged, newer, or a directory.

    The message names the file and what to do.
    """


class JournalInUseError(JournalError):
    """Another live journal (another manager, in this process or another) has the file.

    Attributes:
        pid: the holder's process id, or None if it could not be read.
    """

    def __init__(self, message: str, pid: int | None) -> None:
        super().__init__(message)
        self.pid = pid


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

    Thread-safe: one connection guarded by a lock. One live journal per file:
    it holds ``<path>.lock`` (see the module docstring) until `close`.

    Args:
        path: the SQLite file (created if missing; its folder must exist).
        durability: ``"normal"`` (survives a killed process) or ``"fsync"``
            (also survives power loss; one fsync per appended entry).
        serializer: ``"json"`` (plain data, safe) or ``"pickle"`` (any
            picklable entry; only for journals you trust).

    Raises:
        FileNotFoundError: the folder of ``path`` does not exist.
        JournalInUseError: another open journal, in any process, has ``path``.
        JournalError: ``path`` is a directory, not a journal, or of a newer format.

    Attributes:
        quarantined: rows moved to quarantine by this journal's `pending` calls.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        durability: Durability = "normal",
        serializer: Serializer = "json",
    ) -> None:
        if durability not in _SYNCHRONOUS:
            raise ValueError(f"durability must be 'normal' or 'fsync', got {durability!r}")
        if serializer not in SERIALIZERS:
            raise ValueError(f"serializer must be one of {SERIALIZERS}, got {serializer!r}")
        self.path = os.fspath(path)
        self.durability = durability
        self.serializer: Serializer = serializer
        self.quarantined = 0
        self._lock = threading.Lock()
        self._file_lock = _lock(self.path)
        try:
            self._conn = _open(self.path, durability)
        except BaseException:
            self._file_lock.release()
            raise
        self._closed = False

    def append(
        self, uuid: str, source: str, priority: int, queued_at_wall: float, entry: Any
    ) -> int:
        """Store one entry durably (per ``durability``) and return its row id.

        Raises:
            TypeError: the serializer cannot store the entry; nothing was stored.
        """
        try:
            payload = encode(self.serializer, entry)
        except TypeError as exc:
            raise TypeError(f"entry {uuid!r} cannot be written to the journal ({exc})") from None
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
        """Every stored entry that decodes, oldest first; the others go to quarantine.

        A row that does not decode (damaged bytes, a pickle without the
        ``serializer="pickle"`` opt-in, an unknown codec) is moved to the
        ``quarantined_entries`` table with the reason, in one transaction, and
        the count is logged as a warning.
        """
        with self._lock:
            rows = self._conn.execute(
                "SELECT id, uuid, source, priority, queued_at_wall, payload"
                " FROM buffered_entries ORDER BY id"
            ).fetchall()
        good: list[JournalRow] = []
        bad: list[tuple[Any, ...]] = []
        for row_id, uuid, source, priority, wall, payload in rows:
            try:
                entry = decode(self.serializer, payload)
            except UndecodableEntry as exc:
                bad.append((row_id, uuid, source, priority, wall, payload, str(exc)))
                continue
            good.append(JournalRow(row_id, uuid, source, priority, wall, entry))
        if bad:
            self._quarantine(bad)
        return good

    def quarantine_count(self) -> int:
        """How many rows the file's quarantine holds (from any run)."""
        with self._lock:
            (count,) = self._conn.execute("SELECT COUNT(*) FROM quarantined_entries").fetchone()
        return int(count)

    def _quarantine(self, bad: list[tuple[Any, ...]]) -> None:
        now = time.time()
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.executemany(
                    "INSERT OR REPLACE INTO quarantined_entries (id, uuid, source, priority,"
                    " queued_at_wall, payload, reason, quarantined_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [(*row, now) for row in bad],
                )
                self._conn.executemany(
                    "DELETE FROM buffered_entries WHERE id = ?", [(row[0],) for row in bad]
                )
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")
        self.quarantined += len(bad)
        _log.warning(
            "journal %s: %d entries could not be decoded and were moved to its "
            "quarantined_entries table (first: uuid %r, %s)",
            self.path, len(bad), bad[0][1], bad[0][6],
        )  # fmt: skip

    def __len__(self) -> int:
        with self._lock:
            (count,) = self._conn.execute("SELECT COUNT(*) FROM buffered_entries").fetchone()
        return int(count)

    def close(self) -> None:
        """Close the connection and release the file's lock; idempotent."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._conn.close()
                self._file_lock.release()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return (
            f"EntryJournal(path={self.path!r}, durability={self.durability!r}, "
            f"serializer={self.serializer!r}, {state})"
        )


def _lock(path: str) -> PidLock:
    """Take the journal's `PidLock`, or say who holds it as a `JournalInUseError`."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(
            errno.ENOENT, f"the folder of journal {path!r} does not exist; create it first", folder
        )
    lock = PidLock(path)
    try:
        lock.acquire()
    except LockHeldError as held:
        pid = held.pid
        raise JournalInUseError(
            f"journal {path} is in use by pid {pid if pid is not None else '?'} (it holds "
            f"{lock.path}): use one manager per journal file; stop that one (close it), "
            "or give this manager another journal_path",
            pid,
        ) from None
    except OSError as error:
        message = f"cannot create the lock file {lock.path} of journal {path}: {error}"
        raise JournalError(message) from error
    return lock


def _open(path: str, durability: Durability) -> sqlite3.Connection:
    """Connect, check that ``path`` is (or becomes) a journal of a known format."""
    if os.path.isdir(path):
        raise JournalError(f"journal {path!r} is a directory; pass the path of a file")
    try:
        connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as exc:
        raise JournalError(f"journal {path!r} cannot be opened: {exc}") from exc
    try:
        _prepare(connection, path, durability)
    except BaseException:
        connection.close()
        raise
    return connection


def _prepare(connection: sqlite3.Connection, path: str, durability: Durability) -> None:
    try:
        tables = {name for (name,) in connection.execute("SELECT name FROM sqlite_master")} - {
            "sqlite_sequence"
        }
        if tables and "buffered_entries" not in tables:
            raise JournalError(
                f"{path!r} is an SQLite file but not a batchpilot journal (it has tables "
                f"{sorted(tables)}); pass another journal_path"
            )
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute(f"PRAGMA synchronous={_SYNCHRONOUS[durability]}")
        for statement in _SCHEMA:
            connection.execute(statement)
        row = connection.execute("SELECT value FROM journal_info WHERE key = 'format'").fetchone()
        if row is None:  # new, or format 1: same entries table, untagged pickles
            connection.execute("INSERT INTO journal_info VALUES ('format', ?)", (str(FORMAT),))
        elif not row[0].isdigit() or int(row[0]) > FORMAT:
            raise JournalError(
                f"journal {path!r} has format {row[0]!r}, newer than this batchpilot reads "
                f"({FORMAT}); upgrade batchpilot, or move the file away"
            )
    except sqlite3.DatabaseError as exc:
        raise JournalError(
            f"{path!r} is not a usable batchpilot journal ({exc}); move it away (its "
            "entries cannot be recovered by batchpilot) or pass another journal_path"
        ) from exc
