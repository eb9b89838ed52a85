"""Moving-window batch statistics (the ``BatchStats`` of seeds 000/001)."""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

import numpy as np

__all__ = ["BatchStats"]


class BatchStats:
    """Thread-safe moving-window statistics over the last ``window_size`` batches.

    Attributes follow the seed: ``processing_times``, ``batch_sizes``,
    ``queue_times``, ``latencies``, ``queue_lengths`` (deques of the window),
    ``error_counts``, ``batch_counts`` and ``total_processed`` (running totals).
    ``get_stats`` is cached until the next update.

    ``throughput`` is items per second of batch processing time over the window;
    ``error_rate`` is failed items / processed items since creation, a fraction in
    [0, 1]: engines count a batch's failed items in its ``batch_size`` too, and
    errors recorded for items that never ran (timeouts) cannot push it past 1.
    ``latency`` passed to `update` is per batch; when it is 0 the batch's
    ``queue_time + processing_time`` is used.
    """

    def __init__(self, window_size: int) -> None:
        if window_size < 1:
            raise ValueError(f"window_size must be >= 1, got {window_size}")
        self.window_size = window_size
        self.processing_times: deque[float] = deque(maxlen=window_size)
        self.batch_sizes: deque[int] = deque(maxlen=window_size)
        self.queue_times: deque[float] = deque(maxlen=window_size)
        self.latencies: deque[float] = deque(maxlen=window_size)
        self.queue_lengths: deque[int] = deque(maxlen=window_size)
        self.error_counts = 0
        self.batch_counts = 0
        self.total_processed = 0
        self._lock = threading.Lock()
        self._cache: dict[str, float] | None = None

    def update(
        self,
        processing_time: float,
        batch_size: int,
        queue_time: float,
        latency: float = 0.0,
        queue_length: int = 0,
    ) -> None:
        """Record one processed batch."""
        with self._lock:
            self.processing_times.append(processing_time)
            self.batch_sizes.append(batch_size)
            self.queue_times.append(queue_time)
            self.latencies.append(latency or queue_time + processing_time)
            self.queue_lengths.append(queue_length)
            self.batch_counts += 1
            self.total_processed += batch_size
            self._cache = None

    def record_error(self, count: int = 1) -> None:
        """Count ``count`` failed items."""
        with self._lock:
            self.error_counts += count
            self._cache = None

    def get_stats(self) -> dict[str, float]:
        """A snapshot: averages, p50/p95/p99 latency, throughput and error rate."""
        with self._lock:
            if self._cache is None:
                self._cache = self._compute()
            return dict(self._cache)

    def _compute(self) -> dict[str, float]:
        busy = sum(self.processing_times)
        attempted = max(self.total_processed, self.error_counts)
        stats: dict[str, float] = {
            "avg_processing_time": _mean(self.processing_times),
            "avg_batch_size": _mean(self.batch_sizes),
            "avg_queue_time": _mean(self.queue_times),
            "avg_latency": _mean(self.latencies),
            "avg_queue_length": _mean(self.queue_lengths),
            "throughput": sum(self.batch_sizes) / busy if busy > 0 else 0.0,
            "error_rate": self.error_counts / attempted if attempted else 0.0,
            "total_processed": float(self.total_processed),
            "batch_count": float(self.batch_counts),
            "error_count": float(self.error_counts),
        }
        for name, q in (("p50_latency", 50), ("p95_latency", 95), ("p99_latency", 99)):
            stats[name] = _percentile(self.latencies, q)
        return stats

    def __repr__(self) -> str:
        return (
            f"BatchStats(window_size={self.window_size}, batches={self.batch_counts}, "
            f"processed={self.total_processed}, errors={self.error_counts})"
        )


def _mean(values: deque[Any]) -> float:
    return float(sum(values) / len(values)) if values else 0.0


def _percentile(values: deque[float], q: float) -> float:
    return float(np.percentile(np.fromiter(values, float), q)) if values else 0.0
