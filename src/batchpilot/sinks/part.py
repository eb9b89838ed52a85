"""What a partitioned sink does: each worker writes and commits its own part.

A `Sink` is picklable. The driver calls `Sink.prepare` before any work and
`Sink.finish` after the last partition (a manifest and ``_SUCCESS``). A worker
opens a `PartWriter` for its partition, writes ``pyarrow.Table`` batches to it
and commits it atomically: a part is either whole under its final name or
absent, so a partition run twice (after a crash) leaves one copy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

__all__ = ["PartInfo", "PartWriter", "Sink"]


@dataclass(frozen=True)
class PartInfo:
    """A committed part: which partition wrote it, where, and how much."""

    partition: int
    path: str | None  # the part's final name (None where the sink has no files: a database)
    rows: int
    bytes: int = 0


class PartWriter(Protocol):
    """Writes one partition's output; nothing is visible before `commit`."""

    def write(self, table: Any) -> None:
        """Append a ``pyarrow.Table`` of output rows."""
        ...

    def commit(self) -> PartInfo:
        """Make the part visible under its final name, atomically."""
        ...

    def abort(self) -> None:
        """Drop what was written (the partition failed or the run stops)."""
        ...


@runtime_checkable
class Sink(Protocol):
    """A partitioned output."""

    def prepare(self, resume: bool) -> None:
        """Check (and create) the destination before any work, on the driver.

        A new run refuses a destination that already holds a finished output;
        ``resume`` keeps the parts of partitions already committed."""
        ...

    def open_part(self, partition: int) -> PartWriter:
        """A writer for ``partition``'s part (on a worker)."""
        ...

    def finish(self, parts: list[PartInfo]) -> None:
        """Write the manifest and ``_SUCCESS`` (on the driver, after every part)."""
        ...
