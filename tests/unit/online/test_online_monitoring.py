"""The seed-001 BatchProcessor's monitoring: stats keys, health, metrics hook, gc, debug."""

from __future__ import annotations

import concurrent.futures as cf
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from batchpilot._core.events import BatchRecord, as_listener
from batchpilot.metrics import PrometheusMetrics
from batchpilot.online import BatchProcessor, BatchProcessorConfig, BatchStats, recorder
from batchpilot.testing import FakeClock

pytestmark = pytest.mark.timeout(30)

SEED_KEYS = {
    "avg_processing_time",
    "avg_batch_size",
    "avg_queue_time",
    "p95_latency",
    "p99_latency",
    "throughput",
    "error_rate",
    "current_batch_size",
    "system_load",
    "active_batches",
    "queue_size",
    "is_paused",
    "is_stopping",
}
HEALTH_KEYS = {
    "health_status",
    "memory_percent",
    "memory_status",
    "queue_status",
    "stuck_batches",
    "last_health_check",
}

Factory = Callable[..., BatchProcessor[Any, Any]]


class Tally:
    """A listener that lets a test wait until the records of N items have arrived.

    Some tests submit with ``enqueue`` (no future to wait on) and wait here instead.
    It forwards to the test's own collector first, so that collector has seen the
    records too.
    """

    def __init__(self, forward: Any = None) -> None:
        self.forward = None if forward is None else as_listener(forward)
        self.items = 0
        self._changed = threading.Condition()

    def record_batch(self, record: BatchRecord) -> None:
        if self.forward is not None:
            self.forward.record_batch(record)
        with self._changed:
            self.items += record.size
            self._changed.notify_all()

    def wait_for_items(self, count: int) -> None:
        with self._changed:
            assert self._changed.wait_for(lambda: self.items >= count, timeout=5)


TALLIES: dict[BatchProcessor[Any, Any], Tally] = {}


@pytest.fixture
def make() -> Iterator[Factory]:
    made: list[BatchProcessor[Any, Any]] = []

    def factory(
        metrics_collector: Any = None, *, clock: Any = None, memory: float = 10.0, **changes: Any
    ) -> BatchProcessor[Any, Any]:
        settings = {"collate": "list", "retry_delay": 0.0, "enable_health_monitoring": False}
        extra = {} if clock is None else {"clock": clock}
        tally = Tally(metrics_collector)
        processor: BatchProcessor[Any, Any] = BatchProcessor(
            BatchProcessorConfig(**{**settings, **changes}),
            tally,
            memory_percent=lambda: memory,
            **extra,
        )
        TALLIES[processor] = tally
        made.append(processor)
        return processor

    yield factory
    for processor in made:
        processor.stop(timeout=1.0)
        TALLIES.pop(processor, None)


def run(processor: BatchProcessor[Any, Any], items: list[Any]) -> list[cf.Future[Any]]:
    """Submit ``items`` while paused (so they form as few batches as the size allows)
    and wait until every item has an outcome and every batch reached the listeners."""
    processor.pause()
    futures = [processor.enqueue_predict(item) for item in items]
    processor.resume()
    cf.wait(futures, timeout=5)
    TALLIES[processor].wait_for_items(len(items))
    return futures


def test_batch_stats_is_the_core_class() -> None:
    from batchpilot._core import stats as _stats

    assert BatchStats is _stats.BatchStats


def test_stats_have_every_seed_key_before_and_after_work(make: Factory) -> None:
    processor = make()
    before = processor.get_stats()
    assert set(before) >= SEED_KEYS | HEALTH_KEYS
    assert before["throughput"] == 0.0
    assert (before["queue_size"], before["active_batches"]) == (0, 0)
    assert before["current_batch_size"] == 32
    assert before["health_status"] is None

    processor.start(lambda items: items)
    run(processor, list(range(10)))
    after = processor.get_stats()
    assert set(after) >= SEED_KEYS | HEALTH_KEYS
    assert after["total_processed"] == 10
    assert after["avg_batch_size"] == 10
    assert after["throughput"] > 0
    assert after["error_rate"] == 0
    assert 0.0 <= after["system_load"] <= 1.0
    assert after["is_paused"] is False
    assert after["is_stopping"] is False


def test_error_rate_counts_failed_items(make: Factory) -> None:
    def fail_odd(items: list[int]) -> list[int]:
        if any(i % 2 for i in items):
            raise ValueError("odd")
        return items

    processor = make(max_retries=0, initial_batch_size=4, max_batch_size=4)
    processor.start(fail_odd)
    run(processor, [0, 1, 2, 3])
    stats = processor.get_stats()
    assert stats["error_count"] == 2
    assert stats["error_rate"] > 0


