"""Health monitoring of the seed-001 `BatchProcessor`: memory, queue growth, stuck batches.

`CallTracker` wraps the batch function to know which calls are running and since
when; `HealthMonitor` reads system memory, the queue size and the tracker, logs what
crosses a threshold, and runs on a thread that sleeps on an `threading.Event`, so
stopping the processor wakes it at once.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from .._core.callables import is_async_callable
from .._core.clock import Clock

__all__ = ["CallTracker", "HealthMonitor", "HealthReport", "HealthThresholds"]

_log = logging.getLogger("batchpilot.online")

Status = Literal["ok", "warning", "critical"]
_RANK: dict[Status, int] = {"ok": 0, "warning": 1, "critical": 2}


class CallTracker:
    """Knows when each running call of the batch function started."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._tokens = itertools.count()
        self._started: dict[int, float] = {}
        self._lock = threading.Lock()

    def wrap(self, func: Callable[[Any], Any]) -> Callable[[Any], Any]:
        """Return ``func`` (plain or ``async def``) recording its running calls here."""
        if is_async_callable(func):

            async def tracked_async(batch: Any) -> Any:
                token = self._begin()
                try:
                    return await func(batch)
                finally:
                    self._end(token)

            return tracked_async

        def tracked(batch: Any) -> Any:
            token = self._begin()
            try:
                return func(batch)
            finally:
                self._end(token)

        return tracked

    def _begin(self) -> int:
        token = next(self._tokens)
        with self._lock:
            self._started[token] = self._clock.now()
        return token

    def _end(self, token: int) -> None:
        with self._lock:
            del self._started[token]

    def running(self) -> int:
        """Calls running now."""
        return len(self._started)

    def running_longer_than(self, seconds: float) -> int:
        """Calls that started more than ``seconds`` ago and have not finished."""
        now = self._clock.now()
        with self._lock:
            return sum(1 for start in self._started.values() if now - start > seconds)

    def __repr__(self) -> str:
        return f"CallTracker(running={self.running()})"


@dataclass(frozen=True)
class HealthThresholds:
    """When a reading counts as a warning or as critical."""

    memory_warning: float
    memory_critical: float
    queue_warning: int
    queue_critical: int
    stuck_after: float | None


@dataclass(frozen=True)
class HealthReport:
    """One health check.

    Attributes:
        memory_percent: system memory in use, or None if it could not be read.
        memory_status, queue_status: ``"ok"``, ``"warning"`` or ``"critical"``.
        queue_size: items waiting.
        stuck_batches: batch-function calls running longer than ``item_timeout``.
        checked_at: clock time of the check.
    """

    memory_percent: float | None
    memory_status: Status
    queue_size: int
    queue_status: Status
    stuck_batches: int
    checked_at: float

    @property
    def status(self) -> Status:
        """The worst of the readings; a stuck batch counts as a warning."""
        stuck: Status = "warning" if self.stuck_batches else "ok"
        return max((self.memory_status, self.queue_status, stuck), key=_RANK.__getitem__)

    def as_stats(self) -> dict[str, Any]:
        """The report as flat ``get_stats`` entries."""
        return {
            "health_status": self.status,
            "memory_percent": self.memory_percent,
            "memory_status": self.memory_status,
            "queue_status": self.queue_status,
            "stuck_batches": self.stuck_batches,
            "last_health_check": self.checked_at,
        }


def _grade(value: float, warning: float, critical: float) -> Status:
    if value >= critical:
        return "critical"
    if value >= warning:
        return "warning"
    return "ok"


class HealthMonitor:
    """Checks memory, queue size and stuck calls, logs problems, keeps the last report.

    ``on_memory_critical`` is called after a check that finds memory critical (the
    processor uses it to collect garbage and shrink the batch size).
    """

    def __init__(
        self,
        thresholds: HealthThresholds,
        *,
        read_memory: Callable[[], float],
        queue_size: Callable[[], int],
        calls: CallTracker,
        clock: Clock,
        on_memory_critical: Callable[[], None] = lambda: None,
    ) -> None:
        self.thresholds = thresholds
        self._read_memory = read_memory
        self._queue_size = queue_size
        self._calls = calls
        self._clock = clock
        self._on_memory_critical = on_memory_critical
        self._thread: threading.Thread | None = None
        self.last: HealthReport | None = None

    def check(self) -> HealthReport:
        """Take readings now, log anything not ok, and remember the report."""
        t = self.thresholds
        memory = self._memory()
        queued = self._queue_size()
        stuck = 0 if t.stuck_after is None else self._calls.running_longer_than(t.stuck_after)
        report = HealthReport(
            memory_percent=memory,
            memory_status="ok"
            if memory is None
            else _grade(memory, t.memory_warning, t.memory_critical),
            queue_size=queued,
            queue_status=_grade(queued, t.queue_warning, t.queue_critical),
            stuck_batches=stuck,
            checked_at=self._clock.now(),
        )
        self.last = report
        self._log(report)
        if report.memory_status == "critical":
            self._on_memory_critical()
        return report

    def _memory(self) -> float | None:
        try:
            return float(self._read_memory())
        except Exception:
            _log.exception("health check could not read memory usage")
            return None

    def _log(self, report: HealthReport) -> None:
        t = self.thresholds
        levels = {"warning": logging.WARNING, "critical": logging.ERROR}
        if report.memory_status != "ok":
            _log.log(
                levels[report.memory_status],
                "memory usage %.1f%% is %s (thresholds %.1f%% / %.1f%%)",
                report.memory_percent,
                report.memory_status,
                t.memory_warning,
                t.memory_critical,
            )
        if report.queue_status != "ok":
            _log.log(
                levels[report.queue_status],
                "queue size %d is %s (thresholds %d / %d)",
                report.queue_size,
                report.queue_status,
                t.queue_warning,
                t.queue_critical,
            )
        if report.stuck_batches:
            _log.warning(
                "%d batch(es) running longer than %s s", report.stuck_batches, t.stuck_after
            )

    def start(self, interval: float, stop: threading.Event) -> None:
        """Check every ``interval`` seconds on a daemon thread until ``stop`` is set.

        Whatever a check raises (a memory reader's `KeyboardInterrupt` included, which
        no caller waits for on this thread) is logged and checking goes on.
        """

        def loop() -> None:
            while not stop.wait(interval):
                try:
                    self.check()
                except BaseException:
                    _log.exception("health check failed")

        self._thread = threading.Thread(target=loop, name="batchpilot-health", daemon=True)
        self._thread.start()

    def join(self, timeout: float | None = None) -> None:
        """Wait for the thread started by `start` to end (after ``stop`` was set)."""
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def __repr__(self) -> str:
        status = None if self.last is None else self.last.status
        running = self._thread is not None and self._thread.is_alive()
        return f"HealthMonitor(status={status!r}, running={running})"
