"""Checkpoint files of resumable bulk jobs: one SQLite database (WAL) per job.

A job file holds its format version, its serializer, a fingerprint of the head
of the input, and one row per finished chunk: its index range, a digest of its
input items and its encoded results (`batchpilot.bulk.serialize`: JSON by
default, so opening a job file never runs code from it; pickle by opt-in).
Each chunk is committed in its own transaction, so a crash or SIGKILL loses at
most the chunks that were still running.

One process at a time uses a job file: the core's `PidLock` (an OS ``flock``
on the sidecar file ``<job>.lock``, removed on close) is held while it is open,
and a second opener gets `JobInUseError` naming the holder's pid. A damaged
file (truncated, overwritten, a payload that does not decode or does not match
its index range) raises `JobFileError` naming the file, never a raw sqlite or
pickle error, and never yields fewer results than items. A damaged chunk (its
payload alone, the rest of the file readable) is a `DamagedChunkError`; by
opt-in, `quarantine` moves its row to the file's ``quarantined_chunks`` table
with the reason, so its items can be computed again.

A job is identified by the file, the format version and the input, never by
the function object, so a rerun in a new process resumes. A rerun checks the
input's head before doing any work, and every stored chunk's digest as it
reads past it; a different input raises `JobMismatchError` and nothing stored
is overwritten. A file written by a newer format version is refused the same way.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from .._core.pidlock import LockHeldError, PidLock
from ..errors import BatchpilotError
from .runner import ItemFailure
from .serialize import SERIALIZERS, decode, encode

__all__ = [
    "FORMAT_VERSION",
    "HEAD_ITEMS",
    "DamagedChunkError",
    "JobFileError",
    "JobInUseError",
    "JobMismatchError",
    "JobStore",
    "digest",
    "job_file_errors",
    "lock_job_file",
]

FORMAT_VERSION = 2
"""Version of the job file layout this code writes; it reads every version up to it.

1 (batchpilot 0.1): results pickled. 2: a ``serializer`` meta entry says how.
"""

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

# Created by the first quarantine, so a file is only changed by what a run writes.
_QUARANTINE_SCHEMA = """CREATE TABLE IF NOT EXISTS quarantined_chunks (
    start INTEGER PRIMARY KEY,
    stop INTEGER NOT NULL,
    digest BLOB NOT NULL,
    payload BLOB NOT NULL,
    reason TEXT NOT NULL,
    quarantined_at REAL NOT NULL
)"""

_log = logging.getLogger("batchpilot")


class JobFileError(BatchpilotError, ValueError):
    """A job file cannot be used: damaged, not a file, in use, or not this job's.

    The message names the file and says what to do. Subclasses: `JobMismatchError`
    and `JobInUseError`.
    """


class JobMismatchError(JobFileError):
    """A job file belongs to another input or to a newer format; it was left untouched."""


class DamagedChunkError(JobFileError):
    """One stored chunk's results are damaged; the rest of the job file can be read.

    Attributes:
        start: the chunk's first input index.
        stop: one past its last.
        reason: what is wrong with its payload.
    """

    def __init__(self, message: str, start: int, stop: int, reason: str) -> None:
        super().__init__(message)
        self.start = start
        self.stop = stop
        self.reason = reason


class JobInUseError(JobFileError):
    """Another process (or another open run) holds the job file's lock.

    Attributes:
        pid: the holder's process id, or None if it could not be read.
    """

    def __init__(self, message: str, pid: int | None) -> None:
        super().__init__(message)
        self.pid = pid


def digest(items: Iterable[Any]) -> bytes:
    """A stable 16-byte digest of the pickled items."""
    try:
        data = pickle.dumps(list(items), protocol=5)
    except Exception as error:
        raise TypeError(f"a resumable job (job=...) needs picklable items: {error}") from error
    return hashlib.blake2b(data, digest_size=16).digest()


# What decoding a damaged payload or meta value can raise.
_UNDECODABLE = (
    pickle.UnpicklingError,
    EOFError,
    TypeError,
    ValueError,
    AttributeError,
    ImportError,
    IndexError,
    KeyError,
)


def _damaged(path: str, error: BaseException) -> JobFileError:
    return JobFileError(
        f"job file {path} is damaged ({type(error).__name__}: {error}); its results "
        "cannot be trusted. Delete it (and its -wal/-shm files) to start the job over, "
        "or restore it from a backup."
    )


def _damaged_chunk(path: str, start: int, stop: int, error: BaseException) -> DamagedChunkError:
    reason = f"{type(error).__name__}: {error}"
    return DamagedChunkError(
        f"job file {path} is damaged ({reason}); the results of items {start}..{stop} "
        "cannot be trusted. Delete it (and its -wal/-shm files) to start the job over, "
        "restore it from a backup, or pass quarantine_damaged=True to set those results "
        "aside in the file and compute them again.",
        start,
        stop,
        reason,
    )


@contextmanager
def job_file_errors(path: str) -> Iterator[None]:
    """Turn sqlite and decoding errors inside into `JobFileError` naming the job file
    (`JobMismatchError` for a file that is no SQLite database)."""
    try:
        yield
    except JobFileError:
        raise
    except sqlite3.DatabaseError as error:
        if "not a database" in str(error):
            raise JobMismatchError(
                f"{path} is not a batchpilot job file ({error}); use another path"
            ) from error
        raise _damaged(path, error) from error
    except _UNDECODABLE as error:
        raise _damaged(path, error) from error


def lock_job_file(job_path: str) -> PidLock:
    """Take the job file's `PidLock` on ``<job>.lock``, or say why not as a `JobFileError`."""
    lock = PidLock(job_path)
    try:
        lock.acquire()
    except LockHeldError as held:
        pid = held.pid
        raise JobInUseError(
            f"job file {job_path} is in use by pid {pid if pid is not None else '?'} "
            f"(it holds {lock.path}); wait for that run to finish or stop it, "
            "or use another job file",
            pid,
        ) from None
    except OSError as error:
        raise JobFileError(
            f"cannot create the lock file {lock.path} of job file {job_path}: {error}"
        ) from error
    return lock