def test_monitoring_off_keeps_no_statistics(make: Factory) -> None:
    processor = make(enable_monitoring=False)
    processor.start(lambda items: items)
    run(processor, [1, 2, 3])
    stats = processor.get_stats()
    assert stats["total_processed"] == 0
    assert set(stats) >= SEED_KEYS


def test_metrics_collector_callable_is_called_once_per_batch(make: Factory) -> None:
    records: list[BatchRecord] = []
    processor = make(records.append, initial_batch_size=2, max_batch_size=2)
    processor.start(lambda items: items)
    run(processor, [1, 2, 3, 4, 5])
    assert [r.size for r in records] == [2, 2, 1]
    assert all(r.engine == "online" and r.failed == 0 for r in records)
    assert sum(r.succeeded for r in records) == 5


def test_metrics_collector_object_sees_failures(make: Factory) -> None:
    class Collector:
        def __init__(self) -> None:
            self.records: list[BatchRecord] = []

        def record_batch(self, record: BatchRecord) -> None:
            self.records.append(record)

    def reject_negative(items: list[int]) -> list[int]:
        if any(i < 0 for i in items):
            raise ArithmeticError("negative")
        return items

    collector = Collector()
    processor = make(collector, max_retries=0, initial_batch_size=4, max_batch_size=4)
    processor.start(reject_negative)
    run(processor, [1, -1, 2])
    assert sum(r.succeeded for r in collector.records) == 2
    assert sum(r.failed for r in collector.records) == 1
    merged: dict[str, int] = {}
    for record in collector.records:
        for name, count in record.error_types.items():
            merged[name] = merged.get(name, 0) + count
    assert merged == {"ArithmeticError": 1}


def test_health_readings_show_up_in_stats(make: Factory) -> None:
    processor = make(memory=85.0, enable_health_monitoring=True, queue_warning_threshold=2)
    processor.start(lambda items: items)
    stats = processor.get_stats()
    assert stats["memory_percent"] == 85.0
    assert stats["memory_status"] == "warning"
    assert stats["queue_status"] == "ok"
    assert stats["health_status"] == "warning"
    assert stats["current_batch_size"] == 32  # a warning changes nothing

    processor.pause()
    processor.enqueue(1)
    processor.enqueue(2)
    health = processor.check_health()
    assert health["queue_status"] == "warning"
    assert processor.get_stats()["queue_status"] == "warning"


