"""`ProgressTracker` (seed 002): counts, rates, ETA and progress callbacks."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any

from .._core.clock import SYSTEM_CLOCK, Clock
from .callbacks import asettle, check_callable, invoke, settle

__all__ = ["ProgressCallback", "ProgressTracker"]

ProgressCallback = Callable[[dict[str, Any]], Any]
"""Receives a progress snapshot (see `ProgressTracker.get_progress`); may be async."""


class ProgressTracker:
    """Progress of a long job: processed/successful/failed, rates, ETA, callbacks.

    Call `start` when a job begins and `update` (or `aupdate` from a coroutine)
    after each chunk; every update passes a snapshot dict to each callback. Rates
    are items per second of elapsed time on the injected clock; the ETA is the
    remaining items divided by that rate (None while unknown, e.g. for an input of
    unknown length). A failing callback is logged and counted in
    ``callback_errors``, never raised. Thread-safe.

    Example:
        >>> from batchpilot.testing import FakeClock
        >>> clock = FakeClock()
        >>> tracker = ProgressTracker(clock=clock)
        >>> tracker.start(total=100)
        >>> clock.advance(2.0)
        >>> snapshot = tracker.update(succeeded=40, failed=10)
        >>> snapshot["percentage"], snapshot["items_per_second"], snapshot["eta_seconds"]
        (50.0, 25.0, 2.0)
    """

    def __init__(self, total: int | None = None, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._callbacks: list[ProgressCallback] = []
        self._background: set[asyncio.Task[int]] = set()
        self.callback_errors = 0
        self._reset(total)

    def _reset(self, total: int | None) -> None:
        if total is not None and (isinstance(total, bool) or total < 0):
            raise ValueError(f"total must be a count >= 0 or None, got {total!r}")
        self.total = total
        self.successful = 0
        self.failed = 0
        self.chunks_completed = 0
        self.start_time: float | None = None
        self.end_time: float | None = None

    def add_callback(self, callback: ProgressCallback) -> None:
        """Call ``callback(progress_dict)`` after every update (sync or ``async def``)."""
        check_callable(callback, "progress callback")
        with self._lock:
            self._callbacks.append(callback)

    def remove_callback(self, callback: ProgressCallback) -> None:
        """Stop calling ``callback``; unknown callbacks are ignored."""
        with self._lock:
            if callback in self._callbacks:
                self._callbacks.remove(callback)

    def start(self, total: int | None = None) -> None:
        """Begin a job of ``total`` items (None if unknown): counters restart at zero."""
        with self._lock:
            self._reset(total)
            self.start_time = self._clock.now()

    def finish(self) -> dict[str, Any]:
        """Mark the job finished (the elapsed time stops); return the final snapshot."""
        with self._lock:
            self.end_time = self._clock.now()
        return self.get_progress()

    def update(self, succeeded: int = 0, failed: int = 0, chunks: int = 1) -> dict[str, Any]:
        """Count finished items and chunks, run the callbacks, return the snapshot."""
        snapshot, pending = self._count(succeeded, failed, chunks)
        self._add_errors(settle(pending, self._background))
        return snapshot

    async def aupdate(self, succeeded: int = 0, failed: int = 0, chunks: int = 1) -> dict[str, Any]:
        """`update` for coroutines: async callbacks are awaited before returning."""
        snapshot, pending = self._count(succeeded, failed, chunks)
        self._add_errors(await asettle(pending))
        return snapshot

    def _count(
        self, succeeded: int, failed: int, chunks: int
    ) -> tuple[dict[str, Any], list[Awaitable[Any]]]:
        if min(succeeded, failed, chunks) < 0:
            raise ValueError("progress counts must be >= 0")
        with self._lock:
            if self.start_time is None:
                self.start_time = self._clock.now()
            self.successful += succeeded
            self.failed += failed
            self.chunks_completed += chunks
            callbacks = list(self._callbacks)
        snapshot = self.get_progress()
        pending, errors = invoke(callbacks, snapshot)
        self._add_errors(errors)
        return snapshot, pending

    def _add_errors(self, count: int) -> None:
        if count:
            with self._lock:
                self.callback_errors += count

    @property
    def processed(self) -> int:
        """Items finished so far, successful or failed."""
        return self.successful + self.failed

    def get_progress(self) -> dict[str, Any]:
        """A plain snapshot of the progress.

        Keys: ``total`` (None if unknown), ``processed``, ``successful``, ``failed``,
        ``remaining``, ``percentage`` (0-100, None if the total is unknown),
        ``success_rate`` and ``failure_rate`` (fractions of processed items),
        ``chunks_completed``, ``elapsed_time`` (s), ``items_per_second``,
        ``eta_seconds`` (None while unknown) and ``is_complete``.
        """
        with self._lock:
            now = self._clock.now() if self.end_time is None else self.end_time
            elapsed = 0.0 if self.start_time is None else max(0.0, now - self.start_time)
            processed = self.successful + self.failed
            total = self.total
            remaining = None if total is None else max(0, total - processed)
            rate = processed / elapsed if elapsed > 0 else 0.0
            eta: float | None = None
            percentage: float | None = None
            if total is not None and remaining is not None:
                percentage = 100.0 * processed / total if total else 100.0
                if remaining == 0 or rate > 0:
                    eta = remaining / rate if remaining else 0.0
            return {
                "total": total,
                "processed": processed,
                "successful": self.successful,
                "failed": self.failed,
                "remaining": remaining,
                "percentage": percentage,
                "success_rate": self.successful / processed if processed else 0.0,
                "failure_rate": self.failed / processed if processed else 0.0,
                "chunks_completed": self.chunks_completed,
                "elapsed_time": elapsed,
                "items_per_second": rate,
                "eta_seconds": eta,
                "is_complete": total is not None and processed >= total,
            }

    def get_stats(self) -> dict[str, Any]:
        """`get_progress` plus start/end times and the callback bookkeeping."""
        stats = self.get_progress()
        with self._lock:
            stats.update(
                start_time=self.start_time,
                end_time=self.end_time,
                callbacks=len(self._callbacks),
                callback_errors=self.callback_errors,
            )
        return stats

    def __repr__(self) -> str:
        return (
            f"ProgressTracker(processed={self.processed}, total={self.total}, "
            f"failed={self.failed}, callbacks={len(self._callbacks)})"
        )
