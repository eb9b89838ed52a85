"""The seed-001 BatchProcessor: lifecycle, errors, backpressure, deadlines, order, sizes.

Batch functions here record what they were given and can hold a batch on a
`threading.Event`, so every ordering is forced, never waited for.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import pytest

from batchpilot.errors import BatchFailedError, ClosedError, ItemTimeoutError, QueueFullError
from batchpilot.online import (
    BatchPriority,
    BatchProcessingStrategy,
    BatchProcessor,
    BatchProcessorConfig,
)
from batchpilot.testing import FakeClock

pytestmark = pytest.mark.timeout(30)

FAST: dict[str, Any] = {
    "collate": "list",
    "retry_delay": 0.0,
    "enable_health_monitoring": False,
}


class Gate:
    """A batch function that records its batches and holds each call until released."""

    def __init__(
        self,
        result: Callable[[list[Any]], Sequence[Any]] = lambda items: [x * 2 for x in items],
        *,
        hold: bool = False,
    ) -> None:
        self.result = result
        self.batches: list[list[Any]] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        if not hold:
            self.release.set()
        self._lock = threading.Lock()

    def __call__(self, batch: list[Any]) -> Sequence[Any]:
        with self._lock:
            self.batches.append(list(batch))
        self.entered.set()
        self.release.wait(10)
        return self.result(batch)

    @property
    def items(self) -> list[Any]:
        return [item for batch in self.batches for item in batch]


Factory = Callable[..., BatchProcessor[Any, Any]]


@pytest.fixture
def make() -> Iterator[Factory]:
    made: list[BatchProcessor[Any, Any]] = []

    def factory(*, clock: Any = None, **changes: Any) -> BatchProcessor[Any, Any]:
        extra = {} if clock is None else {"clock": clock}
        processor: BatchProcessor[Any, Any] = BatchProcessor(
            BatchProcessorConfig(**{**FAST, **changes}), **extra
        )
        made.append(processor)
        return processor

    yield factory
    for processor in made:
        processor.stop(timeout=1.0)


# -- lifecycle ------------------------------------------------------------------------


def test_enqueue_before_start_raises_closed_error(make: Factory) -> None:
    processor = make()
    with pytest.raises(ClosedError, match="not started"):
        processor.enqueue_predict(1)
    with pytest.raises(ClosedError, match="not started"):
        processor.enqueue(1)


def test_enqueue_after_stop_raises_closed_error(make: Factory) -> None:
    processor = make()
    processor.start(Gate())
    assert processor.enqueue_predict(1).result(5) == 2
    processor.stop()
    with pytest.raises(ClosedError, match="stopped"):
        processor.enqueue_predict(2)
    with pytest.raises(ClosedError):
        processor.enqueue(2)
    with pytest.raises(ClosedError, match="create a new one"):
        processor.start(Gate())


def test_stop_twice_and_stop_before_start_are_harmless(make: Factory) -> None:
    never_started = make()
    never_started.stop()
    never_started.stop()
    assert never_started.shutdown_event.is_set()

    processor = make()
    processor.start(Gate())
    processor.stop()
    processor.stop(timeout=0)
    assert processor.get_stats()["is_stopping"] is True
    assert "stopped" in repr(processor)


def test_start_checks_its_argument_and_runs_once(make: Factory) -> None:
    processor = make()
    with pytest.raises(TypeError, match="process_func must be callable"):
        processor.start(42)  # type: ignore[arg-type]
    processor.start(Gate())
    with pytest.raises(RuntimeError, match="already started"):
        processor.start(Gate())


def test_constructor_rejects_a_wrong_config_and_a_wrong_collector() -> None:
    with pytest.raises(TypeError, match="BatchProcessorConfig"):
        BatchProcessor({"max_batch_size": 4})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="record_batch"):
        BatchProcessor(BatchProcessorConfig(), metrics_collector=42)  # type: ignore[arg-type]


def test_context_manager_stops(make: Factory) -> None:
    processor = make()
    with processor:
        processor.start(Gate())
        assert processor.enqueue_predict(3).result(5) == 6
    assert processor.is_stopping


def test_stop_cancels_pending_futures_so_no_caller_waits_forever(make: Factory) -> None:
    gate = Gate(hold=True)
    processor = make(max_workers=1, initial_batch_size=1, max_batch_size=1)
    processor.start(gate)
    running = processor.enqueue_predict(1)
    assert gate.entered.wait(5)
    queued = [processor.enqueue_predict(i) for i in range(2, 6)]

    processor.stop(timeout=0.05)

    _, not_done = cf.wait(queued, timeout=0)
    assert not not_done
    assert all(f.cancelled() for f in queued)
    with pytest.raises(ClosedError):  # still running at the deadline: failed, not waited for
        running.result(0)
    gate.release.set()
    assert gate.items == [1]  # nothing queued was started after the stop


def test_stop_waits_for_queued_work_within_its_timeout(make: Factory) -> None:
    gate = Gate()
    processor = make(max_workers=1)
    processor.start(gate)
    processor.pause()
    futures = [processor.enqueue_predict(i) for i in range(5)]
    processor.resume()
    processor.stop(timeout=10)
    assert [f.result(0) for f in futures] == [0, 2, 4, 6, 8]


def test_stop_of_a_paused_processor_cancels_what_is_queued(make: Factory) -> None:
    processor = make()
    processor.start(Gate())
    processor.pause()
    futures = [processor.enqueue_predict(i) for i in range(3)]
    processor.stop(timeout=0.05)
    assert all(f.cancelled() for f in futures)


# -- backpressure and deadlines -------------------------------------------------------


def test_full_queue_blocks_for_the_timeout_then_raises_queue_full(make: Factory) -> None:
    gate = Gate(hold=True)
    processor = make(max_workers=1, initial_batch_size=1, max_batch_size=1, max_queue_size=3)
    processor.start(gate)
    first = processor.enqueue_predict(0)
    assert gate.entered.wait(5)
    queued = [processor.enqueue_predict(i, timeout=0) for i in range(1, 4)]
    assert processor.queue_size == 3

    with pytest.raises(QueueFullError):
        processor.enqueue_predict(99, timeout=0.02)
    with pytest.raises(QueueFullError):
        processor.enqueue(99, timeout=0)

    gate.release.set()
    assert [f.result(5) for f in [first, *queued]] == [0, 2, 4, 6]
    assert 99 not in gate.items


def test_blocked_enqueue_proceeds_when_room_appears(make: Factory) -> None:
    gate = Gate(hold=True)
    processor = make(max_workers=1, initial_batch_size=1, max_batch_size=1, max_queue_size=1)
    processor.start(gate)
    first = processor.enqueue_predict(1)
    assert gate.entered.wait(5)
    second = processor.enqueue_predict(2, timeout=0)
    with cf.ThreadPoolExecutor(1) as pool:
        third = pool.submit(processor.enqueue_predict, 3, 10.0)
        gate.release.set()
        assert third.result(5).result(5) == 6
    assert (first.result(5), second.result(5)) == (2, 4)


def test_item_past_item_timeout_fails_and_is_not_processed_late(make: Factory) -> None:
    clock = FakeClock()
    gate = Gate(hold=True)
    processor = make(
        clock=clock, item_timeout=5.0, max_workers=1, initial_batch_size=1, max_batch_size=1
    )
    processor.start(gate)
    first = processor.enqueue_predict(1)
    assert gate.entered.wait(5)
    late = processor.enqueue_predict(2)
    clock.advance(4.0)
    fresh = processor.enqueue_predict(3)
    clock.advance(1.5)  # `late` waited 5.5 s > 5 s; `fresh` only 1.5 s

    gate.release.set()
    assert first.result(5) == 2
    with pytest.raises(ItemTimeoutError):
        late.result(5)
    assert fresh.result(5) == 6
    assert 2 not in gate.items


# -- pause, priorities, sizes ---------------------------------------------------------


def test_nothing_is_dispatched_while_paused(make: Factory) -> None:
    gate = Gate()
    processor = make()
    processor.start(gate)
    processor.pause()
    futures = [processor.enqueue_predict(i) for i in range(3)]
    assert not gate.entered.wait(0.05)
    assert processor.get_stats()["is_paused"] is True
    assert processor.queue_size == 3
    assert not any(f.done() for f in futures)

    processor.resume()
    assert [f.result(5) for f in futures] == [0, 2, 4]
    assert processor.get_stats()["is_paused"] is False


def test_pause_before_start_holds_the_first_items(make: Factory) -> None:
    gate = Gate()
    processor = make()
    processor.pause()
    processor.start(gate)
    future = processor.enqueue_predict(5)
    assert not gate.entered.wait(0.05)
    processor.resume()
    assert future.result(5) == 10


def test_priority_queue_serves_critical_first_then_fifo(make: Factory) -> None:
    gate = Gate(hold=True)
    processor = make(
        enable_priority_queue=True, max_workers=1, initial_batch_size=1, max_batch_size=1
    )
    processor.start(gate)
    blocker = processor.enqueue_predict("blocker")
    assert gate.entered.wait(5)
    order = [
        ("low", BatchPriority.LOW),
        ("normal-1", BatchPriority.NORMAL),
        ("high", BatchPriority.HIGH),
        ("critical", BatchPriority.CRITICAL),
        ("normal-2", BatchPriority.NORMAL),
    ]
    futures = [processor.enqueue_predict(name, priority=p) for name, p in order]
    gate.release.set()
    cf.wait([blocker, *futures], timeout=5)
    assert gate.items == ["blocker", "critical", "high", "normal-1", "normal-2", "low"]


def test_priority_queue_orders_items_within_one_batch(make: Factory) -> None:
    gate = Gate(lambda items: items)
    processor = make(enable_priority_queue=True, initial_batch_size=8, max_batch_size=8)
    processor.start(gate)
    processor.pause()
    for name, priority in [("n", BatchPriority.NORMAL), ("l", 0), ("c", 3), ("h", 2)]:
        processor.enqueue(name, priority=priority)  # type: ignore[arg-type]
    processor.resume()
    processor.stop(timeout=10)
    assert gate.batches == [["c", "h", "n", "l"]]


def test_without_priority_queue_items_are_fifo(make: Factory) -> None:
    gate = Gate(lambda items: items)
    processor = make(initial_batch_size=8, max_batch_size=8)
    processor.start(gate)
    processor.pause()
    for name, priority in [("a", BatchPriority.LOW), ("b", BatchPriority.CRITICAL)]:
        processor.enqueue(name, priority=priority)
    processor.resume()
    processor.stop(timeout=10)
    assert gate.items == ["a", "b"]


def test_unknown_priority_is_a_value_error(make: Factory) -> None:
    processor = make(enable_priority_queue=True)
    processor.start(Gate())
    with pytest.raises(ValueError, match="priority must be a BatchPriority"):
        processor.enqueue_predict(1, priority=7)  # type: ignore[arg-type]


def test_max_workers_batches_run_at_once(make: Factory) -> None:
    inside = threading.Barrier(3)
    release = threading.Event()

    def meet(items: list[int]) -> list[int]:
        inside.wait(5)
        release.wait(5)
        return items

    processor = make(max_workers=2, initial_batch_size=1, max_batch_size=1)
    processor.start(meet)
    futures = [processor.enqueue_predict(i) for i in range(2)]
    inside.wait(5)  # both batches are inside the function at the same time
    assert processor.get_stats()["active_batches"] == 2
    release.set()
    assert [f.result(5) for f in futures] == [0, 1]


def test_update_batch_size_takes_effect_on_the_next_batches(make: Factory) -> None:
    gate = Gate()
    processor = make(processing_strategy=BatchProcessingStrategy.FIXED, initial_batch_size=4)
    assert processor._current_batch_size == 4
    processor.update_batch_size(2)
    assert processor._current_batch_size == 2
    assert processor.get_stats()["current_batch_size"] == 2
    processor.start(gate)
    processor.pause()
    futures = [processor.enqueue_predict(i) for i in range(5)]
    processor.resume()
    cf.wait(futures, timeout=5)
    assert [len(b) for b in gate.batches] == [2, 2, 1]


def test_update_batch_size_rejects_bad_sizes(make: Factory) -> None:
    processor = make(min_batch_size=2, initial_batch_size=4, max_batch_size=8)
    with pytest.raises(ValueError, match=r"outside \[2, 8\]"):
        processor.update_batch_size(9)
    with pytest.raises(ValueError, match=r"outside \[2, 8\]"):
        processor.update_batch_size(1)
    with pytest.raises(TypeError, match="new_size must be an int"):
        processor.update_batch_size(2.5)  # type: ignore[arg-type]
    processor.update_batch_size(8)
    assert processor._current_batch_size == 8


def test_memory_cap_limits_the_bytes_of_a_batch(make: Factory) -> None:
    gate = Gate(lambda batch: batch)
    item = np.zeros(100)  # 800 bytes
    processor = make(collate="stack", max_batch_memory_mb=2000 / (1024 * 1024))
    processor.start(gate)
    processor.pause()
    futures = [processor.enqueue_predict(item) for _ in range(5)]
    processor.resume()
    cf.wait(futures, timeout=5)
    assert [len(b) for b in gate.batches] == [2, 2, 1]


# -- errors ---------------------------------------------------------------------------


def test_a_poisoned_item_fails_alone_and_the_others_get_results(make: Factory) -> None:
    calls: list[list[Any]] = []

    def double_unless_poisoned(items: list[Any]) -> list[Any]:
        calls.append(list(items))
        if "poison" in items:
            raise ValueError("poisoned")
        return [x * 2 for x in items]

    processor = make(max_retries=1, initial_batch_size=8, max_batch_size=8)
    processor.start(double_unless_poisoned)
    processor.pause()
    items: list[Any] = [1, 2, "poison", 3, 4]
    futures = [processor.enqueue_predict(x) for x in items]
    processor.resume()
    results = [f.result(5) if x != "poison" else None for x, f in zip(items, futures, strict=True)]
    assert results == [2, 4, None, 6, 8]
    with pytest.raises(ValueError, match="poisoned"):
        futures[2].result(5)
    assert calls[0] == calls[1] == items  # one retry of the whole batch, then bisection
    assert ["poison"] in calls


def test_wrong_result_count_fails_every_item_with_batch_failed_error(make: Factory) -> None:
    processor = make(initial_batch_size=8, max_batch_size=8)
    processor.start(lambda items: items[:-1])
    processor.pause()
    futures = [processor.enqueue_predict(i) for i in range(3)]
    processor.resume()
    for future in futures:
        with pytest.raises(BatchFailedError, match="expected 3"):
            future.result(5)


def test_retries_use_retry_delay_with_backoff_on_the_clock(make: Factory) -> None:
    clock = FakeClock()
    attempts: list[int] = []

    def flaky(items: list[int]) -> list[int]:
        attempts.append(len(items))
        if len(attempts) < 3:
            raise ConnectionError("try again")
        return items

    processor = make(clock=clock, max_retries=3, retry_delay=0.5)
    processor.start(flaky)
    assert processor.enqueue_predict(7).result(5) == 7
    assert attempts == [1, 1, 1]
    assert clock.sleeps[:2] == [0.5, 1.0]


def test_enqueue_is_fire_and_forget_and_logs_failures(make: Factory) -> None:
    logged = threading.Event()
    messages: list[str] = []

    class Catch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(record.getMessage())
            logged.set()

    def fail(items: list[Any]) -> list[Any]:
        raise KeyError("lost")

    logger = logging.getLogger("batchpilot.online")
    handler = Catch(logging.WARNING)
    logger.addHandler(handler)
    try:
        processor = make(max_retries=0)
        processor.start(fail)
        assert processor.enqueue("x") is None
        assert logged.wait(5)
    finally:
        logger.removeHandler(handler)
    assert messages == ["enqueued item failed: KeyError('lost')"]


def test_the_item_may_be_given_as_data(make: Factory) -> None:
    processor = make(initial_batch_size=4, max_batch_size=4)
    processor.start(Gate())
    assert processor.enqueue_predict(data=21, priority=BatchPriority.HIGH).result(5) == 42
    with pytest.raises(TypeError, match="either positionally"):
        processor.enqueue_predict(1, data=2)
    with pytest.raises(TypeError, match="either positionally"):
        processor.enqueue()


# -- adaptive sizing (durations scripted on a FakeClock) ------------------------------


def slow_on(clock: FakeClock, seconds_per_item: float) -> Callable[[list[Any]], list[Any]]:
    def work(items: list[Any]) -> list[Any]:
        clock.advance(seconds_per_item * len(items))
        return items

    return work


def test_adaptive_without_target_grows_after_full_batches(make: Factory) -> None:
    clock = FakeClock()
    processor = make(clock=clock, initial_batch_size=2, max_batch_size=8)
    processor.start(slow_on(clock, 0.01))
    sizes = []
    for _ in range(3):
        sizes.append(processor._current_batch_size)
        processor.pause()
        futures = [processor.enqueue_predict(i) for i in range(sizes[-1])]
        processor.resume()
        cf.wait(futures, timeout=5)
    assert sizes == [2, 3, 4]  # AIMD: +1 after each full, successful batch


def test_adaptive_with_latency_target_fits_batches_to_it(make: Factory) -> None:
    clock = FakeClock()
    processor = make(clock=clock, initial_batch_size=8, max_batch_size=16, latency_target=0.5)
    processor.start(slow_on(clock, 0.1))
    processor.pause()
    futures = [processor.enqueue_predict(i) for i in range(8)]
    processor.resume()
    cf.wait(futures, timeout=5)
    assert processor._current_batch_size == 5  # 8 items took 0.8 s; 0.5 s fits 5


def test_fixed_strategy_keeps_its_size(make: Factory) -> None:
    clock = FakeClock()
    processor = make(
        clock=clock,
        processing_strategy=BatchProcessingStrategy.FIXED,
        initial_batch_size=4,
        latency_target=0.1,
    )
    processor.start(slow_on(clock, 1.0))
    processor.pause()
    futures = [processor.enqueue_predict(i) for i in range(4)]
    processor.resume()
    cf.wait(futures, timeout=5)
    assert processor._current_batch_size == 4


def test_an_async_batch_function_works_too(make: Factory) -> None:
    async def double(items: list[int]) -> list[int]:
        return [x * 2 for x in items]

    processor = make()
    processor.start(double)
    futures = [processor.enqueue_predict(i) for i in range(5)]
    assert [f.result(5) for f in futures] == [0, 2, 4, 6, 8]
