"""`ResultStorage` (seed 002): per-chunk results on disk as JSON, pickle or SQLite.

Layout under ``storage_dir``: one folder per run with one file per chunk,
``<run_id>/chunk_00000007.json`` (``.pkl`` for pickle, ``.gz`` appended when
compressed), or for SQLite one ``results.sqlite`` file with a ``chunk_results``
table keyed by ``(run_id, chunk_id)`` whose ``payload`` is the chunk record as
JSON text (gzip-compressed bytes when compression is on). Files are written to a
temporary name and renamed into place, so a crash or SIGKILL of the process never
leaves a half-written chunk: a chunk is either stored whole or not at all. Files
are not fsynced (that would cost milliseconds per chunk); after a power loss the
newest chunks may be missing.

A chunk record is ``{"run_id", "chunk_id", "created_at", "results", "errors",
"metadata"}``: ``results`` are the successful targets' results in input order,
``errors`` one ``{"index", "error_type", "message"}`` per failed target.
"""

from __future__ import annotations

import gzip
import json
import os
import pickle
import shutil
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import closing
from pathlib import Path
from typing import Any

from .callbacks import asettle, check_callable, invoke, settle

__all__ = ["ResultProcessor", "ResultStorage"]

ResultProcessor = Callable[[list[Any]], Any]
"""Receives each stored chunk's results as they are generated; may be async."""

_SQLITE_FILE = "results.sqlite"
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS chunk_results ("
    " run_id TEXT NOT NULL, chunk_id INTEGER NOT NULL, created_at REAL NOT NULL,"
    " payload BLOB NOT NULL, PRIMARY KEY (run_id, chunk_id))"
)


def _json_default(value: Any) -> Any:
    tolist = getattr(value, "tolist", None)  # numpy arrays and scalars
    if callable(tolist):
        return tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable; use result_format='pickle'")


def _check_run_id(run_id: str) -> str:
    if not isinstance(run_id, str) or not run_id or os.sep in run_id or run_id.startswith("."):
        raise ValueError(f"run_id must be a plain, non-empty name, got {run_id!r}")
    return run_id


