"""The buffer in parts (issue 24 items 2, 3, 8): the statistics snapshot, the
lifecycle states, and imports that run one way (manager -> registry <- report)."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path
from typing import Any

import pytest

import batchpilot.buffer
from batchpilot._core.statistics import Statistics
from batchpilot.buffer import BatchStateManager, BufferedEntry, BufferStatistics
from batchpilot.buffer.lifecycle import BufferState, Lifecycle
from batchpilot.errors import ClosedError
from batchpilot.testing import FakeClock

BUFFER = Path(batchpilot.buffer.__file__).resolve().parent

# every key the seed's get_detailed_stats() documents (docs/buffer.md)
DOCUMENTED = {
    "name": None,
    "buffer_state": {
        "buffer_size", "priority_buffer_size", "total_buffered", "in_flight",
        "max_buffer_size", "utilization_percent", "current_size_threshold",
        "oldest_entry_age_seconds", "flushing", "closed", "journal_path",
    },
    "performance": {
        "monitoring_enabled", "throughput_eps", "avg_processing_time_ms", "p95_latency_ms",
        "avg_batch_size", "avg_queue_time_ms", "avg_queue_entry_us", "performance_target_ms",
        "throughput_target_eps", "meets_performance_target", "meets_throughput_target",
        "error_rate",
    },
    "counters": {
        "entries_queued", "entries_flushed", "flushes", "failed_flushes", "retries",
        "kept_after_failure", "dead_lettered_entries", "dropped_entries",
        "duplicates_ignored", "overflow_events", "rejected_entries", "recovered_entries",
        "quarantined_entries", "unflushed_at_close", "in_flight_at_close",
    },
    "flush_triggers": None,
    "system_health": {
        "status", "memory_percent", "memory_early_flush_percent",
        "memory_emergency_flush_percent", "memory_efficiency_percent", "process_rss_mb",
    },
    "optimization_events": None,
}  # fmt: skip


class IntegrityError(Exception):
    """Permanent by name: the batch is bisected to the bad entry."""


def test_statistics_is_a_frozen_snapshot_in_the_shared_vocabulary(
    make: Any, clock: FakeClock
) -> None:
    dead: list[BufferedEntry] = []

    def sink(entries: list[BufferedEntry]) -> None:
        clock.advance(0.5)
        if any(item.entry == "bad" for item in entries):
            raise IntegrityError("bad row")

    manager = make(
        sink,
        size_threshold=4,
        enable_adaptive_sizing=False,
        max_retries=0,
        on_dead_letter=lambda e, _: dead.extend(e),
    )
    for n, entry in enumerate(["a", "bad", "c", "d", "e"]):
        manager.queue_entry(entry, "feed", f"id-{n}", priority=1 if n == 4 else 0)
    assert manager.wait_idle(10)
    stats = manager.statistics()
    assert isinstance(stats, Statistics) and isinstance(stats, BufferStatistics)
    with pytest.raises(dataclasses.FrozenInstanceError):
        stats.batches = 0  # type: ignore[misc]
    shared = {field.name for field in dataclasses.fields(Statistics)}
    assert [f.name for f in dataclasses.fields(stats)][: len(shared)] == list(stats.as_dict())[
        : len(shared)
    ]
    assert (stats.batches, stats.items, stats.succeeded, stats.failed) == (1, 4, 3, 1)
    assert (stats.queue_depth, stats.current_batch_size, stats.name) == (1, 4, manager.name)
    assert stats.rate == pytest.approx(4 / (5 * 0.5))  # 5 sink calls of 0.5 s (fake clock)
    assert (stats.dead_lettered_entries, stats.failed_flushes) == (1, 1)
    assert [item.entry for item in dead] == ["bad"]
    # the seed's dictionary is a view of the snapshot, every documented key kept
    detailed = manager.get_detailed_stats()
    assert set(detailed) == set(DOCUMENTED)
    for section, keys in DOCUMENTED.items():
        if keys is not None:
            assert set(detailed[section]) == keys, section
    assert detailed["counters"]["entries_flushed"] == stats.succeeded == 3
    assert detailed["buffer_state"]["total_buffered"] == stats.queue_depth
    # the priority-1 entry left first (urgent first), so "d" waits at priority 0
    assert detailed["buffer_state"]["buffer_size"] == stats.normal_buffered == 1
    assert detailed["buffer_state"]["priority_buffer_size"] == stats.priority_buffered == 0


def test_lifecycle_moves_open_closing_closed_and_failed_keeps_its_cause() -> None:
    life = Lifecycle()
    assert life.state is BufferState.OPEN and life.open and life.flushing_allowed
    assert life.begin_close() and life.state is BufferState.CLOSING
    assert not life.begin_close()  # idempotent
    assert life.flushing_allowed and not life.given_up
    life.give_up()  # close(timeout) stopped waiting for a running flush
    assert life.state is BufferState.CLOSED and life.given_up and not life.released
    life.release([])
    assert life.released and life.take_held_back() == []

    failed = Lifecycle()
    first, second = SystemExit(3), KeyboardInterrupt()
    failed.fail(first)
    failed.fail(second)
    assert failed.state is BufferState.FAILED and failed.cause is first
    assert not failed.flushing_allowed and not failed.given_up
    refusal = failed.refusal("buf")
    assert isinstance(refusal, ClosedError) and refusal.__cause__ is first
    entry = BufferedEntry("x", "s", "u", 0, 0.0, 0.0)
    failed.release([entry])
    assert failed.state is BufferState.FAILED
    assert failed.take_held_back() == [entry] and failed.take_held_back() == []


def test_a_manager_walks_its_states(make: Any) -> None:
    manager: BatchStateManager = make(lambda entries: None)
    assert manager._life.state is BufferState.OPEN
    manager.queue_entry("x", "s", "u1")
    assert manager.close(timeout=10) == []
    assert manager._life.state is BufferState.CLOSED and manager.closed
    with pytest.raises(ClosedError):
        manager.queue_entry("y", "s", "u2")


def _imports(module: str) -> set[str]:
    tree = ast.parse((BUFFER / f"{module}.py").read_text())
    return {
        node.module or ""
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.level == 1
    }


def test_manager_and_report_do_not_import_each_other() -> None:
    assert "report" not in _imports("manager")
    assert "registry" in _imports("manager") and "registry" in _imports("report")
    assert _imports("registry") == set()
    for part in ("triggers", "delivery", "lifecycle", "statistics", "account"):
        assert "manager" not in _imports(part), part
