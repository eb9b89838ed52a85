"""BatchStateManager: every flush trigger with a FakeClock, the seed's examples, stats.

Background: the flusher thread also checks the triggers by itself about once a
second, so after moving the clock a test calls `check_flush_conditions` and then
asserts on what was flushed and on the trigger counted, never on who noticed first.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import pytest

from batchpilot._core.events import BatchRecord
from batchpilot.buffer import (
    BatchProcessingConfig,
    BatchStateManager,
    BufferedEntry,
    create_high_performance_batch_manager,
    create_memory_efficient_batch_manager,
    create_optimized_batch_manager,
    get_batch_performance_report,
    live_managers,
    log_batch_performance_summary,
)
from batchpilot.errors import ClosedError
from batchpilot.testing import FakeClock

pytestmark = pytest.mark.timeout(20)


class Recorder:
    """A flush callback that records batches (by uuid) and the calling thread."""

    def __init__(self, clock: FakeClock | None = None, seconds_per_entry: float = 0.0) -> None:
        self.batches: list[list[str]] = []
        self.entries: list[BufferedEntry] = []
        self.threads: list[threading.Thread] = []
        self._clock = clock
        self._seconds_per_entry = seconds_per_entry

    def __call__(self, entries: list[BufferedEntry]) -> None:
        self.threads.append(threading.current_thread())
        self.batches.append([item.uuid for item in entries])
        self.entries.extend(entries)
        if self._clock is not None:
            self._clock.advance(self._seconds_per_entry * len(entries))


class Memory:
    """An injectable memory reading in percent."""

    def __init__(self, percent: float = 10.0) -> None:
        self.percent = percent
        self.reads = 0

    def __call__(self) -> float:
        self.reads += 1
        return self.percent


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


def queue(manager: BatchStateManager, count: int, prefix: str = "e", priority: int = 0) -> None:
    for i in range(count):
        assert manager.queue_entry({"n": i}, "rss_feed", f"{prefix}{i}", priority=priority)


def triggers(manager: BatchStateManager) -> dict[str, int]:
    return dict(manager.get_detailed_stats()["flush_triggers"])


# ------------------------------------------------------------------ size triggers


def test_size_threshold_flushes_on_the_flusher_thread(make: Any, recorder: Recorder) -> None:
    manager = make(recorder)
    queue(manager, 24)
    assert manager.wait_idle(5)
    assert recorder.batches == []
    queue(manager, 1, prefix="last")
    assert manager.wait_idle(5)
    assert recorder.batches == [[f"e{i}" for i in range(24)] + ["last0"]]
    assert recorder.threads[0] in manager.flusher_threads
    assert recorder.threads[0] is not threading.current_thread()
    assert triggers(manager) == {"size_threshold": 1}


def test_fixed_size_threshold_without_adaptive_sizing(make: Any, recorder: Recorder) -> None:
    manager = make(recorder, enable_adaptive_sizing=False, size_threshold=10)
    queue(manager, 30)
    assert manager.wait_idle(5)
    assert [len(batch) for batch in recorder.batches] == [10, 10, 10]
    assert manager.current_size_threshold == 10


def test_adaptive_size_shrinks_when_flushes_are_slower_than_the_target(
    make: Any, clock: FakeClock
) -> None:
    slow = Recorder(clock, seconds_per_entry=0.1)  # 25 entries take 2.5 s, target 2 s
    manager = make(slow)
    queue(manager, 25)
    assert manager.wait_idle(5)
    assert manager.current_size_threshold == 20  # floor(2.0 * 25 / 2.5)
    queue(manager, 19, prefix="b")
    assert manager.wait_idle(5)
    assert len(slow.batches) == 1
    queue(manager, 1, prefix="c")
    assert manager.wait_idle(5)
    assert [len(batch) for batch in slow.batches] == [25, 20]
    events = manager.get_detailed_stats()["optimization_events"]
    assert (events[0]["event"], events[0]["old"], events[0]["new"]) == (
        "size_threshold_changed",
        25,
        20,
    )


def test_adaptive_size_grows_to_50_when_flushes_are_fast(make: Any, clock: FakeClock) -> None:
    fast = Recorder(clock, seconds_per_entry=0.001)
    manager = make(fast)
    queue(manager, 25)
    assert manager.wait_idle(5)
    assert manager.current_size_threshold == 50  # growth capped at 2x, then at max 50
    queue(manager, 100, prefix="b")
    assert manager.wait_idle(5)
    assert [len(batch) for batch in fast.batches] == [25, 50, 50]


def test_adaptive_size_never_below_5(make: Any, clock: FakeClock) -> None:
    very_slow = Recorder(clock, seconds_per_entry=10.0)
    manager = make(very_slow)
    queue(manager, 25)
    assert manager.wait_idle(5)
    assert manager.current_size_threshold == 5


# ------------------------------------------------------------------- age triggers


@pytest.mark.parametrize(
    ("priority", "age", "reason"),
    [(0, 300.0, "age_normal"), (1, 120.0, "age_priority"), (2, 60.0, "age_emergency")],
)
def test_age_triggers(
    make: Any, recorder: Recorder, clock: FakeClock, priority: int, age: float, reason: str
) -> None:
    manager = make(recorder)
    queue(manager, 3, priority=priority)
    clock.advance(age - 0.5)
    assert manager.check_flush_conditions() is None
    assert manager.wait_idle(5)
    assert recorder.batches == []
    clock.advance(0.5)
    manager.check_flush_conditions()
    assert manager.wait_idle(5)
    assert recorder.batches == [["e0", "e1", "e2"]]
    assert triggers(manager) == {reason: 1}


def test_priority_ages_do_not_apply_without_priority_flushing(
    make: Any, recorder: Recorder, clock: FakeClock
) -> None:
    manager = make(recorder, enable_priority_flushing=False)
    queue(manager, 2, priority=2)
    clock.advance(299)
    assert manager.check_flush_conditions() is None
    clock.advance(1)
    manager.check_flush_conditions()
    assert manager.wait_idle(5)
    assert triggers(manager) == {"age_normal": 1}


def test_max_buffer_age_caps_the_age_thresholds(
    make: Any, recorder: Recorder, clock: FakeClock
) -> None:
    manager = make(recorder, max_buffer_age_seconds=30)
    queue(manager, 1)
    clock.advance(30)
    manager.check_flush_conditions()
    assert manager.wait_idle(5)
    assert recorder.batches == [["e0"]]
    assert triggers(manager) == {"age_normal": 1}


def test_time_threshold_from_config(make: Any, recorder: Recorder, clock: FakeClock) -> None:
    manager = make(recorder, time_threshold_seconds=5.0)
    queue(manager, 1)
    clock.advance(5)
    manager.check_flush_conditions()
    assert manager.wait_idle(5)
    assert recorder.batches == [["e0"]]


class Waits:
    """A flush callback that records, per flush, how long each entry waited."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.flushes: list[tuple[float, list[float]]] = []

    def __call__(self, entries: list[BufferedEntry]) -> None:
        now = self.clock.now()
        self.flushes.append((now, [now - item.queued_at for item in entries]))


