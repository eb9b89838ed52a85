"""System health readings shared by the engines: memory, sampled at intervals."""

from __future__ import annotations

import threading
from collections.abc import Callable

import psutil

from .clock import SYSTEM_CLOCK, Clock

__all__ = ["SampledReading", "process_rss_mb", "system_memory_percent"]


def system_memory_percent() -> float:
    """Percentage of system memory in use (psutil)."""
    return float(psutil.virtual_memory().percent)


def process_rss_mb() -> float:
    """Resident set size of this process in MiB."""
    return psutil.Process().memory_info().rss / (1024 * 1024)


class SampledReading:
    """Caches ``read()`` for ``interval`` seconds, so hot paths can ask for free.

    Example:
        >>> memory = SampledReading(system_memory_percent, interval=1.0)
        >>> 0.0 <= memory.value() <= 100.0
        True
    """

    def __init__(
        self, read: Callable[[], float], interval: float, clock: Clock = SYSTEM_CLOCK
    ) -> None:
        if interval < 0:
            raise ValueError(f"interval must be >= 0, got {interval}")
        self._read = read
        self._interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._value = 0.0
        self._taken_at: float | None = None

    def value(self) -> float:
        now = self._clock.now()
        with self._lock:
            if self._taken_at is None or now - self._taken_at >= self._interval:
                self._value = float(self._read())
                self._taken_at = now
            return self._value

    def __repr__(self) -> str:
        return f"SampledReading(value={self._value}, interval={self._interval})"
