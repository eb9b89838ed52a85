"""BatchStateManager: nothing lost. Retries, dead letters, de-duplication, overflow, journal."""

from __future__ import annotations

import gc
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from batchpilot.buffer import (
    BatchProcessingConfig,
    BatchStateManager,
    BufferedEntry,
    live_managers,
)
from batchpilot.errors import BatchFailedError, ClosedError, ConfigError, QueueFullError
from batchpilot.testing import FakeClock

pytestmark = pytest.mark.timeout(20)


class Flaky:
    """A flush callback that fails its first ``failures`` calls, then records batches."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.calls = 0
        self.batches: list[list[str]] = []
        self.threads: list[threading.Thread] = []

    def __call__(self, entries: list[BufferedEntry]) -> None:
        self.calls += 1
        self.threads.append(threading.current_thread())
        if self.calls <= self.failures:
            raise ConnectionError(f"LLM API down (call {self.calls})")
        self.batches.append([item.uuid for item in entries])


class DeadLetters:
    def __init__(self) -> None:
        self.received: list[tuple[list[str], BaseException]] = []
        self.threads: list[threading.Thread] = []

    def __call__(self, entries: list[BufferedEntry], error: BaseException) -> None:
        self.threads.append(threading.current_thread())
        self.received.append(([item.uuid for item in entries], error))


def queue(manager: BatchStateManager, count: int, prefix: str = "e") -> None:
    for i in range(count):
        assert manager.queue_entry({"n": i}, "rss_feed", f"{prefix}{i}")


def counters(manager: BatchStateManager) -> dict[str, int]:
    return dict(manager.get_detailed_stats()["counters"])


def names(prefix: str, count: int) -> list[str]:
    return [f"{prefix}{i}" for i in range(count)]


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait for another thread to reach a state (not for time to pass)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "state not reached"
        time.sleep(0.001)


# ------------------------------------------------------------ retry and dead letter


def test_retry_with_backoff_then_success(make: Any, clock: FakeClock) -> None:
    flaky = Flaky(failures=2)
    manager = make(flaky)
    queue(manager, 25)
    assert manager.wait_idle(5)
    assert clock.sleeps == [1.0, 2.0]
    assert flaky.batches == [names("e", 25)]
    stats = counters(manager)
    assert (stats["retries"], stats["flushes"], stats["failed_flushes"]) == (2, 1, 0)


def test_retry_then_dead_letter(make: Any, clock: FakeClock) -> None:
    flaky = Flaky(failures=99)
    dead = DeadLetters()
    manager = make(flaky, on_dead_letter=dead)
    queue(manager, 25)
    assert manager.wait_idle(5)
    assert flaky.calls == 4  # first try + max_retries=3
    assert clock.sleeps == [1.0, 2.0, 4.0]
    assert len(dead.received) == 1
    uuids, error = dead.received[0]
    assert uuids == names("e", 25)
    assert isinstance(error, ConnectionError)
    assert dead.threads[0] in manager.flusher_threads
    stats = counters(manager)
    assert (stats["dead_lettered_entries"], stats["failed_flushes"], stats["retries"]) == (25, 1, 3)
    assert manager.get_detailed_stats()["buffer_state"]["total_buffered"] == 0


def test_every_callback_error_is_retried_even_a_batch_failed_error(
    make: Any, clock: FakeClock
) -> None:
    calls: list[int] = []

    def refuses_twice(entries: list[BufferedEntry]) -> None:
        calls.append(len(entries))
        if len(calls) <= 2:
            raise BatchFailedError("the API rejected the whole batch")

    manager = make(refuses_twice)
    queue(manager, 25)
    assert manager.wait_idle(5)
    assert calls == [25, 25, 25]
    assert clock.sleeps == [1.0, 2.0]
    assert (counters(manager)["retries"], counters(manager)["flushes"]) == (2, 1)


def test_retry_settings_come_from_the_config(make: Any, clock: FakeClock) -> None:
    manager = make(Flaky(failures=99), on_dead_letter=DeadLetters(), max_retries=1, retry_delay=0.5)
    queue(manager, 25)
    assert manager.wait_idle(5)
    assert clock.sleeps == [0.5]


def test_without_dead_letter_entries_are_kept_for_the_next_flush(
    make: Any, clock: FakeClock
) -> None:
    flaky = Flaky(failures=4)  # the whole first flush fails
    manager = make(flaky, enable_adaptive_sizing=False)
    queue(manager, 25)
    assert manager.wait_idle(5)
    assert flaky.batches == []
    state = manager.get_detailed_stats()
    assert state["buffer_state"]["total_buffered"] == 25
    assert state["counters"]["kept_after_failure"] == 25
    # Automatic triggers pause for one more back-off step (8 s after 1, 2, 4).
    clock.advance(7.9)
    assert manager.check_flush_conditions() is None
    clock.advance(0.1)
    manager.check_flush_conditions()
    assert manager.wait_idle(5)
    assert flaky.batches == [names("e", 25)]  # same entries, same order


def test_manual_flush_reports_failure_and_keeps_entries(make: Any) -> None:
    flaky = Flaky(failures=4)
    manager = make(flaky)
    queue(manager, 3)
    assert manager.flush(5) is False
    assert manager.get_detailed_stats()["buffer_state"]["total_buffered"] == 3
    assert manager.flush(5) is True  # flush() ignores the cool-down
    assert flaky.batches == [names("e", 3)]


def test_failing_dead_letter_handler_keeps_the_entries(make: Any) -> None:
    def broken(entries: list[BufferedEntry], error: BaseException) -> None:
        raise RuntimeError("dead-letter store down")

    manager = make(Flaky(failures=99), on_dead_letter=broken)
    queue(manager, 2)
    assert manager.flush(5) is False
    assert manager.get_detailed_stats()["buffer_state"]["total_buffered"] == 2


def test_close_returns_what_could_not_be_flushed(make: Any) -> None:
    manager = make(Flaky(failures=99))
    queue(manager, 3)
    left = manager.close()
    assert [item.uuid for item in left] == names("e", 3)
    assert manager.close() == []


def test_close_keeps_draining_past_dead_lettered_batches(make: Any) -> None:
    dead = DeadLetters()
    manager = make(None, on_dead_letter=dead, enable_adaptive_sizing=False, size_threshold=25)
    queue(manager, 60)
    manager.set_flush_callback(Flaky(failures=99))
    assert manager.close() == []
    assert [len(uuids) for uuids, _ in dead.received] == [25, 25, 10]
    assert counters(manager)["dead_lettered_entries"] == 60


def test_close_with_timeout_returns_early_and_a_later_close_finishes(make: Any) -> None:
    entered, release = threading.Event(), threading.Event()

    def hung_then_broken(entries: list[BufferedEntry]) -> None:
        entered.set()
        assert release.wait(5)
        raise ConnectionError("still down")

    manager = make(hung_then_broken, max_retries=0)
    queue(manager, 25)
    assert entered.wait(5)
    assert manager.close(timeout=0.01) == []  # the flusher is stuck in the callback
    assert manager.closed
    assert manager in live_managers()
    release.set()
    left = manager.close()
    assert [item.uuid for item in left] == names("e", 25)
    assert manager not in live_managers()
    assert manager.close() == []


def test_failed_flush_is_reported_to_listeners_and_shrinks_the_size(make: Any) -> None:
    records: list[Any] = []
    manager = make(Flaky(failures=99), on_dead_letter=DeadLetters(), listeners=[records.append])
    queue(manager, 25)
    assert manager.wait_idle(5)
    assert (records[0].failed, records[0].succeeded) == (25, 0)
    assert dict(records[0].error_types) == {"ConnectionError": 25}
    assert manager.current_size_threshold == 12  # TargetLatency halves after a failure


# ------------------------------------------------------------------ de-duplication


def test_repeated_uuid_is_ignored_and_counted(make: Any) -> None:
    flaky = Flaky()
    manager = make(flaky)
    assert manager.queue_entry("first", "rss_feed", "same")
    assert not manager.queue_entry("second", "rss_feed", "same")
    assert manager.flush(5)
    assert not manager.queue_entry("third", "rss_feed", "same")  # flushed uuids count too
    assert flaky.batches == [["same"]]
    assert counters(manager)["duplicates_ignored"] == 2


def test_dedup_window_is_bounded(make: Any) -> None:
    manager = make(Flaky(), dedup_window=3)
    queue(manager, 4)  # e0 falls out of the window
    assert manager.queue_entry("again", "rss_feed", "e0")
    assert not manager.queue_entry("again", "rss_feed", "e3")


def test_default_dedup_window_is_ten_thousand(make: Any) -> None:
    manager = make(Flaky(), max_buffer_size=20_000)
    queue(manager, 10_001)  # e0 falls out of the window, e1 is its oldest
    assert not manager.queue_entry("x", "rss_feed", "e1")
    assert manager.queue_entry("x", "rss_feed", "e0")


# ------------------------------------------------------------------------ overflow


def small(**options: Any) -> dict[str, Any]:
    return {"max_buffer_size": 3, "enable_adaptive_sizing": False, "size_threshold": 3, **options}


def test_overflow_raise(make: Any) -> None:
    manager = make(None, **small(overflow="raise"))
    queue(manager, 3)
    with pytest.raises(QueueFullError, match="buffer full"):
        manager.queue_entry("x", "src", "extra")
    stats = counters(manager)
    assert (stats["overflow_events"], stats["rejected_entries"], stats["entries_queued"]) == (
        1,
        1,
        3,
    )


def test_overflow_block_times_out(make: Any) -> None:
    manager = make(None, **small(overflow_timeout_seconds=0.05))
    queue(manager, 3)
    with pytest.raises(QueueFullError, match=r"for 0\.05 s"):
        manager.queue_entry("x", "src", "extra")
    with pytest.raises(QueueFullError):
        manager.queue_entry("x", "src", "extra", timeout=0)
    assert counters(manager)["rejected_entries"] == 2


def test_overflow_block_waits_for_room(make: Any) -> None:
    entered, release = threading.Event(), threading.Event()
    flushed: list[list[str]] = []

    def slow(entries: list[BufferedEntry]) -> None:
        entered.set()
        assert release.wait(5)
        flushed.append([item.uuid for item in entries])

    manager = make(slow, **small())
    queue(manager, 3)  # full: a flush of all three starts and holds them
    assert entered.wait(5)
    outcome: list[object] = []
    producer = threading.Thread(
        target=lambda: outcome.append(manager.queue_entry("x", "src", "late", timeout=None))
    )
    producer.start()
    wait_until(lambda: counters(manager)["overflow_events"] == 1)
    assert producer.is_alive()
    release.set()
    producer.join(5)
    assert outcome == [True]
    assert manager.flush(5)
    assert flushed == [names("e", 3), ["late"]]


def test_close_wakes_blocked_producers(make: Any) -> None:
    manager = make(None, **small(overflow_timeout_seconds=None))
    queue(manager, 3)
    errors: list[BaseException] = []

    def produce() -> None:
        try:
            manager.queue_entry("x", "src", "late")
        except ClosedError as exc:
            errors.append(exc)

    producer = threading.Thread(target=produce)
    producer.start()
    wait_until(lambda: counters(manager)["overflow_events"] == 1)
    assert len(manager.close()) == 3
    producer.join(5)
    assert len(errors) == 1


def test_overflow_drop_oldest_counts_and_dead_letters(make: Any) -> None:
    dead = DeadLetters()
    manager = make(None, on_dead_letter=dead, **small(overflow="drop_oldest"))
    queue(manager, 3)
    manager.queue_entry({"n": 3}, "rss_feed", "e3", priority=2)
    manager.queue_entry({"n": 4}, "rss_feed", "e4")
    assert manager.wait_idle(5)
    assert [uuids for uuids, _ in dead.received] in ([["e0"], ["e1"]], [["e0", "e1"]])
    assert all(isinstance(error, QueueFullError) for _, error in dead.received)
    assert dead.threads[0] in manager.flusher_threads
    assert counters(manager)["dropped_entries"] == 2
    left = manager.close()
    assert [item.uuid for item in left] == ["e3", "e2", "e4"]  # urgent first


def test_drop_oldest_without_dead_letter_logs_the_loss(
    make: Any, caplog: pytest.LogCaptureFixture
) -> None:
    manager = make(None, **small(overflow="drop_oldest"))
    queue(manager, 4)
    assert manager.wait_idle(5)
    assert counters(manager)["dropped_entries"] == 1
    assert "dropped 1 entries (buffer full)" in caplog.text


# ------------------------------------------------------------------------- journal


def journal_rows(path: Path) -> list[str]:
    with sqlite3.connect(path) as db:
        return [row[0] for row in db.execute("SELECT uuid FROM buffered_entries ORDER BY id")]


def test_journal_keeps_unflushed_entries_and_the_next_manager_flushes_them(
    tmp_path: Path, clock: FakeClock
) -> None:
    path = tmp_path / "buffer.db"
    first = BatchStateManager(journal_path=path, memory_reader=lambda: 10.0, clock=clock)
    queue(first, 3)
    assert journal_rows(path) == names("e", 3)
    assert len(first.close()) == 3
    assert journal_rows(path) == names("e", 3)

    flaky = Flaky()
    second = BatchStateManager(
        flush_callback=flaky, journal_path=path, memory_reader=lambda: 10.0, clock=clock
    )
    try:
        assert second.wait_idle(5)
        assert flaky.batches == [names("e", 3)]
        assert second.get_detailed_stats()["counters"]["recovered_entries"] == 3
        assert second.get_detailed_stats()["flush_triggers"] == {"recovered": 1}
        assert journal_rows(path) == []
        assert not second.queue_entry("again", "rss_feed", "e1")  # recovered uuids dedup
    finally:
        second.close()


def test_journal_round_trips_entries(tmp_path: Path) -> None:
    path = tmp_path / "buffer.db"
    with BatchStateManager(journal_path=path, memory_reader=lambda: 10.0) as first:
        first.queue_entry({"title": "t", "tags": ["a"]}, "security", "u1", priority=1)
        wall = time.time()
        left = first.close()
    assert len(left) == 1
    got: list[BufferedEntry] = []
    with BatchStateManager(
        flush_callback=got.extend, journal_path=path, memory_reader=lambda: 10.0
    ) as second:
        assert second.wait_idle(5)
    (item,) = got
    assert (item.entry, item.source, item.uuid, item.priority) == (
        {"title": "t", "tags": ["a"]},
        "security",
        "u1",
        1,
    )
    assert item.queued_at_wall == pytest.approx(wall, abs=5)


def test_journal_removes_flushed_and_dead_lettered_entries(tmp_path: Path) -> None:
    path = tmp_path / "buffer.db"
    dead = DeadLetters()
    flaky = Flaky(failures=4)
    manager = BatchStateManager(
        flush_callback=flaky,
        on_dead_letter=dead,
        journal_path=path,
        durability="fsync",
        memory_reader=lambda: 10.0,
        clock=FakeClock(),
    )
    with manager:
        queue(manager, 2)
        assert manager.flush(5) is False  # dead-lettered
        queue(manager, 2, prefix="ok")
        assert manager.flush(5)
        assert journal_rows(path) == []
    assert [uuids for uuids, _ in dead.received] == [names("e", 2)]


def test_unpicklable_entry_is_refused_and_not_queued(tmp_path: Path) -> None:
    with BatchStateManager(journal_path=tmp_path / "j.db", memory_reader=lambda: 10.0) as manager:
        with pytest.raises(TypeError, match="cannot be written to the journal"):
            manager.queue_entry(threading.Lock(), "src", "lock")
        assert manager.queue_entry("fine", "src", "lock")  # the uuid was not remembered
        assert manager.get_detailed_stats()["counters"]["entries_queued"] == 1


@pytest.mark.parametrize("priority", [1.0, "1", True, 3, None])
def test_a_bad_priority_is_refused_before_the_journal_sees_the_entry(
    tmp_path: Path, priority: object
) -> None:
    path = tmp_path / "j.db"
    with BatchStateManager(journal_path=path, memory_reader=lambda: 10.0) as manager:
        with pytest.raises(ConfigError, match="priority"):
            manager.queue_entry({"n": 1}, "src", "u1", priority=priority)  # type: ignore[arg-type]
        assert journal_rows(path) == []
        assert manager.queue_entry({"n": 1}, "src", "u1", priority=1)  # uuid not remembered
        assert journal_rows(path) == ["u1"]


# ------------------------------------------------------------------------ registry


def test_registry_holds_managers_weakly() -> None:
    manager = BatchStateManager(memory_reader=lambda: 10.0, name="forgotten")
    assert manager in live_managers()
    reference = weakref.ref(manager)
    threads = manager.flusher_threads
    del manager
    deadline = time.monotonic() + 5
    while reference() is not None and time.monotonic() < deadline:
        gc.collect()
        time.sleep(0.01)  # the flusher may be inside a step holding the manager
    assert reference() is None
    assert "forgotten" not in [m.name for m in live_managers()]
    for thread in threads:
        thread.join(5)
        assert not thread.is_alive()


# ------------------------------------------- user code raising a BaseException (issue 15)


def test_system_exit_from_the_callback_stops_the_manager_and_close_reraises_it(
    make: Any,
) -> None:
    calls: list[int] = []

    def exits(entries: list[BufferedEntry]) -> None:
        calls.append(len(entries))
        raise SystemExit(3)

    manager = make(exits, enable_adaptive_sizing=False, size_threshold=25)
    queue(manager, 30)
    wait_until(lambda: manager.closed)
    for thread in manager.flusher_threads:
        thread.join(5)
        assert not thread.is_alive()
    assert calls == [25]  # not retried
    with pytest.raises(ClosedError, match="SystemExit") as closed:
        manager.queue_entry("late", "src", "late")
    assert isinstance(closed.value.__cause__, SystemExit)
    with pytest.raises(ClosedError, match="stopped"):
        manager.flush(5)
    with pytest.raises(SystemExit) as raised:
        manager.close()
    assert raised.value.code == 3
    assert [item.uuid for item in manager.close()] == names("e", 30)  # none lost, in order
    assert manager.close() == []


def test_keyboard_interrupt_mid_bisection_keeps_only_the_undelivered_entries(
    make: Any, tmp_path: Path
) -> None:
    delivered: list[str] = []

    def rejects_e5(entries: list[BufferedEntry]) -> None:
        if any(item.uuid == "e5" for item in entries):
            raise sqlite3.IntegrityError("UNIQUE constraint failed: rows.uuid")
        delivered.extend(item.uuid for item in entries)

    def interrupted(entries: list[BufferedEntry], error: BaseException) -> None:
        raise KeyboardInterrupt

    path = tmp_path / "j.db"
    manager = make(
        rejects_e5, on_dead_letter=interrupted, journal_path=path,
        enable_adaptive_sizing=False, size_threshold=8,
    )  # fmt: skip
    queue(manager, 8)
    wait_until(lambda: manager.closed)
    assert sorted(delivered) == sorted(set(names("e", 8)) - {"e5"})
    with pytest.raises(KeyboardInterrupt):
        manager.close()
    assert [item.uuid for item in manager.close()] == ["e5"]
    assert journal_rows(path) == ["e5"]


def test_a_listener_raising_system_exit_stops_the_flusher_without_losing_entries(
    make: Any,
) -> None:
    flushed: list[str] = []

    def listener(record: Any) -> None:
        raise SystemExit(1)

    manager = make(
        lambda entries: flushed.extend(item.uuid for item in entries),
        listeners=[listener], enable_adaptive_sizing=False, size_threshold=5,
    )  # fmt: skip
    queue(manager, 7)
    wait_until(lambda: manager.closed)
    with pytest.raises(SystemExit):
        manager.close()
    assert flushed == names("e", 5)
    assert [item.uuid for item in manager.close()] == ["e5", "e6"]


# ------------------------------------------- close(timeout) and permanent errors (issue 13)


def test_close_with_a_timeout_returns_the_buffered_and_reports_the_in_flight(
    make: Any, caplog: pytest.LogCaptureFixture
) -> None:
    entered, release = threading.Event(), threading.Event()
    calls: list[int] = []

    def down(entries: list[BufferedEntry]) -> None:
        calls.append(len(entries))
        entered.set()
        assert release.wait(5)
        raise ConnectionError("API down")

    manager = make(down, enable_adaptive_sizing=False, size_threshold=25)
    queue(manager, 60)
    assert entered.wait(5)
    with caplog.at_level("WARNING", logger="batchpilot.buffer"):
        left = manager.close(timeout=0.05)
    assert [item.uuid for item in left] == names("e", 60)[25:]
    stats = counters(manager)
    assert (stats["unflushed_at_close"], stats["in_flight_at_close"]) == (35, 25)
    assert "35 undelivered entries returned, 25 still in a flush" in caplog.text
    release.set()
    rest = manager.close()
    assert [item.uuid for item in rest] == names("e", 25)
    assert calls == [25]  # no retry after close gave up
    assert counters(manager)["unflushed_at_close"] == 60
    assert manager.close() == []


class HeldSleepClock(FakeClock):
    """A fake clock whose back-off sleep holds the flusher until ``release`` is set."""

    def __init__(self) -> None:
        super().__init__(1000.0)
        self.sleeping, self.release = threading.Event(), threading.Event()

    def sleep(self, seconds: float) -> None:
        self.sleeping.set()
        assert self.release.wait(5)
        super().sleep(seconds)


def test_a_flush_abandoned_by_close_during_its_back_off_makes_no_further_attempt(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = HeldSleepClock()
    calls: list[int] = []

    def down(entries: list[BufferedEntry]) -> None:
        calls.append(len(entries))
        raise ConnectionError("API down")

    config = BatchProcessingConfig(size_threshold=25, enable_adaptive_sizing=False)
    manager = BatchStateManager(
        flush_config=config, flush_callback=down, memory_reader=lambda: 10.0, clock=clock
    )
    queue(manager, 25)
    assert clock.sleeping.wait(5)  # the first attempt failed; the flusher waits to retry
    with caplog.at_level("WARNING", logger="batchpilot.buffer"):
        assert manager.close(timeout=0.05) == []
    assert "25 still in a flush" in caplog.text
    clock.release.set()
    assert [item.uuid for item in manager.close()] == names("e", 25)
    assert calls == [25]  # the back-off ended after close gave up: no retry


def test_a_permanent_error_is_not_retried_and_only_bad_entries_are_dead_lettered(
    make: Any, clock: FakeClock, tmp_path: Path
) -> None:
    sink = sqlite3.connect(tmp_path / "sink.db", check_same_thread=False, isolation_level=None)
    sink.execute("CREATE TABLE rows (uuid TEXT PRIMARY KEY, n INTEGER)")
    sink.executemany("INSERT INTO rows VALUES (?, ?)", [("e3", 3), ("e17", 17)])  # a replay

    def insert(entries: list[BufferedEntry]) -> None:
        with sink:
            sink.execute("BEGIN")
            sink.executemany(
                "INSERT INTO rows VALUES (?, ?)", [(e.uuid, e.entry["n"]) for e in entries]
            )

    dead = DeadLetters()
    manager = make(insert, on_dead_letter=dead, enable_adaptive_sizing=False, size_threshold=25)
    queue(manager, 25)
    assert manager.wait_idle(5)
    assert clock.sleeps == []  # no back-off for a broken unique key
    assert sorted(uuids for uuids, _ in dead.received) == [["e17"], ["e3"]]
    assert all(isinstance(error, sqlite3.IntegrityError) for _, error in dead.received)
    (count,) = sink.execute("SELECT COUNT(*) FROM rows").fetchone()
    assert count == 25
    stats = counters(manager)
    assert (stats["entries_flushed"], stats["dead_lettered_entries"], stats["retries"]) == (
        23,
        2,
        0,
    )
    sink.close()


def test_without_a_dead_letter_handler_only_the_bad_entry_is_kept(make: Any) -> None:
    delivered: list[str] = []

    def rejects_e2(entries: list[BufferedEntry]) -> None:
        if any(item.uuid == "e2" for item in entries):
            raise sqlite3.IntegrityError("UNIQUE constraint failed")
        delivered.extend(item.uuid for item in entries)

    manager = make(rejects_e2, enable_adaptive_sizing=False, size_threshold=6)
    queue(manager, 6)
    assert manager.wait_idle(5)
    assert sorted(delivered) == ["e0", "e1", "e3", "e4", "e5"]
    assert [item.uuid for item in manager.close()] == ["e2"]


def test_the_retry_predicate_is_configurable(make: Any, clock: FakeClock) -> None:
    flaky = Flaky(failures=1)
    dead = DeadLetters()
    manager = make(flaky, on_dead_letter=dead, retry_on=lambda error: False)
    queue(manager, 25)
    assert manager.wait_idle(5)
    assert clock.sleeps == []
    assert flaky.calls > 1 and flaky.batches  # bisected: the halves were delivered
    assert dead.received == []


def test_a_callback_without_arguments_is_not_bisected(make: Any) -> None:
    calls: list[int] = []

    def process_batch() -> None:
        calls.append(1)
        raise sqlite3.IntegrityError("UNIQUE constraint failed")

    dead = DeadLetters()
    manager = make(process_batch, on_dead_letter=dead)
    queue(manager, 25)
    assert manager.wait_idle(5)
    assert len(calls) == 1  # halves of a batch it never sees would call it 49 times
    assert [len(uuids) for uuids, _ in dead.received] == [25]