def stream(manager: BatchStateManager, clock: FakeClock, seconds: int, per_second: int) -> None:
    """Queue ``per_second`` entries a second of every priority, letting each flush finish."""
    for i in range(seconds * per_second):
        assert manager.queue_entry({"n": i}, "rss_feed", f"e{i}", priority=i % 3)
        assert manager.wait_idle(5)
        clock.advance(1 / per_second)  # exact in binary: no rounding at the 1 s boundary


AGE_TRIGGERS = {"age_normal", "age_priority", "age_emergency"}


def test_flush_on_time_only_recipe(make: Any, clock: FakeClock) -> None:
    """docs/buffer.md, "Flush on time only": one flush a second, whatever the rate."""
    waits = Waits(clock)
    manager = make(
        waits, time_threshold_seconds=1.0, enable_adaptive_sizing=False, size_threshold=1000
    )
    stream(manager, clock, seconds=6, per_second=64)
    assert set(triggers(manager)) <= AGE_TRIGGERS
    assert len(waits.flushes) == 5  # at 1, 2 + 1/64, 3 + 2/64, ... s
    assert all(max(entries) == 1.0 for _, entries in waits.flushes)
    assert sum(len(entries) for _, entries in waits.flushes) == 5 * 65


def test_a_time_threshold_alone_also_flushes_by_size(make: Any, clock: FakeClock) -> None:
    """Why the recipe is needed: the default adaptive size threshold fires too."""
    waits = Waits(clock)
    manager = make(waits, time_threshold_seconds=1.0)
    stream(manager, clock, seconds=6, per_second=64)
    assert triggers(manager)["size_threshold"] >= 6
    assert len(waits.flushes) > 6


def test_priority_entries_never_wait_longer_than_the_time_threshold(
    make: Any, recorder: Recorder, clock: FakeClock
) -> None:
    # The default priority ages (120 s, 60 s) are longer than this time threshold:
    # an urgent entry alone used to wait 60 s where a normal one waits 1 s.
    manager = make(recorder, time_threshold_seconds=1.0)
    queue(manager, 1, prefix="urgent", priority=2)
    queue(manager, 1, prefix="high", priority=1)
    clock.advance(1.0)
    assert manager.check_flush_conditions() in AGE_TRIGGERS - {"age_normal"}
    assert manager.wait_idle(5)
    assert recorder.batches == [["urgent0", "high0"]]


