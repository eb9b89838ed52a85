"""What a bulk run reports: `BulkProgress` after every chunk, `BulkStatistics` on demand.

Both are frozen snapshots read from the run's live `Counters`. `BulkStatistics`
is the engine's ``statistics()``: the fields every engine shares
(`batchpilot._core.statistics.Statistics`), then bulk's own; ``BulkRun.stats()``
is a view of it (`BulkStatistics.as_stats`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .._core.statistics import Statistics

__all__ = ["BulkProgress", "BulkStatistics", "Counters"]


@dataclass
class Counters:
    """A run's running totals (live, owned by the run)."""

    done: int = 0  # items finished (succeeded or failed), resumed ones included
    failed: int = 0  # items that ended as ItemFailure
    chunks: int = 0  # chunks finished
    resumed: int = 0  # items taken from the job file instead of being run
    quarantined: int = 0  # damaged stored chunks moved aside and run again
    errors: Counter[str] = field(default_factory=Counter)  # failures by exception type


@dataclass(frozen=True)
class BulkProgress:
    """A snapshot of a running job, given to ``on_progress`` after every chunk.

    Attributes:
        done: items finished so far (succeeded or failed), resumed ones included.
        failed: items that ended as `ItemFailure`.
        chunks: chunks finished so far.
        elapsed: seconds since the run started.
        total: input length if known (``len(items)``), else None.
        resumed: items taken from the job file instead of being run.
        chunk_size: the chunk size the controller will plan next.
    """

    done: int
    failed: int
    chunks: int
    elapsed: float
    total: int | None
    resumed: int = 0
    chunk_size: int = 0

    @property
    def rate(self) -> float:
        """Items per second run in this process (resumed items excluded)."""
        ran = self.done - self.resumed
        return ran / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def eta(self) -> float | None:
        """Estimated seconds left, or None without a known total or a rate yet."""
        if self.total is None or self.rate <= 0:
            return None
        return max(self.total - self.done, 0) / self.rate


@dataclass(frozen=True)
class BulkStatistics(Statistics):
    """A snapshot of a bulk run (``BulkRun.statistics()``).

    The shared fields (see `Statistics`): a batch is a chunk; ``items`` counts
    resumed items too; ``queue_depth`` is the items of chunks launched and not
    finished yet; ``rate`` counts only items run in this process.

    Attributes:
        resumed: items taken from the job file instead of being run.
        quarantined_chunks: damaged stored chunks moved aside and run again.
        elapsed: seconds since the run started.
        total: input length if known, else None.
        error_types: failed items by exception type name.
        batch_size_history: planned sizes of the latest chunks run, oldest first.
        in_flight_chunks: chunks launched and not yet handed out.
        finished: whether the whole input has been processed and collected.
    """

    resumed: int
    quarantined_chunks: int
    elapsed: float
    total: int | None
    error_types: Mapping[str, int]
    batch_size_history: tuple[int, ...]
    in_flight_chunks: int
    finished: bool

    @property
    def error_rate(self) -> float:
        """Failed items per finished item (0 before any)."""
        return self.failed / self.items if self.items else 0.0

    def as_stats(self) -> dict[str, Any]:
        """The documented ``BulkRun.stats()`` dictionary, read from this snapshot."""
        return {
            "items_processed": self.items,
            "items_succeeded": self.succeeded,
            "items_failed": self.failed,
            "items_resumed": self.resumed,
            "chunks_processed": self.batches,
            "chunks_quarantined": self.quarantined_chunks,
            "elapsed_seconds": self.elapsed,
            "items_per_second": self.rate,
            "error_rate": self.error_rate,
            "error_types": dict(self.error_types),
            "current_batch_size": self.current_batch_size,
            "batch_size_history": list(self.batch_size_history),
            "in_flight_chunks": self.in_flight_chunks,
            "finished": self.finished,
        }
