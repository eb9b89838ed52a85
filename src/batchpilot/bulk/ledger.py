"""The job file of a partitioned run: which partitions are finished, and their parts.

A partitioned run (`map_batches` over a `batchpilot.sources.Source`) keeps no
results in its job file: the sink holds them. The file records the input's
fingerprint and plan, and one row per finished partition (its committed part and
its failed rows), written only after the part was committed. A rerun skips the
recorded partitions and runs the others from their start; since a part is
committed atomically under a name fixed by its partition, a partition that was
running at a crash is written once, however often it starts.

The file is SQLite (WAL), one transaction per partition, locked to one run at a
time like the chunk job files (`batchpilot.bulk.checkpoint`), whose errors it
raises: `JobMismatchError` for another input or a chunk job file, `JobInUseError`
while another run holds it, `JobFileError` when it is damaged.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from contextlib import AbstractContextManager
from dataclasses import asdict

from ..sinks.part import PartInfo
from ..sources.partition import Partition
from .checkpoint import JobFileError, JobMismatchError, job_file_errors, lock_job_file
from .partition_task import PartitionReport, RowFailure

__all__ = ["LEDGER_VERSION", "PartitionLedger", "plan_digest"]

LEDGER_VERSION = 1
"""The layout of partitioned job files this code writes and reads."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS partitions (
    idx INTEGER PRIMARY KEY,
    part TEXT,
    rows INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    failures TEXT NOT NULL
);
"""


def plan_digest(partitions: list[Partition]) -> str:
    """A digest of a plan: the same input split the same way gives the same digest."""
    text = json.dumps([asdict(p) for p in partitions], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


class PartitionLedger:
    """One partitioned job file: opened (created if new) and checked against the input."""

    def __init__(
        self, path: str | os.PathLike[str], fingerprint: str, plan: str, settings: str
    ) -> None:
        """Open ``path`` for the input ``fingerprint`` split as ``plan`` (`plan_digest`),
        written with ``settings`` (what shapes the output: batch format and sink).

        Raises:
            FileNotFoundError: the folder does not exist.
            JobMismatchError: the file belongs to another input, plan or settings, or
                is not a partitioned job file.
            JobInUseError: another run holds the file.
            JobFileError: the path is a directory, or the file is damaged.
        """
        self.path = os.fspath(path)
        folder = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"the folder of job file {self.path} does not exist")
        if os.path.isdir(self.path):
            raise JobFileError(f"job file {self.path} is a directory; pass the path of a file")
        self._lock = lock_job_file(self.path)
        self.created = False  # whether this run created the file (else it reopened one)
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            with self._reading():
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
                self._check(fingerprint, plan, settings)
        except BaseException:
            self._lock.release()
            raise

    def _reading(self) -> AbstractContextManager[None]:
        return job_file_errors(self.path)

    def _check(self, fingerprint: str, plan: str, settings: str) -> None:
        tables = {row[0] for row in self._db.execute("SELECT name FROM sqlite_master")}
        if tables and "partitions" not in tables:
            raise JobMismatchError(
                f"{self.path} is the job file of a run over items, not over a partitioned "
                "source; use another path"
            )
        with self._db:
            self._db.executescript(_SCHEMA)
        meta = dict(self._db.execute("SELECT key, value FROM meta"))
        expected = {
            "version": str(LEDGER_VERSION),
            "fingerprint": fingerprint,
            "plan": plan,
            "settings": settings,
        }
        if not meta:
            with self._db:
                self._db.executemany("INSERT INTO meta VALUES (?, ?)", expected.items())
            self.created = True
            return
        if meta.get("version") != expected["version"]:
            raise JobMismatchError(
                f"job file {self.path} has layout {meta.get('version')!r}; this batchpilot "
                f"reads {LEDGER_VERSION}"
            )
        if meta.get("fingerprint") != fingerprint or meta.get("plan") != plan:
            raise JobMismatchError(
                f"job file {self.path} belongs to another input (its files, sizes or "
                "modification times changed since it was written); nothing was overwritten. "
                "Use another job file to process the new input."
            )
        if meta.get("settings") != settings:
            raise JobMismatchError(
                f"job file {self.path} was written with other settings ({meta.get('settings')}, "
                f"now {settings}); its finished parts are not this run's. Resume with the same "
                "batch format and output, or use another job file."
            )

    def finished(self) -> dict[int, tuple[PartInfo, tuple[RowFailure, ...]]]:
        """Each recorded partition's part and failed rows."""
        done: dict[int, tuple[PartInfo, tuple[RowFailure, ...]]] = {}
        with self._reading():
            rows = self._db.execute("SELECT idx, part, rows, bytes, failures FROM partitions")
            for idx, part, count, size, failures in rows:
                failed = tuple(RowFailure(*entry) for entry in json.loads(failures))
                done[idx] = (PartInfo(idx, part, count, size), failed)
        return done

    def record(self, report: PartitionReport) -> None:
        """Record ``report``'s partition as finished (its part is committed)."""
        part = report.part or PartInfo(report.partition, None, 0)
        failures = json.dumps([[f.path, f.line, f.error] for f in report.failures])
        with self._reading(), self._db:
            self._db.execute(
                "INSERT OR REPLACE INTO partitions VALUES (?, ?, ?, ?, ?)",
                (report.partition, part.path, part.rows, part.bytes, failures),
            )

    def close(self) -> None:
        """Close the file and release its lock (idempotent)."""
        db, self._db = getattr(self, "_db", None), None  # type: ignore[assignment]
        if db is not None:
            db.close()
        self._lock.release()