class ResultStorage:
    """Stores, retrieves and cleans up per-chunk results.

    Args:
        storage_dir: folder to write into; None creates a temporary one on first use.
        result_format: ``"json"``, ``"pickle"`` or ``"sqlite"``.
        compression_enabled: gzip every stored chunk.
        wall_clock: wall time for ``created_at`` and age-based `cleanup`
            (persisted data outlives the process, so not the monotonic clock).

    Example:
        >>> import tempfile
        >>> storage = ResultStorage(tempfile.mkdtemp(), "json")
        >>> _ = storage.save_chunk("run1", 0, [1, 2])
        >>> _ = storage.save_chunk("run1", 1, [3])
        >>> storage.load_results("run1")
        [1, 2, 3]
    """

    def __init__(
        self,
        storage_dir: str | os.PathLike[str] | None = None,
        result_format: str = "json",
        compression_enabled: bool = False,
        *,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if result_format not in ("json", "pickle", "sqlite"):
            raise ValueError(f"result_format must be json, pickle or sqlite, got {result_format!r}")
        self.result_format = result_format
        self.compression_enabled = bool(compression_enabled)
        self.result_processors: list[ResultProcessor] = []
        self.processor_errors = 0
        self._dir = None if storage_dir is None else Path(storage_dir)
        self._wall_clock = wall_clock
        self._lock = threading.Lock()
        self._background: set[Any] = set()

    @property
    def storage_dir(self) -> Path:
        """The folder results live in (created on first access)."""
        with self._lock:
            if self._dir is None:
                self._dir = Path(tempfile.mkdtemp(prefix="batchpilot-results-"))
            self._dir.mkdir(parents=True, exist_ok=True)
            return self._dir

    # -- result processors -------------------------------------------------

    def add_result_processor(self, processor: ResultProcessor) -> None:
        """Call ``processor(results)`` with each chunk's results as they are generated."""
        check_callable(processor, "result processor")
        self.result_processors.append(processor)

    def process_results(self, results: list[Any]) -> None:
        """Run the result processors on ``results`` from sync code."""
        pending, errors = invoke(self.result_processors, results)
        self.processor_errors += errors + settle(pending, self._background)

    async def aprocess_results(self, results: list[Any]) -> None:
        """Run the result processors on ``results``, awaiting the async ones."""
        pending, errors = invoke(self.result_processors, results)
        self.processor_errors += errors + await asettle(pending)

    # -- writing -----------------------------------------------------------

    def save_chunk(
        self,
        run_id: str,
        chunk_id: int,
        results: Sequence[Any],
        errors: Sequence[dict[str, Any]] = (),
        metadata: dict[str, Any] | None = None,
    ) -> str:
        """Store one chunk atomically; return where (a file path or ``sqlite:`` key)."""
        record = {
            "run_id": _check_run_id(run_id),
            "chunk_id": int(chunk_id),
            "created_at": self._wall_clock(),
            "results": list(results),
            "errors": list(errors),
            "metadata": dict(metadata or {}),
        }
        payload = self._encode(record)
        if self.result_format == "sqlite":
            with self._connect() as connection:
                connection.execute(
                    "INSERT OR REPLACE INTO chunk_results VALUES (?, ?, ?, ?)",
                    (run_id, chunk_id, record["created_at"], payload),
                )
            return f"sqlite:{self.storage_dir / _SQLITE_FILE}#{run_id}/{chunk_id}"
        path = self._chunk_path(run_id, chunk_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=".writing-")
        try:
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(payload)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return str(path)

    def _encode(self, record: dict[str, Any]) -> bytes:
        if self.result_format == "pickle":
            data = pickle.dumps(record, protocol=pickle.HIGHEST_PROTOCOL)
        else:
            data = json.dumps(record, default=_json_default).encode()
        return gzip.compress(data) if self.compression_enabled else data

    def _decode(self, payload: bytes, pickled: bool = False) -> dict[str, Any]:
        data = gzip.decompress(payload) if payload[:2] == b"\x1f\x8b" else payload
        if pickled:
            record: dict[str, Any] = pickle.loads(data)
            return record
        loaded: dict[str, Any] = json.loads(data)
        return loaded

    # -- reading -----------------------------------------------------------

    def list_runs(self) -> list[str]:
        """Run ids with stored chunks, oldest first."""
        if self.result_format == "sqlite":
            with self._connect() as connection:
                rows = connection.execute(
                    "SELECT run_id FROM chunk_results GROUP BY run_id ORDER BY MIN(created_at)"
                ).fetchall()
            return [row[0] for row in rows]
        runs = [p for p in self.storage_dir.iterdir() if p.is_dir() and self._files(p.name)]
        return [p.name for p in sorted(runs, key=lambda p: (p.stat().st_mtime, p.name))]

    def list_chunks(self, run_id: str) -> list[int]:
        """Chunk ids stored for ``run_id``, ascending."""
        if self.result_format == "sqlite":
            with self._connect() as connection:
                rows = connection.execute(
                    "SELECT chunk_id FROM chunk_results WHERE run_id = ? ORDER BY chunk_id",
                    (_check_run_id(run_id),),
                ).fetchall()
            return [row[0] for row in rows]
        return sorted(int(path.name.split(".")[0][6:]) for path in self._files(run_id))

    def load_chunk(self, run_id: str, chunk_id: int) -> dict[str, Any]:
        """One stored chunk record; `KeyError` if it was never stored."""
        if self.result_format == "sqlite":
            with self._connect() as connection:
                row = connection.execute(
                    "SELECT payload FROM chunk_results WHERE run_id = ? AND chunk_id = ?",
                    (_check_run_id(run_id), chunk_id),
                ).fetchone()
            if row is None:
                raise KeyError(f"no chunk {chunk_id} stored for run {run_id!r}")
            return self._decode(row[0])
        prefix = f"chunk_{int(chunk_id):08d}."
        path = next((p for p in self._files(run_id) if p.name.startswith(prefix)), None)
        if path is None:
            raise KeyError(f"no chunk {chunk_id} stored for run {run_id!r}")
        return self._decode(path.read_bytes(), pickled=".pkl" in path.suffixes)

    def load_results(self, run_id: str) -> list[Any]:
        """All successful results of a run, chunk by chunk, in input order."""
        results: list[Any] = []
        for chunk_id in self.list_chunks(run_id):
            results.extend(self.load_chunk(run_id, chunk_id)["results"])
        return results

    def load_errors(self, run_id: str) -> list[dict[str, Any]]:
        """All recorded target errors of a run, by input index."""
        errors: list[dict[str, Any]] = []
        for chunk_id in self.list_chunks(run_id):
            errors.extend(self.load_chunk(run_id, chunk_id)["errors"])
        return sorted(errors, key=lambda error: error["index"])

    # -- cleanup -----------------------------------------------------------

    def delete_run(self, run_id: str) -> int:
        """Remove every chunk of ``run_id``; return how many were removed."""
        if self.result_format == "sqlite":
            with self._connect() as connection:
                cursor = connection.execute(
                    "DELETE FROM chunk_results WHERE run_id = ?", (_check_run_id(run_id),)
                )
            return cursor.rowcount
        count = len(self._files(run_id))
        shutil.rmtree(self.storage_dir / _check_run_id(run_id), ignore_errors=True)
        return count

    def cleanup(self, max_age_seconds: float = 0.0) -> int:
        """Remove chunks stored more than ``max_age_seconds`` ago; return how many.

        ``cleanup()`` removes everything. Runs left empty disappear with their
        last chunk; leftovers of interrupted writes are removed too.
        """
        if max_age_seconds < 0:
            raise ValueError(f"max_age_seconds must be >= 0, got {max_age_seconds}")
        cutoff = self._wall_clock() - max_age_seconds
        if self.result_format == "sqlite":
            with self._connect() as connection:
                cursor = connection.execute(
                    "DELETE FROM chunk_results WHERE created_at <= ?", (cutoff,)
                )
            return cursor.rowcount
        removed = 0
        for run in [p for p in self.storage_dir.iterdir() if p.is_dir()]:
            for leftover in run.glob(".writing-*"):
                leftover.unlink(missing_ok=True)
            for path in self._files(run.name):
                if path.stat().st_mtime <= cutoff:
                    path.unlink()
                    removed += 1
            if not any(run.iterdir()):
                run.rmdir()
        return removed

    def get_storage_stats(self) -> dict[str, Any]:
        """Format, compression, number of runs and chunks, and bytes on disk."""
        runs = self.list_runs()
        size = sum(p.stat().st_size for p in self.storage_dir.rglob("*") if p.is_file())
        return {
            "storage_dir": str(self.storage_dir),
            "result_format": self.result_format,
            "compression_enabled": self.compression_enabled,
            "runs": len(runs),
            "chunks": sum(len(self.list_chunks(run)) for run in runs),
            "bytes_on_disk": size,
            "result_processors": len(self.result_processors),
            "processor_errors": self.processor_errors,
        }

    # -- helpers -----------------------------------------------------------

    def _chunk_path(self, run_id: str, chunk_id: int) -> Path:
        suffix = ".json" if self.result_format == "json" else ".pkl"
        if self.compression_enabled:
            suffix += ".gz"
        return self.storage_dir / _check_run_id(run_id) / f"chunk_{int(chunk_id):08d}{suffix}"

    def _files(self, run_id: str) -> list[Path]:
        folder = self.storage_dir / _check_run_id(run_id)
        return [p for p in folder.glob("chunk_*") if p.is_file()] if folder.is_dir() else []

    def _connect(self) -> Any:
        connection = sqlite3.connect(self.storage_dir / _SQLITE_FILE, timeout=30)
        connection.execute(_SCHEMA)
        return _Committing(connection)

    def __repr__(self) -> str:
        return (
            f"ResultStorage(storage_dir={self._dir}, format={self.result_format!r}, "
            f"compression={self.compression_enabled}, processors={len(self.result_processors)})"
        )


class _Committing:
    """``with`` block over a sqlite3 connection: commit (or roll back), then close."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self.connection = connection

    def __enter__(self) -> sqlite3.Connection:
        return self.connection

    def __exit__(self, exc_type: type[BaseException] | None, *exc_info: object) -> None:
        with closing(self.connection):
            if exc_type is None:
                self.connection.commit()
            else:
                self.connection.rollback()