class JobStore:
    """One job file: open (creating it if new), verify, commit chunks, load them back."""

    def __init__(self, path: str | os.PathLike[str], serializer: str = SERIALIZERS[0]) -> None:
        """Open ``path``; ``serializer`` (``"json"`` or ``"pickle"``) must match the file's.

        Raises:
            FileNotFoundError: the folder does not exist.
            JobMismatchError: not a job file, a newer format, or another serializer
                (a pickle file is only read with ``serializer="pickle"``).
            JobInUseError: another run holds the file.
            JobFileError: the path is a directory, or the file is damaged.
        """
        if serializer not in SERIALIZERS:
            raise ValueError(f"serializer must be one of {SERIALIZERS}, got {serializer!r}")
        self.serializer = serializer
        self.path = os.fspath(path)
        folder = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"the folder of job file {self.path} does not exist")
        if os.path.isdir(self.path):
            raise JobFileError(
                f"job file {self.path} is a directory; pass the path of a file (new or "
                "written by an earlier run)"
            )
        self._lock = lock_job_file(self.path)
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        except sqlite3.Error as error:
            self._lock.release()
            raise JobFileError(f"job file {self.path} cannot be opened: {error}") from error
        try:
            with self._reading():
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
                self._check_format()
                self._stops = self._read_ranges()
        except BaseException:
            self.close()
            raise

    def _reading(self) -> AbstractContextManager[None]:
        """Turn sqlite and decoding errors into `JobFileError` naming the file."""
        return job_file_errors(self.path)

    def _read_ranges(self) -> dict[int, tuple[int, bytes]]:
        """Every committed chunk's ``start -> (stop, digest)``, checked to be disjoint."""
        ranges: dict[int, tuple[int, bytes]] = {}
        end = 0
        rows = self._db.execute("SELECT start, stop, digest FROM chunks ORDER BY start")
        for start, stop, dig in rows:
            if not (isinstance(start, int) and isinstance(stop, int) and end <= start < stop):
                raise _damaged(self.path, ValueError(f"bad chunk range {start!r}..{stop!r}"))
            ranges[start] = (stop, bytes(dig))
            end = stop
        return ranges

    def _check_format(self) -> None:
        tables = {row[0] for row in self._db.execute("SELECT name FROM sqlite_master")}
        if tables and not {"meta", "chunks"} <= tables:
            raise JobMismatchError(f"{self.path} is an SQLite file but not a batchpilot job")
        self._db.executescript(_SCHEMA)
        version = self._meta("format_version")
        if version is None:
            self._set_meta("format_version", str(FORMAT_VERSION))
            self._set_meta("serializer", self.serializer)
            return
        if int(version) > FORMAT_VERSION:
            raise JobMismatchError(
                f"{self.path} was written by job format {version}; this batchpilot "
                f"reads format {FORMAT_VERSION} at most. Upgrade batchpilot to resume it."
            )
        stored = "pickle" if int(version) == 1 else self._meta("serializer")
        if stored == self.serializer:
            return
        if stored == "pickle":
            raise JobMismatchError(
                f"job file {self.path} stores its results with pickle (written by "
                "batchpilot 0.1, or with serializer='pickle'), and loading a pickle can run "
                "code from the file. If you trust the file, resume with serializer='pickle'; "
                "otherwise delete it to start over."
            )
        raise JobMismatchError(
            f"job file {self.path} stores its results with serializer {stored!r}; resume "
            f"with serializer={stored!r}, or use another job file"
        )

    def _meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def _set_meta(self, key: str, value: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def check_head(self, head: list[Any]) -> None:
        """Record the input's fingerprint on first use; afterwards insist it matches."""
        fingerprint = digest(head).hex()
        with self._reading():
            stored = self._meta("fingerprint")
            if stored is None:
                self._set_meta("fingerprint", fingerprint)
        if stored is not None and stored != fingerprint:
            raise JobMismatchError(
                f"{self.path} belongs to a job over a different input; "
                "use another job file (the existing one was left untouched)"
            )

    def done_ranges(self) -> list[tuple[int, int, bytes]]:
        """``(start, stop, digest)`` of every committed chunk, by start."""
        return [(start, stop, dig) for start, (stop, dig) in sorted(self._stops.items())]

    def commit(self, start: int, stop: int, items_digest: bytes, values: list[Any]) -> None:
        """Store one finished chunk atomically (replacing its earlier results, if any).

        Raises:
            TypeError: a result cannot be pickled.
        """
        payload = encode(self.serializer, values, start)
        with self._reading(), self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute(
                "INSERT OR REPLACE INTO chunks (start, stop, digest, payload) VALUES (?, ?, ?, ?)",
                (start, stop, items_digest, payload),
            )
        self._stops[start] = (stop, items_digest)

    def load(self, start: int, items: list[Any]) -> list[Any]:
        """The stored results of the chunk of ``items`` starting at ``start``, one per item.

        ``items`` are the chunk's input items (checked against its digest by the
        caller); the JSON serializer takes failed items from them.

        Raises:
            KeyError: no chunk starts there.
            DamagedChunkError: the payload does not decode, or holds a different
                number of results than its range has items, or failures of other items.
            JobFileError: the file cannot be read.
        """
        stop = self._stops[start][0]
        with self._reading():
            row = self._db.execute(
                "SELECT payload FROM chunks WHERE start = ?", (start,)
            ).fetchone()
            if row is None:
                raise _damaged(self.path, KeyError(f"chunk {start}..{stop} vanished"))
        try:
            values = decode(self.serializer, bytes(row[0]), start, items)
        except _UNDECODABLE as error:
            raise _damaged_chunk(self.path, start, stop, error) from error
        if not isinstance(values, list) or len(values) != stop - start:
            count = len(values) if isinstance(values, list) else type(values).__name__
            problem = ValueError(f"chunk {start}..{stop} holds {count} results")
            raise _damaged_chunk(self.path, start, stop, problem)
        if any(
            isinstance(v, ItemFailure) and v.index != start + offset
            for offset, v in enumerate(values)
        ):
            problem = ValueError(f"chunk {start}..{stop} misplaces a failure")
            raise _damaged_chunk(self.path, start, stop, problem)
        return values

    def quarantine(self, damaged: DamagedChunkError) -> None:
        """Move the damaged chunk's row to ``quarantined_chunks`` with the reason, and log it.

        Its items count as not done: the run computes them again and commits them
        as a new chunk. The quarantined row is kept for inspection.
        """
        start = damaged.start
        with self._reading(), self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute(_QUARANTINE_SCHEMA)
            self._db.execute(
                "INSERT OR REPLACE INTO quarantined_chunks"
                " (start, stop, digest, payload, reason, quarantined_at)"
                " SELECT start, stop, digest, payload, ?, ? FROM chunks WHERE start = ?",
                (damaged.reason, time.time(), start),
            )
            self._db.execute("DELETE FROM chunks WHERE start = ?", (start,))
        del self._stops[start]
        _log.warning(
            "job file %s: the results of items %d..%d were damaged; moved them to its "
            "quarantined_chunks table and computing them again (%s)",
            self.path,
            start,
            damaged.stop,
            damaged.reason,
        )

    @property
    def total(self) -> int | None:
        """The input length, once a run has read the whole input."""
        with self._reading():
            value = self._meta("total")
            return None if value is None else int(value)

    def mark_complete(self, total: int) -> None:
        """Record that the input had ``total`` items and all of them are stored."""
        with self._reading(), self._db:
            self._set_meta("total", str(total))

    def close(self) -> None:
        """Close the database and release the lock; idempotent."""
        self._db.close()
        self._lock.release()

    def __repr__(self) -> str:
        return f"JobStore(path={self.path!r}, total={self.total})"
