"""The processor's own batch listener: statistics, load meter, garbage collection, debug log."""

from __future__ import annotations

import gc
import logging
import threading
from collections import deque

from .._core.clock import Clock
from .._core.events import BatchRecord
from .._core.stats import BatchStats
from .config import BatchProcessorConfig

__all__ = ["BatchRecorder", "LoadMeter"]

_log = logging.getLogger("batchpilot.online")

_YOUNG_GENERATIONS = 1  # gc.collect(1) collects generations 0 and 1


class LoadMeter:
    """Busy fraction of ``workers`` slots over the last ``window`` batches."""

    def __init__(self, window: int, workers: int) -> None:
        self._workers = workers
        self._batches: deque[tuple[float, float]] = deque(maxlen=window)
        self._lock = threading.Lock()

    def add(self, finished_at: float, duration: float) -> None:
        with self._lock:
            self._batches.append((finished_at, duration))

    def value(self) -> float:
        with self._lock:
            if not self._batches:
                return 0.0
            first_end, first_duration = self._batches[0]
            span = self._batches[-1][0] - (first_end - first_duration)
            busy = sum(duration for _, duration in self._batches)
        if span <= 0:
            return 0.0
        return min(1.0, busy / (span * self._workers))


class BatchRecorder:
    """The processor's own listener: statistics, load, garbage collection, debug log."""

    def __init__(self, config: BatchProcessorConfig, clock: Clock) -> None:
        self._config = config
        self._clock = clock
        self.stats = BatchStats(config.monitoring_window)
        self.load = LoadMeter(config.monitoring_window, config.max_workers)

    def record_batch(self, record: BatchRecord) -> None:
        """Account one batch; the engine calls this before the batch's futures resolve,
        so a `get_stats` made after ``future.result()`` includes that batch."""
        config = self._config
        if config.enable_monitoring:
            self.stats.update(
                record.duration, record.size, record.queue_time, record.latency, record.queue_depth
            )
            if record.failed:
                self.stats.record_error(record.failed)
            self.load.add(self._clock.now(), record.duration)
        if config.enable_memory_optimization and record.size > config.gc_batch_threshold:
            gc.collect(_YOUNG_GENERATIONS)
        if config.debug_mode:
            _log.debug(
                "batch of %d: %.6f s, queued %.6f s, %d ok, %d failed %s, %d waiting",
                record.size,
                record.duration,
                record.queue_time,
                record.succeeded,
                record.failed,
                dict(record.error_types),
                record.queue_depth,
            )
