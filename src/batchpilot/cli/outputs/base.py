"""The protocol every output backend serves: a `Target` and the `Segment` it writes.

As starlette's ``BaseRoute`` serves ``Route`` and ``Mount``, `Target` names what a
backend does (`open_segment`, `trim`, `finish`, the files it writes, whether it
exists); each backend (`text`, `stdout`, `sqlite`, `parquet`) is a subclass in its
own module, and the module functions below are the one way the run calls them.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from ..records_io import RecordsFormatError

__all__ = ["IF_EXISTS", "AppendedSegment", "Segment", "Target", "finish", "open_segment", "trim"]

IF_EXISTS = ("fail", "append", "replace")


class Segment(Protocol):
    """The rows of one run, written where the job's checkpoint can find them."""

    #: The output columns, once the first rows fixed them (CSV/TSV only).
    columns: list[str] | None

    def write(self, results: Sequence[Any]) -> bool:
        """Add one row per result (see `to_row`); True when all written so far is durable."""

    def flush(self) -> None:
        """Make every row written durable."""

    def size(self) -> int:
        """The segment's size to commit: bytes, staged rows or files."""

    def close(self) -> None:
        """Release the segment's file; idempotent."""


@dataclass(frozen=True)
class Target(abc.ABC):
    """An output: its kind (``jsonl``, ``csv``, ``tsv``, ``sqlite``, ``parquet``,
    ``dataset`` or ``stdout``), path, compression codec and table.

    The defaults below serve a file written whole at the end (via a ``.partial``
    file) from segments that are files of their own in the parts folder.
    """

    kind: str  # the format, as `output_target` read it from the path
    path: Path  # the file (or a dataset's folder) the rows end in
    codec: str | None = None  # compression of a text output (``gzip``, ``zstd``)
    table: str = "results"  # the table of an SQLite output or a dataset

    #: Whether a run stages rows in the job's parts folder (standard output does not).
    staged = True

    def __str__(self) -> str:
        return str(self.path)

    def files(self) -> list[Path]:
        """The paths `finish` writes outside the job's parts folder: the output itself
        and its temporary files."""
        return [self.path, self.path.with_name(self.path.name + ".partial")]

    def exists(self) -> bool:
        """Whether there is something ``--if-exists`` has to decide about."""
        return self.path.exists()

    def check(self, if_exists: str) -> None:
        """Refuse an existing target under ``--if-exists fail``, and under any mode an
        SQLite output that is not a database."""
        if self.exists() and if_exists == "fail":
            raise RecordsFormatError(
                f"{self} exists; pass --if-exists append to add to it or --if-exists replace "
                "to replace it (nothing else in the file is touched)"
            )

    @abc.abstractmethod
    def open_segment(self, parts: Path, number: int, columns: list[str] | None) -> Segment:
        """A new segment ``number`` in ``parts``, which exists."""

    def trim(self, parts: Path, committed: dict[int, int]) -> None:
        """Cut every segment file in ``parts`` back to its ``committed`` size; drop the
        others."""
        for path in sorted(parts.iterdir()):
            if path.name in ("errors.jsonl", "rows.sqlite"):
                continue
            size = committed.get(int(path.stem))
            if size is None:
                path.unlink()
            else:
                with path.open("r+b") as file:
                    file.truncate(size)

    @abc.abstractmethod
    def finish(
        self, parts: Path, committed: dict[int, int], columns: list[str] | None, if_exists: str
    ) -> None:
        """Move the committed rows into the output, per ``if_exists`` (already checked)."""


class AppendedSegment:
    """A segment that is one file of its own, appended to by each write."""

    columns: list[str] | None = None

    def __init__(self, path: Path) -> None:
        self.path = path  # the segment's file in the parts folder
        self._file: BinaryIO = path.open("ab")  # open for appending until `close`

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r}, columns={self.columns})"

    def append(self, data: bytes) -> bool:
        """Write ``data`` at the end and hand it to the system (durable as a commit needs)."""
        self._file.write(data)
        self._file.flush()
        return True

    def flush(self) -> None:
        self._file.flush()

    def size(self) -> int:
        return self._file.tell()

    def close(self) -> None:
        self._file.close()


def open_segment(target: Target, parts: Path, number: int, columns: list[str] | None) -> Segment:
    """A new segment ``number`` of ``target`` in ``parts`` (created if needed)."""
    if target.staged:
        parts.mkdir(exist_ok=True)
    return target.open_segment(parts, number, columns)


def trim(target: Target, parts: Path, committed: dict[int, int]) -> None:
    """Cut every segment in ``parts`` back to its ``committed`` size; drop the others."""
    if parts.is_dir():
        target.trim(parts, committed)


def finish(
    target: Target, parts: Path, committed: dict[int, int], columns: list[str] | None,
    if_exists: str,
) -> None:  # fmt: skip
    """Move the committed rows of every segment into ``target``, per ``if_exists``."""
    target.check(if_exists)
    target.finish(parts, committed, columns, if_exists)
