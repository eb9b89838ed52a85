"""`BufferStatistics`, the frozen snapshot of a `BatchStateManager`, and the seed's view of it.

The snapshot shares the fields of every engine's statistics
(`batchpilot._core.statistics.Statistics`) and adds the buffer's own; the seed's
``get_detailed_stats()`` dictionary is `detailed_view` of it, key for key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from .._core.statistics import Statistics
from .config import BatchProcessingConfig
from .state import EntryBuffer

__all__ = ["COUNTERS", "BufferStatistics", "buffer_fields", "detailed_view", "health_status"]

COUNTERS = (
    "entries_queued",
    "flushes",
    "failed_flushes",
    "retries",
    "kept_after_failure",
    "dead_lettered_entries",
    "dropped_entries",
    "duplicates_ignored",
    "overflow_events",
    "rejected_entries",
    "recovered_entries",
    "quarantined_entries",
    "unflushed_at_close",
    "in_flight_at_close",
)
"""The manager's counters, besides ``entries_flushed`` (the shared ``succeeded``)."""

Health = Literal["healthy", "degraded", "critical"]


@dataclass(frozen=True)
class BufferStatistics(Statistics):
    """A snapshot of a `BatchStateManager` (plain values, never live internals).

    The shared fields count flushes as batches: ``batches`` flushes finished
    (``flushes + failed_flushes``), ``items`` their entries, ``succeeded`` the
    entries delivered (``entries_flushed``), ``failed`` those dead-lettered or
    kept after a failure; ``queue_depth`` is the entries buffered now and ``rate``
    the entries of finished flushes per second since the manager started.

    Attributes:
        normal_buffered: entries buffered at priority 0 (all of them without
            priority flushing).
        priority_buffered: entries buffered at priority 1 and 2.
        in_flight: entries taken by a running flush.
        max_buffer_size: the most entries held at once.
        oldest_entry_age: seconds the oldest buffered entry has waited.
        flushing: a flush is running.
        closed: ``close`` was called (or user code stopped the manager).
        journal_path: the journal file, or None.
        monitoring_enabled: the moving-window figures below are kept.
        throughput: entries per second of flush time over the last 100 flushes.
        avg_processing_time: mean seconds per callback call, over that window.
        p95_latency: 95th percentile of a flush's seconds, over that window.
        avg_batch_size: mean entries per flush, over that window.
        avg_queue_time: mean seconds an entry waited for its flush, over that window.
        error_rate: failed share of the flushed entries, over that window.
        avg_queue_entry: mean seconds one ``queue_entry`` call took.
        memory_percent: system memory in use, or None while the reader fails.
        process_rss_mb: this process's resident memory, MiB.
        health: ``"healthy"``, ``"degraded"`` or ``"critical"``.
        entries_queued ... in_flight_at_close: the counters named in `COUNTERS`.
        flush_triggers: flushes started, per trigger.
        optimization_events: the latest changes of the size threshold.
    """

    normal_buffered: int
    priority_buffered: int
    in_flight: int
    max_buffer_size: int
    oldest_entry_age: float
    flushing: bool
    closed: bool
    journal_path: str | None
    monitoring_enabled: bool
    throughput: float
    avg_processing_time: float
    p95_latency: float
    avg_batch_size: float
    avg_queue_time: float
    error_rate: float
    avg_queue_entry: float
    memory_percent: float | None
    process_rss_mb: float
    health: Health
    entries_queued: int
    flushes: int
    failed_flushes: int
    retries: int
    kept_after_failure: int
    dead_lettered_entries: int
    dropped_entries: int
    duplicates_ignored: int
    overflow_events: int
    rejected_entries: int
    recovered_entries: int
    quarantined_entries: int
    unflushed_at_close: int
    in_flight_at_close: int
    flush_triggers: Mapping[str, int]
    optimization_events: tuple[Mapping[str, Any], ...]

    @property
    def utilization_percent(self) -> float:
        """Entries held (buffered or in flight) as a share of ``max_buffer_size``."""
        return 100.0 * (self.queue_depth + self.in_flight) / self.max_buffer_size


def buffer_fields(buffer: EntryBuffer, now: float) -> dict[str, Any]:
    """The snapshot's fields that describe ``buffer`` at clock time ``now``."""
    separate, oldest = buffer.separate_priorities, buffer.oldest_queued_at()
    return {
        "queue_depth": buffer.buffered,
        "normal_buffered": buffer.count((0,)) if separate else buffer.buffered,
        "priority_buffered": buffer.count((1, 2)) if separate else 0,
        "in_flight": buffer.in_flight,
        "max_buffer_size": buffer.capacity,
        "oldest_entry_age": 0.0 if oldest is None else now - oldest,
    }


def health_status(
    memory: float | None, config: BatchProcessingConfig, utilization: float
) -> Health:
    """Critical past the emergency memory level or when full; degraded past the early one."""
    if (
        memory is not None and memory > config.memory_emergency_flush_percent
    ) or utilization >= 100:
        return "critical"
    if (memory is not None and memory > config.memory_early_flush_percent) or utilization >= 75:
        return "degraded"
    return "healthy"


def detailed_view(stats: BufferStatistics, config: BatchProcessingConfig) -> dict[str, Any]:
    """The seed's ``get_detailed_stats()`` dictionary: ``stats`` plus the config's targets."""
    processing_ms = 1000.0 * stats.avg_processing_time
    counters = {"entries_queued": stats.entries_queued, "entries_flushed": stats.succeeded}
    counters.update((name, getattr(stats, name)) for name in COUNTERS[1:])
    attempts = stats.entries_queued + stats.duplicates_ignored + stats.rejected_entries
    return {
        "name": stats.name,
        "buffer_state": _buffer_state(stats),
        "performance": {
            "monitoring_enabled": stats.monitoring_enabled,
            "throughput_eps": stats.throughput,
            "avg_processing_time_ms": processing_ms,
            "p95_latency_ms": 1000.0 * stats.p95_latency,
            "avg_batch_size": stats.avg_batch_size,
            "avg_queue_time_ms": 1000.0 * stats.avg_queue_time,
            "avg_queue_entry_us": 1e6 * stats.avg_queue_entry,
            "performance_target_ms": config.performance_target_ms,
            "throughput_target_eps": config.throughput_target_eps,
            "meets_performance_target": processing_ms <= config.performance_target_ms,
            "meets_throughput_target": stats.throughput >= config.throughput_target_eps,
            "error_rate": stats.error_rate,
        },
        "counters": counters,
        "flush_triggers": dict(stats.flush_triggers),
        "system_health": {
            "status": stats.health,
            "memory_percent": stats.memory_percent,
            "memory_early_flush_percent": config.memory_early_flush_percent,
            "memory_emergency_flush_percent": config.memory_emergency_flush_percent,
            "memory_efficiency_percent": 100.0 * (1 - stats.overflow_events / attempts)
            if attempts
            else 100.0,
            "process_rss_mb": stats.process_rss_mb,
        },
        "optimization_events": [dict(event) for event in stats.optimization_events],
    }


def _buffer_state(stats: BufferStatistics) -> dict[str, Any]:
    return {
        "buffer_size": stats.normal_buffered,
        "priority_buffer_size": stats.priority_buffered,
        "total_buffered": stats.queue_depth,
        "in_flight": stats.in_flight,
        "max_buffer_size": stats.max_buffer_size,
        "utilization_percent": stats.utilization_percent,
        "current_size_threshold": stats.current_batch_size,
        "oldest_entry_age_seconds": stats.oldest_entry_age,
        "flushing": stats.flushing,
        "closed": stats.closed,
        "journal_path": stats.journal_path,
    }
