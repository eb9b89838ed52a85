"""What a manager has done: its counters, the moving window of flushes, size events.

`FlushAccount` books each finished flush (under the manager's lock), reports it
(the moving window, a debug line, one `BatchRecord` per flush for the listeners)
and hands the counted fields to the `BufferStatistics` snapshot.
"""

from __future__ import annotations

import logging
from collections import Counter, deque
from collections.abc import Callable, Iterable
from typing import Any

from .._core.events import BatchListener, BatchRecord, as_listener, notify
from .._core.stats import BatchStats
from .delivery import Delivery, FlushJob
from .statistics import COUNTERS

__all__ = ["FlushAccount"]

_log = logging.getLogger("batchpilot.buffer")

_STATS_WINDOW = 100
_EVENTS_KEPT = 100


class FlushAccount:
    """Counters and figures of one manager; not locked on its own (the manager's lock is)."""

    def __init__(
        self,
        name: str,
        monitoring: bool,
        listeners: Iterable[BatchListener | Callable[[BatchRecord], object]],
        started: float,
    ) -> None:
        self.counts: Counter[str] = Counter()  # the counters of get_detailed_stats
        self.queue_seconds = 0.0  # time spent inside queue_entry, all calls together
        self.events: deque[dict[str, Any]] = deque(maxlen=_EVENTS_KEPT)  # size changes
        self._window = BatchStats(_STATS_WINDOW)  # the moving window of the last flushes
        self._name = name  # for the log and the batch records
        self._monitoring = monitoring  # keep the moving window
        self._listeners = [as_listener(hook) for hook in listeners]  # one record per flush
        self._started = started  # when the manager started, for the rate

    def book(self, size: int, delivery: Delivery, kept: int, event: dict[str, Any] | None) -> None:
        """Count a finished flush of ``size`` entries, ``kept`` of them back in the buffer."""
        counts = self.counts
        counts["retries"] += delivery.retries
        counts["entries_flushed"] += delivery.delivered
        counts["kept_after_failure"] += kept
        if delivery.delivered == size:
            counts["flushes"] += 1
        else:
            counts["failed_flushes"] += 1
            counts["dead_lettered_entries"] += size - delivery.delivered - kept
        if event is not None:
            self.events.append(event)

    def report(
        self, job: FlushJob, delivery: Delivery, kept: int, finished: float, depth: int
    ) -> None:
        """The moving window, the debug log line and the listeners' `BatchRecord`."""
        size = len(job.entries)
        failed = size - delivery.delivered
        queue_time = sum(job.started - item.queued_at for item in job.entries) / size
        if self._monitoring:
            if failed == 0:
                self._window.update(delivery.attempt_time, size, queue_time, queue_length=depth)
            else:
                self._window.record_error(size)
        _log.debug(
            "%s: flush of %d (%s): %d delivered, %d dead-lettered, %d kept",
            self._name, size, job.reason, delivery.delivered, failed - kept, kept,
        )  # fmt: skip
        errors = Counter(type(error).__name__ for _, error in delivery.failures)
        record = BatchRecord(
            engine="buffer",
            size=size,
            duration=finished - job.started,
            queue_time=queue_time,
            succeeded=delivery.delivered,
            failed=failed,
            error_types=dict(errors),
            queue_depth=depth,
            name=self._name,
            cost=size,
            padded_cost=size,
        )
        notify(self._listeners, record)

    def figures(self, now: float) -> dict[str, Any]:
        """The snapshot's counted fields (call with the manager's lock held)."""
        counts: dict[str, Any] = {name: self.counts[name] for name in COUNTERS}
        succeeded = self.counts["entries_flushed"]
        failed = counts["dead_lettered_entries"] + counts["kept_after_failure"]
        elapsed, queued = now - self._started, counts["entries_queued"]
        window = self._window.get_stats()
        return {
            "name": self._name,
            "batches": counts["flushes"] + counts["failed_flushes"],
            "items": succeeded + failed,
            "succeeded": succeeded,
            "failed": failed,
            "rate": (succeeded + failed) / elapsed if elapsed > 0 else 0.0,
            "monitoring_enabled": self._monitoring,
            "throughput": window["throughput"],
            "avg_processing_time": window["avg_processing_time"],
            "p95_latency": window["p95_latency"],
            "avg_batch_size": window["avg_batch_size"],
            "avg_queue_time": window["avg_queue_time"],
            "error_rate": window["error_rate"],
            "avg_queue_entry": self.queue_seconds / queued if queued else 0.0,
            "optimization_events": tuple(self.events),
            **counts,
        }
