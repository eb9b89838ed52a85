"""What a partitioned source hands its workers: partitions, batches and unreadable rows.

A `Source` splits an input into `Partition` objects from metadata alone (file
listings, Parquet footers, file sizes). A partition is small and picklable: the
driver ships it to a worker, and the worker reads it with `Source.read`, which
yields `Batch` objects in the run's batch format. Rows that cannot be parsed are
not in a batch's data: they are `RowError` entries with their file and line.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

__all__ = ["Batch", "Partition", "RowError", "Source"]


@dataclass(frozen=True)
class Partition:
    """One unit of work: a whole file, row groups of a Parquet file, or a byte range.

    Attributes:
        index: the partition's position in its source's plan (0, 1, ...); stable for
            the same input, so a job file can record finished partitions by index.
        path: the file, as an fsspec URL or a local path.
        format: ``"parquet"``, ``"csv"``, ``"tsv"`` or ``"jsonl"``.
        compression: ``"gzip"``, ``"zstd"`` or None.
        row_groups: Parquet row groups to read (None: all of them).
        byte_range: ``(start, end)`` of an uncompressed text file: the partition owns
            every line that starts at a byte offset in ``[start, end)`` (None: all).
        rows: rows in the partition when metadata says (Parquet), else None.
        size: bytes of input the partition covers (for plans and progress).
    """

    index: int
    path: str
    format: str
    compression: str | None = None
    row_groups: tuple[int, ...] | None = None
    byte_range: tuple[int, int] | None = None
    rows: int | None = None
    size: int = 0


@dataclass(frozen=True)
class RowError:
    """A row that could not be read: where it is and why."""

    path: str
    line: int  # 1-based line of a text file; 1-based row of a Parquet file
    message: str


@dataclass(frozen=True)
class Batch:
    """Rows read from one partition, in the run's batch format.

    Attributes:
        data: the rows (a ``pyarrow.Table``, a ``pandas.DataFrame``, a dict of numpy
            arrays, or a list of dicts).
        path: the file they came from.
        lines: each row's 1-based line (text) or row number (Parquet) in ``path``,
            so a failed row is reported where it is: a ``range``, or for text a
            `LineNumbers` sequence whose base is counted on first lookup.
        errors: rows of this stretch of the file that could not be parsed.
    """

    data: Any
    path: str
    lines: Sequence[int]
    errors: tuple[RowError, ...] = field(default=())


@runtime_checkable
class Source(Protocol):
    """A partitioned input; picklable, so workers can read their own partitions."""

    def partitions(self) -> list[Partition]:
        """The plan, from metadata only (no row is read here)."""
        ...

    def fingerprint(self) -> str:
        """Changes when the input does (files, sizes, modification times or ETags)."""
        ...

    def read(self, partition: Partition, batch_format: str, batch_rows: int) -> Iterator[Batch]:
        """``partition``'s rows, at most ``batch_rows`` per batch (run on a worker)."""
        ...
