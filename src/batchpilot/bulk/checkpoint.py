"""Checkpoint files of resumable bulk jobs: one SQLite database (WAL) per job.

A job file holds its format version, a fingerprint of the head of the input,
and one row per finished chunk: its index range, a digest of its input items
and its pickled results. Each chunk is committed in its own transaction, so a
crash or SIGKILL loses at most the chunks that were still running.

A job is identified by the file, the format version and the input, never by
the function object, so a rerun in a new process resumes. A rerun checks the
input's head before doing any work, and every stored chunk's digest as it
reads past it; a different input raises `JobMismatchError` and nothing stored
is overwritten. A file written by a newer format version is refused the same way.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import sqlite3
from collections.abc import Iterable
from typing import Any

from ..errors import BatchpilotError
from .runner import ItemFailure

__all__ = ["FORMAT_VERSION", "HEAD_ITEMS", "JobMismatchError", "JobStore", "digest"]

FORMAT_VERSION = 1
"""Version of the job file layout this code writes and reads."""

HEAD_ITEMS = 16
"""How many leading input items form the job's fingerprint."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS chunks (
    start INTEGER PRIMARY KEY,
    stop INTEGER NOT NULL,
    digest BLOB NOT NULL,
    payload BLOB NOT NULL
);
"""


# Classes stored in job files, by where they lived when the file was written.
_MOVED_CLASSES = {("batchpilot._runner", "ItemFailure"): ("batchpilot.bulk", "ItemFailure")}


class _JobUnpickler(pickle.Unpickler):
    """Loads job payloads, finding classes stored under the flat layout of 0.1."""

    def find_class(self, module: str, name: str) -> Any:
        module, name = _MOVED_CLASSES.get((module, name), (module, name))
        return super().find_class(module, name)


class JobMismatchError(BatchpilotError, ValueError):
    """A job file belongs to another input or to a newer format; it was left untouched."""


def digest(items: Iterable[Any]) -> bytes:
    """A stable 16-byte digest of the pickled items."""
    try:
        data = pickle.dumps(list(items), protocol=5)
    except Exception as error:
        raise TypeError(f"a resumable job (job=...) needs picklable items: {error}") from error
    return hashlib.blake2b(data, digest_size=16).digest()


def _portable(values: list[Any]) -> bytes:
    """Pickle a chunk's results; unpicklable exceptions are stored as their repr."""
    try:
        return pickle.dumps(values, protocol=5)
    except Exception:
        cleaned = [
            ItemFailure(v.index, v.item, RuntimeError(repr(v.error)))
            if isinstance(v, ItemFailure)
            else v
            for v in values
        ]
        return pickle.dumps(cleaned, protocol=5)


class JobStore:
    """One job file: open (creating it if new), verify, commit chunks, load them back."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        folder = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"the folder of job file {self.path} does not exist")
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._check_format()
        except sqlite3.OperationalError:  # locked, read-only...: not a question of identity
            self._db.close()
            raise
        except sqlite3.DatabaseError as error:
            self._db.close()
            raise JobMismatchError(f"{self.path} is not a batchpilot job file: {error}") from error
        except BaseException:
            self._db.close()
            raise

    def _check_format(self) -> None:
        tables = {row[0] for row in self._db.execute("SELECT name FROM sqlite_master")}
        if tables and not {"meta", "chunks"} <= tables:
            raise JobMismatchError(f"{self.path} is an SQLite file but not a batchpilot job")
        self._db.executescript(_SCHEMA)
        version = self._meta("format_version")
        if version is None:
            self._set_meta("format_version", str(FORMAT_VERSION))
        elif int(version) > FORMAT_VERSION:
            raise JobMismatchError(
                f"{self.path} was written by job format {version}; this batchpilot "
                f"reads format {FORMAT_VERSION} at most. Upgrade batchpilot to resume it."
            )

    def _meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def _set_meta(self, key: str, value: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def check_head(self, head: list[Any]) -> None:
        """Record the input's fingerprint on first use; afterwards insist it matches."""
        fingerprint = digest(head).hex()
        stored = self._meta("fingerprint")
        if stored is None:
            self._set_meta("fingerprint", fingerprint)
        elif stored != fingerprint:
            raise JobMismatchError(
                f"{self.path} belongs to a job over a different input; "
                "use another job file (the existing one was left untouched)"
            )

    def done_ranges(self) -> list[tuple[int, int, bytes]]:
        """``(start, stop, digest)`` of every committed chunk, by start."""
        rows = self._db.execute("SELECT start, stop, digest FROM chunks ORDER BY start")
        return [(int(start), int(stop), bytes(dig)) for start, stop, dig in rows]

    def commit(self, start: int, stop: int, items_digest: bytes, values: list[Any]) -> None:
        """Store one finished chunk atomically."""
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute(
                "INSERT INTO chunks (start, stop, digest, payload) VALUES (?, ?, ?, ?)",
                (start, stop, items_digest, _portable(values)),
            )

    def load(self, start: int) -> list[Any]:
        """The stored results of the chunk starting at ``start``."""
        row = self._db.execute("SELECT payload FROM chunks WHERE start = ?", (start,)).fetchone()
        if row is None:
            raise KeyError(start)
        values: list[Any] = _JobUnpickler(io.BytesIO(row[0])).load()
        return values

    @property
    def total(self) -> int | None:
        """The input length, once a run has read the whole input."""
        value = self._meta("total")
        return None if value is None else int(value)

    def mark_complete(self, total: int) -> None:
        """Record that the input had ``total`` items and all of them are stored."""
        with self._db:
            self._set_meta("total", str(total))

    def close(self) -> None:
        """Close the database; idempotent."""
        self._db.close()

    def __repr__(self) -> str:
        return f"JobStore(path={self.path!r}, total={self.total})"