# ---------------------------------------------------------------- memory triggers


def test_memory_early_flush_needs_min_size(make: Any, recorder: Recorder) -> None:
    memory = Memory(90.0)
    manager = make(recorder, memory, memory_check_interval_seconds=0.0)
    queue(manager, 4)
    assert manager.check_flush_conditions() is None
    assert manager.wait_idle(5)
    assert recorder.batches == []
    queue(manager, 1, prefix="fifth")
    manager.check_flush_conditions()
    assert manager.wait_idle(5)
    assert recorder.batches == [["e0", "e1", "e2", "e3", "fifth0"]]
    assert triggers(manager) == {"memory_early": 1}


def test_memory_emergency_flushes_everything(make: Any, recorder: Recorder) -> None:
    memory = Memory(96.0)
    manager = make(recorder, memory, memory_check_interval_seconds=0.0, size_threshold=50)
    queue(manager, 2)
    manager.check_flush_conditions()
    assert manager.wait_idle(5)
    assert recorder.batches == [["e0", "e1"]]
    assert triggers(manager) == {"memory_emergency": 1}


def test_memory_thresholds_are_configurable(make: Any, recorder: Recorder) -> None:
    memory = Memory(60.0)
    manager = make(
        recorder,
        memory,
        memory_check_interval_seconds=0.0,
        memory_early_flush_percent=40.0,
        memory_emergency_flush_percent=50.0,
    )
    queue(manager, 1)
    manager.check_flush_conditions()
    assert manager.wait_idle(5)
    assert triggers(manager) == {"memory_emergency": 1}


def test_memory_is_sampled_at_intervals_not_per_entry(
    make: Any, recorder: Recorder, clock: FakeClock
) -> None:
    memory = Memory(10.0)
    manager = make(recorder, memory, memory_check_interval_seconds=10.0)
    queue(manager, 100)
    assert manager.wait_idle(5)
    assert memory.reads == 1
    clock.advance(10)
    manager.check_flush_conditions()
    assert memory.reads == 2