def test_critical_memory_halves_the_adaptive_batch_size(
    make: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    processor = make(memory=95.0, enable_health_monitoring=True, initial_batch_size=32)
    with caplog.at_level(logging.WARNING, logger="batchpilot.online"):
        processor.start(lambda items: items)
    stats = processor.get_stats()
    assert stats["memory_status"] == "critical"
    assert stats["health_status"] == "critical"
    assert stats["current_batch_size"] == 16
    assert any("memory usage 95.0% is critical" in r.getMessage() for r in caplog.records)


def test_health_thread_keeps_checking_and_stop_wakes_it(make: Factory) -> None:
    checks = threading.Semaphore(0)

    def memory() -> float:
        checks.release()
        return 10.0

    processor = BatchProcessor(
        BatchProcessorConfig(health_check_interval=0.001), memory_percent=memory
    )
    processor.start(lambda batch: batch)
    for _ in range(3):  # the check at start, then at least two from the thread
        assert checks.acquire(timeout=5)
    processor.stop()
    assert "batchpilot-health" not in {t.name for t in threading.enumerate()}


def test_health_thread_survives_a_base_exception_from_the_memory_reader(
    caplog: pytest.LogCaptureFixture,
) -> None:
    checks = threading.Semaphore(0)
    calls = [0]

    def memory() -> float:
        calls[0] += 1
        if calls[0] == 2:  # the thread's first check (the first is start()'s own)
            raise KeyboardInterrupt
        checks.release()
        return 10.0

    processor = BatchProcessor(
        BatchProcessorConfig(health_check_interval=0.001), memory_percent=memory
    )
    with caplog.at_level(logging.ERROR, logger="batchpilot"):
        processor.start(lambda batch: batch)
        for _ in range(3):  # start()'s check, then checks after the interrupt
            assert checks.acquire(timeout=5)  # was: the health thread died, no more checks
        processor.stop()
    assert calls[0] >= 4
    assert any("health check failed" in record.getMessage() for record in caplog.records)


def test_stop_does_not_wait_for_the_health_interval() -> None:
    processor = BatchProcessor(BatchProcessorConfig(health_check_interval=3600.0))
    processor.start(lambda batch: batch)
    processor.stop(timeout=5.0)
    assert "batchpilot-health" not in {t.name for t in threading.enumerate()}


def test_batches_running_longer_than_item_timeout_are_stuck(make: Factory) -> None:
    clock = FakeClock()
    release = threading.Event()
    entered = threading.Event()

    def hang(items: list[int]) -> list[int]:
        entered.set()
        release.wait(10)
        return items

    processor = make(clock=clock, item_timeout=5.0, enable_health_monitoring=True)
    processor.start(hang)
    future = processor.enqueue_predict(1)
    assert entered.wait(5)
    assert processor.check_health()["stuck_batches"] == 0
    clock.advance(6.0)
    assert processor.check_health()["stuck_batches"] == 1
    assert processor.get_stats()["health_status"] == "warning"
    release.set()
    assert future.result(5) == 1
    assert processor.check_health()["stuck_batches"] == 0


def test_batches_larger_than_the_threshold_are_followed_by_a_young_collection(
    make: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    collections: list[tuple[int, ...]] = []
    real_collect = recorder.gc.collect

    def counting_collect(*generation: int) -> int:
        collections.append(generation)
        return real_collect(*generation)

    monkeypatch.setattr(recorder.gc, "collect", counting_collect)
    processor = make(gc_batch_threshold=2, initial_batch_size=3, max_batch_size=3)
    processor.start(lambda items: items)
    run(processor, [1, 2, 3, 4, 5])  # batches of 3 and 2: only the first is larger than 2
    assert collections == [(1,)]

    quiet = make(gc_batch_threshold=2, enable_memory_optimization=False, initial_batch_size=3)
    quiet.start(lambda items: items)
    run(quiet, [1, 2, 3])
    assert collections == [(1,)]


def test_critical_memory_runs_a_full_collection(
    make: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    collections: list[tuple[int, ...]] = []
    monkeypatch.setattr(recorder.gc, "collect", lambda *generation: collections.append(generation))
    processor = make(memory=95.0, enable_health_monitoring=True)
    processor.start(lambda items: items)
    assert collections == [()]


def test_debug_mode_logs_every_batch(make: Factory, caplog: pytest.LogCaptureFixture) -> None:
    processor = make(debug_mode=True)
    processor.start(lambda items: items)
    with caplog.at_level(logging.DEBUG, logger="batchpilot.online"):
        run(processor, [1, 2])
    assert any(r.getMessage().startswith("batch of 2") for r in caplog.records)


def test_reduce_batch_on_failure_controls_shrinking(make: Factory) -> None:
    def fail(items: list[int]) -> list[int]:
        raise ValueError("always")

    shrinking = make(max_retries=0, initial_batch_size=8, max_batch_size=8)
    shrinking.start(fail)
    run(shrinking, [1])
    assert shrinking._current_batch_size == 4

    steady = make(max_retries=0, initial_batch_size=8, reduce_batch_on_failure=False)
    steady.start(fail)
    run(steady, [1])
    assert steady._current_batch_size == 8


def test_repr_shows_live_state(make: Factory) -> None:
    processor = make(initial_batch_size=4)
    assert repr(processor).startswith("BatchProcessor(not started, batch_size=4")
    processor.start(lambda items: items)
    processor.pause()
    processor.enqueue(1)
    assert "paused" in repr(processor)
    assert "queue_size=1" in repr(processor)


def test_get_stats_right_after_a_result_includes_that_batch(make: Factory) -> None:
    """The engine hands a batch's record to the listeners before it resolves the
    batch's futures, so whoever holds a result finds its batch in get_stats."""
    processor = make()
    recording = threading.Event()
    release = threading.Event()
    stats = processor._recorder.stats
    real_update = stats.update

    def slow_update(*args: Any) -> None:
        recording.set()
        release.wait(5)
        real_update(*args)

    stats.update = slow_update  # type: ignore[method-assign]
    processor.start(lambda items: items)
    future = processor.enqueue_predict(1)
    assert recording.wait(5)  # the engine has finished the batch and is emitting its record
    assert not future.done()  # ... and the caller has no result before it is recorded
    release.set()
    assert future.result(5) == 1
    seen = processor.get_stats()
    assert seen["batch_count"] == 1
    assert seen["throughput"] > 0


def test_a_prometheus_scrape_right_after_a_result_includes_that_batch(make: Factory) -> None:
    registry = CollectorRegistry()
    metrics = PrometheusMetrics(registry)
    futures: list[Any] = []
    done_when_counted: list[bool] = []

    class Exporter:
        """The exporter's listener, noting whether the callers had results already."""

        def record_batch(self, record: BatchRecord) -> None:
            metrics.record_batch(record)
            done_when_counted.extend(future.done() for future in futures)

    processor = make(Exporter())
    processor.start(lambda items: items)
    processor.pause()
    futures.extend(processor.enqueue_predict(i) for i in range(3))
    processor.resume()
    assert [future.result(5) for future in futures] == [0, 1, 2]
    assert done_when_counted == [False, False, False]
    scrape = generate_latest(registry).decode()
    assert (
        'batchpilot_items_total{engine="online",name="BatchProcessor",outcome="succeeded"} 3.0'
        in scrape
    )
