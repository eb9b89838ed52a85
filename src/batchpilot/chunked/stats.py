"""`ProcessingStats`: the ``processor.stats`` of seed 002's `BatchProcessor`."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from .._core.clock import SYSTEM_CLOCK, Clock

__all__ = ["ProcessingStats"]


@dataclass
class ProcessingStats:
    """Statistics of the latest `BatchProcessor.process_targets` run.

    ``to_dict()`` adds the derived rates and is JSON-serializable, so
    ``json.dumps(processor.stats.to_dict())`` works as in the seed.

    Attributes:
        run_id: the run's id (also its key in `ResultStorage`).
        mode: the `ProcessingMode` value used.
        strategy: the chunk strategy used (`ChunkStrategy` value or custom name).
        total_targets: input length if known, else None.
        processed_targets: targets finished (successful + failed).
        successful_targets: targets that returned a result.
        failed_targets: targets that raised (or timed out).
        slow_targets: sync targets that overran ``max_processing_time``.
        completed_chunks: chunks finished.
        failed_chunks: chunks with at least one failed target.
        chunk_sizes: size of every finished chunk, in completion order.
        chunk_times: seconds each finished chunk took, same order.
        error_types: failed targets counted by exception class name.
        persisted_chunks: chunks stored by `ResultStorage`.
        persistence_errors: chunks whose storing failed (logged; results kept).
        callback_errors: progress callbacks and result processors that raised.
        gc_collections: garbage collections run by the memory monitor.
        peak_memory_mb: highest memory reading during the run.
        workers: chunks allowed in flight at once.
        interrupted: the run stopped early (`BatchProcessor.shutdown`, a
            cancellation, or a failure raised without error recovery).
        next_target_index: every target before this index has finished; pass
            ``targets[next_target_index:]`` to finish an interrupted run.
        start_time: monotonic start of the run.
        end_time: monotonic end of the run (None while running).
        clock: the clock the times come from.
    """

    run_id: str = ""
    mode: str = ""
    strategy: str = ""
    total_targets: int | None = None
    processed_targets: int = 0
    successful_targets: int = 0
    failed_targets: int = 0
    slow_targets: int = 0
    completed_chunks: int = 0
    failed_chunks: int = 0
    chunk_sizes: list[int] = field(default_factory=list)
    chunk_times: list[float] = field(default_factory=list)
    error_types: Counter[str] = field(default_factory=Counter)
    persisted_chunks: int = 0
    persistence_errors: int = 0
    callback_errors: int = 0
    gc_collections: int = 0
    peak_memory_mb: float = 0.0
    workers: int = 0
    interrupted: bool = False
    next_target_index: int = 0
    start_time: float | None = None
    end_time: float | None = None
    clock: Clock = field(default=SYSTEM_CLOCK, repr=False, compare=False)

    def record_chunk(
        self, size: int, succeeded: int, failed: int, duration: float, error_types: Counter[str]
    ) -> None:
        """Count one finished chunk."""
        self.completed_chunks += 1
        self.failed_chunks += 1 if failed else 0
        self.processed_targets += size
        self.successful_targets += succeeded
        self.failed_targets += failed
        self.chunk_sizes.append(size)
        self.chunk_times.append(duration)
        self.error_types.update(error_types)

    @property
    def processing_time(self) -> float:
        """Seconds the run took (so far, while it is running)."""
        if self.start_time is None:
            return 0.0
        end = self.end_time if self.end_time is not None else self.clock.now()
        return end - self.start_time

    def to_dict(self) -> dict[str, Any]:
        """A plain, JSON-serializable snapshot including derived rates.

        Derived keys: ``processing_time`` (s), ``targets_per_second``,
        ``success_rate`` and ``error_rate`` (fractions of processed targets),
        ``average_chunk_size`` and ``average_chunk_time``.
        """
        elapsed = self.processing_time
        processed = self.processed_targets
        chunks = self.completed_chunks
        return {
            "run_id": self.run_id,
            "mode": self.mode,
            "strategy": self.strategy,
            "total_targets": self.total_targets,
            "processed_targets": processed,
            "successful_targets": self.successful_targets,
            "failed_targets": self.failed_targets,
            "slow_targets": self.slow_targets,
            "completed_chunks": chunks,
            "failed_chunks": self.failed_chunks,
            "chunk_sizes": list(self.chunk_sizes),
            "chunk_times": list(self.chunk_times),
            "error_types": dict(self.error_types),
            "persisted_chunks": self.persisted_chunks,
            "persistence_errors": self.persistence_errors,
            "callback_errors": self.callback_errors,
            "gc_collections": self.gc_collections,
            "peak_memory_mb": self.peak_memory_mb,
            "workers": self.workers,
            "interrupted": self.interrupted,
            "next_target_index": self.next_target_index,
            "start_time": self.start_time,
            "end_time": self.end_time,
            "processing_time": elapsed,
            "targets_per_second": processed / elapsed if elapsed > 0 else 0.0,
            "success_rate": self.successful_targets / processed if processed else 0.0,
            "error_rate": self.failed_targets / processed if processed else 0.0,
            "average_chunk_size": processed / chunks if chunks else 0.0,
            "average_chunk_time": sum(self.chunk_times) / chunks if chunks else 0.0,
        }