def test_a_failing_memory_reader_only_skips_memory_triggers(
    make: Any, recorder: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    def broken() -> float:
        raise OSError("no /proc")

    manager = BatchStateManager(flush_callback=recorder, memory_reader=broken, clock=FakeClock())
    try:
        queue(manager, 25)
        assert manager.wait_idle(5)
        assert len(recorder.batches) == 1
        assert manager.get_detailed_stats()["system_health"]["memory_percent"] is None
    finally:
        manager.close()
    assert "memory reader failed" in caplog.text


# ------------------------------------------------------------------ seed examples


def test_seed_priority_example_urgent_leaves_first(make: Any, recorder: Recorder) -> None:
    manager = make(recorder)
    manager.queue_entry({"title": "news"}, "rss_feed", "rss-1", priority=0)  # Normal
    manager.queue_entry({"title": "alert"}, "security", "alert-1", priority=1)  # High
    manager.queue_entry({"title": "down"}, "critical", "urgent-1", priority=2)  # Urgent
    stats = manager.get_detailed_stats()["buffer_state"]
    assert (stats["buffer_size"], stats["priority_buffer_size"]) == (1, 2)
    assert manager.flush(5)
    assert recorder.batches == [["urgent-1", "alert-1", "rss-1"]]
    first = recorder.entries[0]
    assert (first.entry, first.source, first.priority) == ({"title": "down"}, "critical", 2)
    assert first.queued_at == 1000.0


def test_seed_constructor_example(recorder: Recorder) -> None:
    optimized_config = BatchProcessingConfig()
    manager = BatchStateManager(
        max_buffer_size=1000,
        max_buffer_age_seconds=3600,
        flush_config=optimized_config,
        enable_performance_monitoring=True,
        memory_reader=Memory(),
    )
    with manager:
        manager.queue_entry("x", "rss_feed", "u1")
        assert manager.get_detailed_stats()["buffer_state"]["total_buffered"] == 1
        manager.set_flush_callback(recorder)
        assert manager.flush(5)
    assert recorder.batches == [["u1"]]


def test_seed_zero_argument_callback_example() -> None:
    calls: list[str] = []

    def process_batch() -> None:
        calls.append(threading.current_thread().name)

    manager = create_optimized_batch_manager(
        flush_callback=process_batch, config=BatchProcessingConfig(), memory_reader=Memory()
    )
    with manager:
        manager.queue_entry({"title": "a"}, "rss_feed", "u1", priority=0)
        assert manager.flush(5)
        assert manager.get_detailed_stats()["counters"]["entries_flushed"] == 1
    assert len(calls) == 1
    assert calls[0].startswith("batchpilot-")


def test_seed_performance_monitoring_example(make: Any, clock: FakeClock) -> None:
    manager = make(Recorder(clock, seconds_per_entry=0.04))  # 25 entries in 1 s
    queue(manager, 25)
    assert manager.wait_idle(5)
    stats = manager.get_detailed_stats()
    assert (
        f"Throughput: {stats['performance']['throughput_eps']:.2f} eps" == "Throughput: 25.00 eps"
    )
    assert f"{stats['performance']['avg_processing_time_ms']:.1f}ms" == "1000.0ms"
    assert stats["performance"]["meets_performance_target"] is True
    assert set(stats) >= {"buffer_state", "performance", "system_health", "optimization_events"}
    assert stats["system_health"]["status"] == "healthy"
    assert stats["counters"]["entries_flushed"] == 25


def test_seed_factories_and_global_report(caplog: pytest.LogCaptureFixture) -> None:
    standard = create_optimized_batch_manager(Recorder(), memory_reader=Memory(), name="std")
    high = create_high_performance_batch_manager(Recorder(), memory_reader=Memory(), name="hp")
    small = create_memory_efficient_batch_manager(Recorder(), memory_reader=Memory(), name="me")
    try:
        assert standard.config == BatchProcessingConfig.from_env()
        assert high.config.max_buffer_size > standard.config.max_buffer_size
        assert high.current_size_threshold == 50
        assert small.config.max_buffer_size < standard.config.max_buffer_size
        assert small.config.memory_early_flush_percent < 85
        standard.queue_entry("a", "rss_feed", "u1")
        report = get_batch_performance_report()
        names = [stats["name"] for stats in report["managers"]]
        assert {"std", "hp", "me"} <= set(names)
        assert report["totals"]["entries_queued"] >= 1
        with caplog.at_level(logging.INFO, logger="batchpilot.buffer"):
            summary = log_batch_performance_summary()
        assert summary["manager_count"] == report["manager_count"]
        assert "std: 1 buffered" in caplog.text
    finally:
        for manager in (standard, high, small):
            manager.close()
    assert not {"std", "hp", "me"} & {manager.name for manager in live_managers()}


def test_optimized_factory_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BATCH_SIZE_THRESHOLD", "7")
    monkeypatch.setenv("BATCH_ENABLE_ADAPTIVE_SIZING", "false")
    with create_optimized_batch_manager(Recorder(), memory_reader=Memory()) as manager:
        assert manager.current_size_threshold == 7


# ------------------------------------------------------- API details and stats


def test_explicit_arguments_win_over_the_config(recorder: Recorder) -> None:
    config = BatchProcessingConfig(max_buffer_size=50, enable_performance_monitoring=True)
    with BatchStateManager(
        max_buffer_size=10, flush_config=config, enable_performance_monitoring=False
    ) as manager:
        assert manager.config.max_buffer_size == 10
        assert manager.config.enable_performance_monitoring is False
    with BatchStateManager(flush_config=config) as manager:
        assert manager.config.max_buffer_size == 50


def test_monitoring_off_keeps_counters_but_not_the_window(make: Any, clock: FakeClock) -> None:
    manager = make(Recorder(clock, 0.01), enable_performance_monitoring=False)
    queue(manager, 25)
    assert manager.wait_idle(5)
    stats = manager.get_detailed_stats()
    assert stats["counters"]["entries_flushed"] == 25
    assert stats["performance"]["throughput_eps"] == 0.0


def test_listeners_get_one_buffer_record_per_flush(make: Any, clock: FakeClock) -> None:
    records: list[BatchRecord] = []
    manager = make(Recorder(clock, 0.01), listeners=[records.append], name="feeds")
    queue(manager, 25)
    assert manager.wait_idle(5)
    assert len(records) == 1
    record = records[0]
    assert (record.engine, record.size, record.succeeded, record.failed) == ("buffer", 25, 25, 0)
    assert record.name == "feeds"
    assert record.duration == pytest.approx(0.25)


@pytest.mark.parametrize(
    ("args", "error", "message"),
    [
        (("x", "src", "u", 3), ValueError, "priority must be 0, 1 or 2"),
        (("x", "src", "u", True), ValueError, "priority must be an int"),
        (("x", "src", "u", 1.0), TypeError, "priority must be an int"),
        (("x", "src", "u", "1"), TypeError, "priority must be an int"),
        (("x", "src", 42), TypeError, "uuid must be a str or uuid.UUID"),
        (("x", "src", ""), ValueError, "uuid must be a non-empty string"),
        (("x", None, "u"), TypeError, "source must be a str"),
    ],
)
def test_bad_queue_entry_arguments(
    make: Any, args: tuple[Any, ...], error: type, message: str
) -> None:
    manager = make(Recorder())
    with pytest.raises(error, match=message):
        manager.queue_entry(*args)
    assert manager.get_detailed_stats()["counters"]["entries_queued"] == 0


def test_uuid_objects_are_accepted(make: Any, recorder: Recorder) -> None:
    import uuid

    manager = make(recorder)
    key = uuid.uuid4()
    assert manager.queue_entry("x", "src", key)
    assert not manager.queue_entry("x", "src", str(key))
    assert manager.flush(5)
    assert recorder.batches == [[str(key)]]


def test_bad_constructor_arguments() -> None:
    def two_args(a: object, b: object) -> None: ...

    with pytest.raises(TypeError, match=r"one argument .* or none"):
        BatchStateManager(flush_callback=two_args)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="flush_callback must be callable"):
        BatchStateManager(flush_callback=42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_buffer_age_seconds"):
        BatchStateManager(max_buffer_age_seconds=0)
    with pytest.raises(ValueError, match="journal_path"):
        BatchStateManager(durability="fsync")
    with pytest.raises(TypeError, match="flush_config"):
        BatchStateManager(flush_config={"size_threshold": 3})  # type: ignore[arg-type]


def test_close_flushes_the_rest_and_is_idempotent(make: Any, recorder: Recorder) -> None:
    manager = make(recorder)
    queue(manager, 3)
    assert manager.close() == []
    assert recorder.batches == [["e0", "e1", "e2"]]
    assert manager.close() == []
    assert manager.closed
    with pytest.raises(ClosedError):
        manager.queue_entry("x", "src", "late")
    with pytest.raises(ClosedError):
        manager.flush()
    assert not any(thread.is_alive() for thread in manager.flusher_threads)


def test_context_manager_closes(recorder: Recorder) -> None:
    with BatchStateManager(flush_callback=recorder, memory_reader=Memory()) as manager:
        queue(manager, 2)
    assert manager.closed
    assert recorder.batches == [["e0", "e1"]]


def test_without_callback_entries_wait_and_close_returns_them(make: Any) -> None:
    manager = make(None)
    queue(manager, 30)
    assert manager.flush(5) is False
    left = manager.close()
    assert [item.uuid for item in left] == [f"e{i}" for i in range(30)]
    assert manager.get_detailed_stats()["counters"]["unflushed_at_close"] == 30


def test_flush_and_close_refuse_the_flusher_thread(make: Any) -> None:
    errors: list[BaseException] = []

    def reentrant(entries: list[BufferedEntry]) -> None:
        for call in (manager.flush, manager.close, manager.wait_idle):
            try:
                call()
            except RuntimeError as exc:
                errors.append(exc)

    manager = make(reentrant)
    queue(manager, 1)
    assert manager.flush(5)
    assert len(errors) == 3
    assert all("cannot be called from the flush callback" in str(e) for e in errors)


def test_flushes_overlap_only_when_asked(make: Any) -> None:
    both_inside = threading.Barrier(2, timeout=5)

    def meet(entries: list[BufferedEntry]) -> None:
        both_inside.wait()

    manager = make(meet, max_concurrent_flushes=2, enable_adaptive_sizing=False, size_threshold=5)
    assert len(manager.flusher_threads) == 2
    queue(manager, 10)
    assert manager.wait_idle(10)
    assert manager.get_detailed_stats()["counters"]["flushes"] == 2


def test_one_flush_at_a_time_by_default(make: Any) -> None:
    inside = 0
    most = 0
    guard = threading.Lock()

    def track(entries: list[BufferedEntry]) -> None:
        nonlocal inside, most
        with guard:
            inside += 1
            most = max(most, inside)
        with guard:
            inside -= 1

    manager = make(track, enable_adaptive_sizing=False, size_threshold=2)
    assert len(manager.flusher_threads) == 1
    queue(manager, 40)
    assert manager.wait_idle(5)
    assert manager.get_detailed_stats()["counters"]["entries_flushed"] == 40
    assert most == 1


def test_repr_shows_live_state(make: Any) -> None:
    manager = make(None, name="alerts")
    queue(manager, 2)
    text = repr(manager)
    assert "name='alerts'" in text
    assert "buffered=2" in text
    assert "closed=False" in text
