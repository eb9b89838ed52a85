"""Test helpers: a deterministic clock for driving time-based behaviour without sleeping."""

from __future__ import annotations

import threading

__all__ = ["FakeClock"]


class FakeClock:
    """A manually advanced clock.

    ``sleep(s)`` advances the clock by ``s`` instead of blocking, and records the
    request in ``sleeps``, so retry back-offs and age-based triggers can be asserted
    exactly. Thread-safe.

    Example:
        >>> clock = FakeClock()
        >>> clock.advance(2.5)
        >>> clock.now()
        2.5
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = float(start)
        self._lock = threading.Lock()
        self.sleeps: list[float] = []

    def now(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds`` (must not be negative)."""
        if seconds < 0:
            raise ValueError("cannot move a clock backwards")
        with self._lock:
            self._now += seconds

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
        if seconds > 0:
            self.advance(seconds)

    def __repr__(self) -> str:
        return f"FakeClock(now={self._now!r})"
