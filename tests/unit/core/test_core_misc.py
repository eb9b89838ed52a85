"""Clock, health readings and batch listeners."""

from __future__ import annotations

import logging

import pytest

from batchpilot._core.clock import SYSTEM_CLOCK, MonotonicClock
from batchpilot._core.events import BatchRecord, as_listener, notify
from batchpilot._core.health import SampledReading, process_rss_mb, system_memory_percent
from batchpilot.testing import FakeClock


def test_fake_clock_advances_and_records_sleeps() -> None:
    clock = FakeClock(start=10.0)
    clock.sleep(1.5)
    clock.advance(0.5)
    assert clock.now() == 12.0
    assert clock.sleeps == [1.5]
    with pytest.raises(ValueError):
        clock.advance(-1)


def test_monotonic_clock_moves_forward() -> None:
    assert isinstance(SYSTEM_CLOCK, MonotonicClock)
    first = SYSTEM_CLOCK.now()
    SYSTEM_CLOCK.sleep(0)
    assert SYSTEM_CLOCK.now() >= first


def test_sampled_reading_reads_once_per_interval() -> None:
    clock = FakeClock()
    reads = iter([10.0, 20.0, 30.0])
    reading = SampledReading(lambda: next(reads), interval=5.0, clock=clock)
    assert reading.value() == 10.0
    clock.advance(4.9)
    assert reading.value() == 10.0
    clock.advance(0.1)
    assert reading.value() == 20.0
    with pytest.raises(ValueError):
        SampledReading(lambda: 0.0, interval=-1)


def test_real_memory_readings_are_plausible() -> None:
    assert 0.0 < system_memory_percent() <= 100.0
    assert process_rss_mb() > 1.0


def test_listeners_get_records_and_failures_are_contained(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[BatchRecord] = []

    class Broken:
        def record_batch(self, record: BatchRecord) -> None:
            raise RuntimeError("boom")

    record = BatchRecord("online", size=4, duration=0.5, queue_time=0.25, succeeded=4)
    with caplog.at_level(logging.ERROR, logger="batchpilot"):
        notify([as_listener(Broken()), as_listener(seen.append)], record)
    assert seen == [record]
    assert record.latency == 0.75
    assert "failed" in caplog.text
    with pytest.raises(TypeError):
        as_listener(42)  # type: ignore[arg-type]
