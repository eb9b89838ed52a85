"""Health monitor of the online processor: readings, grading, stuck calls, the thread."""

from __future__ import annotations

import logging
import threading

import pytest

from batchpilot.online.health import CallTracker, HealthMonitor, HealthThresholds
from batchpilot.testing import FakeClock

THRESHOLDS = HealthThresholds(
    memory_warning=80.0, memory_critical=90.0, queue_warning=5, queue_critical=8, stuck_after=10.0
)


def make_monitor(
    memory: list[float], queue: list[int], clock: FakeClock, calls: CallTracker | None = None
) -> tuple[HealthMonitor, list[str]]:
    critical: list[str] = []
    monitor = HealthMonitor(
        THRESHOLDS,
        read_memory=lambda: memory[0],
        queue_size=lambda: queue[0],
        calls=calls or CallTracker(clock),
        clock=clock,
        on_memory_critical=lambda: critical.append("called"),
    )
    return monitor, critical


@pytest.mark.parametrize(
    ("memory", "queued", "memory_status", "queue_status", "overall"),
    [
        (50.0, 0, "ok", "ok", "ok"),
        (80.0, 0, "warning", "ok", "warning"),
        (90.0, 0, "critical", "ok", "critical"),
        (50.0, 5, "ok", "warning", "warning"),
        (50.0, 8, "ok", "critical", "critical"),
        (85.0, 9, "warning", "critical", "critical"),
    ],
)
def test_readings_are_graded_against_the_thresholds(
    memory: float, queued: int, memory_status: str, queue_status: str, overall: str
) -> None:
    monitor, critical = make_monitor([memory], [queued], FakeClock())
    report = monitor.check()
    assert (report.memory_status, report.queue_status, report.status) == (
        memory_status,
        queue_status,
        overall,
    )
    assert monitor.last is report
    assert critical == (["called"] if memory_status == "critical" else [])


def test_problems_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    monitor, _ = make_monitor([95.0], [6], FakeClock())
    with caplog.at_level(logging.WARNING, logger="batchpilot.online"):
        monitor.check()
    levels = {(r.levelno, r.getMessage().split(" ")[0]) for r in caplog.records}
    assert (logging.ERROR, "memory") in levels
    assert (logging.WARNING, "queue") in levels


def test_unreadable_memory_is_reported_as_unknown_not_raised() -> None:
    def broken() -> float:
        raise OSError("no /proc")

    clock = FakeClock()
    monitor = HealthMonitor(
        THRESHOLDS, read_memory=broken, queue_size=lambda: 0, calls=CallTracker(clock), clock=clock
    )
    report = monitor.check()
    assert report.memory_percent is None
    assert report.memory_status == "ok"


def test_calls_running_longer_than_the_limit_are_stuck() -> None:
    clock = FakeClock()
    calls = CallTracker(clock)
    inside = threading.Event()
    release = threading.Event()

    def blocked(batch: object) -> object:
        inside.set()
        release.wait(10)
        return batch

    monitor, _ = make_monitor([10.0], [0], clock, calls)
    worker = threading.Thread(target=calls.wrap(blocked), args=([1],))
    worker.start()
    assert inside.wait(10)
    assert calls.running() == 1
    clock.advance(10.0)
    assert monitor.check().stuck_batches == 0  # exactly the limit is not yet stuck
    clock.advance(0.5)
    report = monitor.check()
    assert report.stuck_batches == 1
    assert report.status == "warning"
    release.set()
    worker.join(10)
    assert calls.running() == 0
    assert monitor.check().stuck_batches == 0


def test_tracked_call_returns_result_and_forgets_failed_calls() -> None:
    calls = CallTracker(FakeClock())
    assert calls.wrap(lambda b: b * 2)(21) == 42

    def fail(batch: object) -> object:
        raise ValueError("bad")

    with pytest.raises(ValueError):
        calls.wrap(fail)(1)
    assert calls.running() == 0


@pytest.mark.timeout(10)
def test_thread_checks_periodically_and_stops_at_once_when_told() -> None:
    checked = threading.Event()
    readings: list[int] = []
    clock = FakeClock()

    def read_memory() -> float:
        readings.append(1)
        checked.set()
        return 10.0

    monitor = HealthMonitor(
        THRESHOLDS,
        read_memory=read_memory,
        queue_size=lambda: 0,
        calls=CallTracker(clock),
        clock=clock,
    )
    stop = threading.Event()
    monitor.start(0.001, stop)
    assert checked.wait(5)
    stop.set()
    monitor.join(5)
    assert "running=False" in repr(monitor)
    count = len(readings)

    slow = HealthMonitor(
        THRESHOLDS,
        read_memory=read_memory,
        queue_size=lambda: 0,
        calls=CallTracker(clock),
        clock=clock,
    )
    stop_slow = threading.Event()
    slow.start(3600.0, stop_slow)  # an hour-long interval must not delay stopping
    stop_slow.set()
    slow.join(5)
    assert "running=False" in repr(slow)
    assert len(readings) == count


def test_tracked_async_function_is_still_a_coroutine_function() -> None:
    import asyncio
    import inspect

    calls = CallTracker(FakeClock())

    async def double(batch: list[int]) -> list[int]:
        assert calls.running() == 1
        return [x * 2 for x in batch]

    tracked = calls.wrap(double)
    assert inspect.iscoroutinefunction(tracked)
    assert asyncio.run(tracked([1, 2])) == [2, 4]
    assert calls.running() == 0
