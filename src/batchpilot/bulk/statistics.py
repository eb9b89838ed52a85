"""What a bulk run reports: `BulkProgress` after every chunk, `BulkStatistics` on demand,
and `batch_records` for its listeners.

Both snapshots are frozen, read from the run's live `Counters`. `BulkStatistics`
is the engine's ``statistics()``: the fields every engine shares
(`batchpilot._core.statistics.Statistics`), then bulk's own; ``BulkRun.stats()``
is a view of it (`BulkStatistics.as_stats`).

A chunk is one batch of the batch function, and one `BatchRecord`, unless the chunk
function runs batches of its own (``cost=``): then each of those is a record, with
why it closed, its costs and its out-of-memory splits, and the chunk's items that
failed alone are one more record.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .._core.cost import BatchTrace
from .._core.events import BatchRecord
from .._core.statistics import Statistics
from .runner import ChunkResult

__all__ = ["BulkProgress", "BulkStatistics", "Counters", "batch_records"]


@dataclass
class Counters:
    """A run's running totals (live, owned by the run)."""

    done: int = 0  # items finished (succeeded or failed), resumed ones included
    failed: int = 0  # items that ended as ItemFailure
    chunks: int = 0  # chunks finished
    resumed: int = 0  # items taken from the job file instead of being run
    quarantined: int = 0  # damaged stored chunks moved aside and run again
    errors: Counter[str] = field(default_factory=Counter)  # failures by exception type
    reasons: Counter[str] = field(default_factory=Counter)  # grouped batches by close reason
    oom_splits: int = 0  # out-of-memory errors the grouped batches met
    setups: int = 0  # models set up (instantiated, setup() called) by the chunks run

    def add_batches(self, traces: Sequence[BatchTrace]) -> None:
        """Count the batches a chunk function ran inside a chunk (``cost=``)."""
        for trace in traces:
            self.reasons[trace.reason] += 1
            self.oom_splits += trace.oom_splits


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
        close_reasons: with ``cost=``, the batches run inside chunks by why they
            closed (``count``, ``budget``, ``input_end``); empty without.
        oom_splits: out-of-memory errors those batches met, each one a split.
        model_setups: with a model class, how many times it was instantiated and
            set up: once per worker process (or per run, in this process).
    """

    resumed: int
    quarantined_chunks: int
    elapsed: float
    total: int | None
    error_types: Mapping[str, int]
    batch_size_history: tuple[int, ...]
    in_flight_chunks: int
    finished: bool
    close_reasons: Mapping[str, int] = field(default_factory=dict)
    oom_splits: int = 0
    model_setups: int = 0

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


def batch_records(result: ChunkResult, size: int, queue_depth: int, name: str) -> list[BatchRecord]:
    """What listeners hear of a finished chunk, ``size`` of whose items ran here.

    One record for the chunk; or, when its function ran batches of its own
    (``result.batches``), one per batch (with its items that failed alone, out of
    memory) and one for the items the chunk's isolation failed alone (no close
    reason: each failed on its own).
    """
    if not result.batches:
        return [
            BatchRecord(
                engine="bulk",
                size=size,
                duration=result.duration,
                succeeded=size - result.failed,
                failed=result.failed,
                error_types=result.error_types,
                queue_depth=queue_depth,
                name=name,
                cost=size,
                padded_cost=size,
            )
        ]
    records = [
        BatchRecord(
            engine="bulk",
            size=trace.size,
            duration=trace.duration,
            succeeded=trace.size - len(trace.errors),
            failed=len(trace.errors),
            error_types=dict(Counter(trace.errors)),
            queue_depth=queue_depth,
            name=name,
            close_reason=trace.reason,
            cost=trace.cost,
            padded_cost=trace.padded_cost,
            oom_splits=trace.oom_splits,
        )
        for trace in result.batches
    ]
    # The items that failed alone outside the batches (isolated after a call raised).
    alone = Counter(result.error_types) - Counter(e for t in result.batches for e in t.errors)
    if alone:
        failed = alone.total()
        ran = sum(trace.duration for trace in result.batches)
        records.append(
            BatchRecord(
                engine="bulk",
                size=failed,
                duration=max(result.duration - ran, 0.0),
                failed=failed,
                error_types=dict(alone),
                queue_depth=queue_depth,
                name=name,
                cost=failed,
                padded_cost=failed,
            )
        )
    return records
