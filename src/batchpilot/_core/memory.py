"""`MemoryMonitor` (seed 002): current, peak and limit of the process memory, plus gc."""

from __future__ import annotations

import gc
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from .clock import SYSTEM_CLOCK, Clock
from .health import process_rss_mb, system_memory_percent

__all__ = ["MemoryMonitor"]


class MemoryMonitor:
    """Tracks this process's resident memory against a limit.

    Readings are taken by `sample` (the chunked processor samples after every
    chunk); `current_memory_mb` and `peak_memory_mb` report the latest and the
    largest reading, `history` keeps the last ``history_size`` ``(time, MiB)``
    pairs. Thread-safe.

    Args:
        memory_limit_mb: the limit in MiB (``ChunkConfig.max_memory_mb``).
        history_size: readings kept in `history`.
        read_memory_mb: how to read memory in MiB; defaults to the process RSS
            (psutil). Tests pass a scripted reading.
        collect: the garbage collector, called with a generation; `gc.collect`.
        clock: time source of the history's timestamps.

    Example:
        >>> monitor = MemoryMonitor(memory_limit_mb=1_000_000)
        >>> monitor.sample() > 0, monitor.is_memory_limit_exceeded()
        (True, False)
    """

    def __init__(
        self,
        memory_limit_mb: float = 512,
        *,
        history_size: int = 1000,
        read_memory_mb: Callable[[], float] = process_rss_mb,
        collect: Callable[[int], int] = gc.collect,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        if isinstance(memory_limit_mb, bool) or not memory_limit_mb > 0:
            raise ValueError(f"memory_limit_mb must be > 0, got {memory_limit_mb!r}")
        if history_size < 1:
            raise ValueError(f"history_size must be >= 1, got {history_size}")
        self.memory_limit_mb = float(memory_limit_mb)
        self.history: deque[tuple[float, float]] = deque(maxlen=history_size)
        self.gc_collections = 0
        self.freed_mb = 0.0
        self._read = read_memory_mb
        self._collect = collect
        self._clock = clock
        self._lock = threading.Lock()
        self._current: float | None = None
        self._peak = 0.0

    def sample(self) -> float:
        """Read memory now, record it, and return it in MiB."""
        value = float(self._read())
        with self._lock:
            self._current = value
            self._peak = max(self._peak, value)
            self.history.append((self._clock.now(), value))
        return value

    @property
    def current_memory_mb(self) -> float:
        """The latest reading in MiB (taken now if there is none yet)."""
        current = self._current
        return self.sample() if current is None else current

    @property
    def peak_memory_mb(self) -> float:
        """The largest reading since creation or `reset_peak`."""
        if self._current is None:
            self.sample()
        return self._peak

    def reset_peak(self) -> None:
        """Start peak tracking afresh from the next reading."""
        with self._lock:
            self._peak = 0.0 if self._current is None else self._current

    def is_memory_limit_exceeded(self) -> bool:
        """Take a reading; True if it is above ``memory_limit_mb``."""
        return self.sample() > self.memory_limit_mb

    def collect_garbage(self, generation: int = 2) -> float:
        """Run the garbage collector; return the MiB it freed (0 if none measurable).

        ``generation=2`` (the default) is a full collection, which takes
        milliseconds in a large process; 0 or 1 only collect young objects (cheap).
        """
        before = self.sample()
        self._collect(generation)
        freed = max(0.0, before - self.sample())
        with self._lock:
            self.gc_collections += 1
            self.freed_mb += freed
        return freed

    def check_memory(self) -> bool:
        """Collect garbage if over the limit; return whether it is still exceeded."""
        if not self.is_memory_limit_exceeded():
            return False
        self.collect_garbage()
        return self.current_memory_mb > self.memory_limit_mb

    def get_memory_stats(self) -> dict[str, Any]:
        """A plain snapshot: current/peak/limit/average MiB, usage of the limit, gc runs."""
        current = self.current_memory_mb
        with self._lock:
            readings = [value for _, value in self.history]
            return {
                "current_memory_mb": current,
                "peak_memory_mb": self._peak,
                "memory_limit_mb": self.memory_limit_mb,
                "available_memory_mb": max(0.0, self.memory_limit_mb - current),
                "memory_usage_percent": 100.0 * current / self.memory_limit_mb,
                "limit_exceeded": current > self.memory_limit_mb,
                "average_memory_mb": sum(readings) / len(readings) if readings else current,
                "samples": len(readings),
                "gc_collections": self.gc_collections,
                "freed_memory_mb": self.freed_mb,
                "system_memory_percent": system_memory_percent(),
            }

    def __repr__(self) -> str:
        return (
            f"MemoryMonitor(current_mb={self._current}, peak_mb={self._peak}, "
            f"limit_mb={self.memory_limit_mb}, gc_collections={self.gc_collections})"
        )
