"""Seed 002 building blocks: ChunkConfig, ChunkProcessor, MemoryMonitor, ProgressTracker,
ResultStorage. Deterministic: scripted memory readings, FakeClock, real files."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from batchpilot import TargetLatency
from batchpilot.chunked import (
    ChunkConfig,
    ChunkProcessor,
    ChunkStrategy,
    MemoryMonitor,
    ProcessingMode,
    ProgressTracker,
    ResultStorage,
    default_weight,
    estimate_size_bytes,
)
from batchpilot.testing import FakeClock

# -- ChunkConfig ---------------------------------------------------------------


def test_config_has_every_seed_field_and_default() -> None:
    config = ChunkConfig()
    assert (
        config.chunk_size,
        config.max_memory_mb,
        config.max_processing_time,
        config.max_concurrent_chunks,
        config.enable_memory_monitoring,
        config.enable_progress_tracking,
        config.enable_error_recovery,
        config.enable_result_persistence,
        config.result_format,
        config.compression_enabled,
        config.cleanup_interval,
    ) == (1000, 512, 300.0, 4, True, True, True, True, "json", False, 10)
    assert config.strategy is ChunkStrategy.FIXED
    assert config.effective_max_chunk_size == 10_000


def test_config_accepts_the_seed_examples() -> None:
    config = ChunkConfig(chunk_size=50, max_memory_mb=128, strategy=ChunkStrategy.MEMORY_BASED)
    assert config.strategy is ChunkStrategy.MEMORY_BASED
    assert ChunkConfig(strategy="time_based").strategy is ChunkStrategy.TIME_BASED
    assert ChunkConfig(strategy="my_custom").strategy == "my_custom"
    assert ChunkConfig(result_format="SQLite").result_format == "sqlite"
    assert json.loads(json.dumps(ChunkConfig().to_dict()))["strategy"] == "fixed"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("chunk_size", 0),
        ("chunk_size", 2.5),
        ("chunk_size", True),
        ("max_memory_mb", 0),
        ("max_processing_time", -1.0),
        ("max_concurrent_chunks", 0),
        ("enable_error_recovery", "yes"),
        ("result_format", "xml"),
        ("cleanup_interval", -1),
        ("strategy", 3),
        ("target_chunk_time", 0),
        ("weight_function", "heavy"),
        ("storage_dir", 12),
        ("executor", "gpu"),
    ],
)
def test_invalid_config_raises_value_error_naming_the_field(field: str, value: Any) -> None:
    with pytest.raises(ValueError, match=field):
        ChunkConfig(**{field: value})


def test_config_checks_assignments_and_relations() -> None:
    config = ChunkConfig(chunk_size=2)
    config.chunk_size //= 2  # the seed's dynamic configuration
    assert config.chunk_size == 1
    with pytest.raises(ValueError, match="chunk_size"):
        config.chunk_size //= 2
    with pytest.raises(ValueError, match="min_chunk_size"):
        ChunkConfig(chunk_size=5, min_chunk_size=6)
    with pytest.raises(ValueError, match="max_chunk_size"):
        ChunkConfig(chunk_size=50, max_chunk_size=10)


# -- ChunkProcessor -----------------------------------------------------------


def test_fixed_chunks_read_the_live_config_lazily() -> None:
    config = ChunkConfig(chunk_size=3)
    processor = ChunkProcessor(config)
    pulled: list[int] = []

    def source() -> Any:
        for i in range(10):
            pulled.append(i)
            yield i

    chunks = processor.iter_chunks(source(), ChunkStrategy.FIXED)
    assert next(chunks) == [0, 1, 2]
    assert pulled == [0, 1, 2]  # nothing read ahead
    config.chunk_size = 5
    assert list(chunks) == [[3, 4, 5, 6, 7], [8, 9]]
    assert processor.chunk_size_history == [3, 5, 2]


def test_memory_based_packs_by_estimated_size_and_caps_at_chunk_size() -> None:
    config = ChunkConfig(chunk_size=4, max_memory_mb=1, max_concurrent_chunks=4)
    processor = ChunkProcessor(config)
    budget = processor.memory_budget_bytes
    assert budget == 1024 * 1024 / 4
    big = b"x" * 100_000  # about 100 kB each: two fit into 256 kB, three do not
    small = b"y"
    chunks = processor.create_chunks(
        [big, big, big, small, small, small, small, small], ChunkStrategy.MEMORY_BASED
    )
    # two big ones fill a budget; then one big plus three small hit the 4-target cap
    assert [len(chunk) for chunk in chunks] == [2, 4, 2]
    assert processor.estimate_memory_usage([big]) == pytest.approx(
        estimate_size_bytes(big) / 1024 / 1024
    )


def test_weighted_packs_by_weight_function_and_default_weight() -> None:
    config = ChunkConfig(chunk_size=10, weight_function=lambda t: t["cost"])
    processor = ChunkProcessor(config)
    targets = [{"cost": c} for c in (4, 4, 4, 15, 1, 9, 1)]
    chunks = processor.create_chunks(targets, ChunkStrategy.WEIGHTED)
    assert [[t["cost"] for t in chunk] for chunk in chunks] == [[4, 4], [4], [15], [1, 9], [1]]
    assert default_weight({"weight": 3}) == 3.0
    assert default_weight("anything") == 1.0
    unweighted = ChunkProcessor(ChunkConfig(chunk_size=2))
    assert unweighted.create_chunks([{"weight": 2}, 1, 1, 1], "weighted") == [
        [{"weight": 2}],
        [1, 1],
        [1],
    ]
    with pytest.raises(ValueError, match="weight"):
        ChunkProcessor(ChunkConfig(weight_function=lambda t: -1.0)).create_chunks([1], "weighted")


def test_time_based_sizes_follow_the_core_controller_exactly() -> None:
    config = ChunkConfig(chunk_size=10, target_chunk_time=1.0, max_chunk_size=100)
    processor = ChunkProcessor(config)
    chunks = processor.iter_chunks(range(1000), ChunkStrategy.TIME_BASED)
    core = TargetLatency(1.0, min_size=1, max_size=100, initial=10)
    sizes, core_sizes = [], []
    # fast chunks: growth capped at 2x per step; then 5x slower: shrink at once
    for duration_per_item in (0.01, 0.01, 0.01, 0.05, 0.05):
        chunk = next(chunks)
        sizes.append(len(chunk))
        core_sizes.append(core.next_size())
        processor.record_chunk(len(chunk), duration_per_item * len(chunk))
        core.observe(len(chunk), duration_per_item * len(chunk))
    assert sizes == core_sizes
    assert sizes[:4] == [10, 20, 40, 80] and sizes[4] < 40
    assert processor.estimate_processing_time(10) == core.model.predict(10)


def test_adaptive_halves_on_memory_pressure_and_mostly_failed_chunks() -> None:
    readings = iter([10.0, 10.0, 999.0, 10.0])
    monitor = MemoryMonitor(100, read_memory_mb=lambda: next(readings))
    config = ChunkConfig(chunk_size=40, target_chunk_time=1.0, max_chunk_size=1000)
    processor = ChunkProcessor(config, memory_monitor=monitor)
    chunks = processor.iter_chunks(range(10_000), ChunkStrategy.ADAPTIVE)
    sizes = []
    for failed_fraction in (0.0, 0.0, 0.0, 0.75):
        chunk = next(chunks)
        sizes.append(len(chunk))
        processor.record_chunk(len(chunk), 0.001 * len(chunk), int(failed_fraction * len(chunk)))
    sizes.append(len(next(chunks)))
    # fast chunks double: 40, 80, 160; memory over the limit halves: 80;
    # three quarters failed halves again: 40
    assert sizes == [40, 80, 160, 80, 40]


def test_custom_strategies_as_in_the_seed() -> None:
    processor = ChunkProcessor(ChunkConfig())

    def by_parity(targets: list[int]) -> list[list[int]]:
        return [[t for t in targets if t % 2 == 0], [t for t in targets if t % 2]]

    processor.custom_strategies["custom"] = by_parity
    assert processor.create_chunks(range(6), "custom") == [[0, 2, 4], [1, 3, 5]]
    processor.custom_strategies["lossy"] = lambda targets: [targets[:1]]
    with pytest.raises(ValueError, match="1 targets into chunks for 3"):
        processor.create_chunks([1, 2, 3], "lossy")
    processor.custom_strategies["swap"] = lambda targets: [[targets[0], targets[0]]]
    with pytest.raises(ValueError, match="exactly one chunk"):
        processor.create_chunks(["a", "b"], "swap")
    processor.custom_strategies["copies"] = lambda targets: [[dict(t) for t in targets]]
    records = [{"id": 1}, {"id": 2}]
    assert processor.create_chunks(records, "copies") == [records]  # copies match by value
    processor.custom_strategies["bad_copies"] = lambda targets: [[{"id": 1}, {"id": 1}]]
    with pytest.raises(ValueError, match=r"drops 1 target\(s\) \({'id': 2}\)"):
        processor.create_chunks(records, "bad_copies")
    with pytest.raises(ValueError, match="unknown chunk strategy"):
        processor.create_chunks([1], "nope")
    with pytest.raises(TypeError, match="iterable"):
        processor.iter_chunks(42)  # type: ignore[arg-type]


def test_estimate_size_counts_nested_containers_once() -> None:
    shared = "x" * 1000
    assert estimate_size_bytes([shared, shared]) < 2 * estimate_size_bytes(shared)
    array = np.zeros(10_000)
    assert estimate_size_bytes({"a": array}) > array.nbytes


# -- MemoryMonitor ------------------------------------------------------------


def test_memory_monitor_tracks_current_peak_limit_and_history() -> None:
    clock = FakeClock()
    readings = iter([100.0, 300.0, 250.0, 260.0, 200.0, 200.0])
    collected: list[int] = []
    monitor = MemoryMonitor(
        256,
        history_size=3,
        read_memory_mb=lambda: next(readings),
        collect=lambda generation: collected.append(generation) or 0,
        clock=clock,
    )
    assert monitor.sample() == 100.0
    clock.advance(1)
    assert monitor.is_memory_limit_exceeded()  # 300 > 256
    assert (monitor.current_memory_mb, monitor.peak_memory_mb) == (300.0, 300.0)
    assert monitor.collect_garbage() == 0.0  # 250 before, 260 after: nothing freed
    assert collected == [2]  # a full collection
    assert not monitor.check_memory()  # 200: under the limit, no collection
    stats = monitor.get_memory_stats()
    assert stats["current_memory_mb"] == 200.0
    assert stats["peak_memory_mb"] == 300.0
    assert stats["memory_limit_mb"] == 256.0
    assert stats["gc_collections"] == 1
    assert stats["samples"] == 3
    assert list(monitor.history) == [(1.0, 250.0), (1.0, 260.0), (1.0, 200.0)]


def test_memory_monitor_reads_real_process_memory() -> None:
    monitor = MemoryMonitor(1_000_000)
    assert monitor.sample() > 1.0
    assert not monitor.is_memory_limit_exceeded()
    assert 0.0 <= monitor.get_memory_stats()["system_memory_percent"] <= 100.0
    with pytest.raises(ValueError, match="memory_limit_mb"):
        MemoryMonitor(0)


# -- ProgressTracker ----------------------------------------------------------


def test_progress_rates_eta_and_callbacks_with_a_fake_clock() -> None:
    clock = FakeClock()
    tracker = ProgressTracker(clock=clock)
    seen: list[dict[str, Any]] = []
    tracker.add_callback(seen.append)
    tracker.start(total=100)
    clock.advance(4.0)
    snapshot = tracker.update(succeeded=15, failed=5)
    assert snapshot["items_per_second"] == 5.0
    assert snapshot["eta_seconds"] == 16.0
    assert snapshot["percentage"] == 20.0
    assert (snapshot["success_rate"], snapshot["failure_rate"]) == (0.75, 0.25)
    clock.advance(4.0)
    tracker.update(succeeded=80)
    final = tracker.finish()
    assert final["is_complete"] and final["eta_seconds"] == 0.0
    assert [s["processed"] for s in seen] == [20, 100]
    assert tracker.get_stats()["chunks_completed"] == 2


def test_progress_without_total_has_no_eta_and_broken_callbacks_are_counted() -> None:
    clock = FakeClock()
    tracker = ProgressTracker(clock=clock)

    def broken(progress: dict[str, Any]) -> None:
        raise RuntimeError("dashboard down")

    tracker.add_callback(broken)
    tracker.start()
    clock.advance(1.0)
    snapshot = tracker.update(succeeded=3)
    assert snapshot["eta_seconds"] is None and snapshot["percentage"] is None
    assert tracker.callback_errors == 1
    with pytest.raises(TypeError, match="callable"):
        tracker.add_callback("not callable")  # type: ignore[arg-type]


def test_async_progress_callbacks_are_awaited() -> None:
    tracker = ProgressTracker(clock=FakeClock())
    seen: list[int] = []

    async def remote(progress: dict[str, Any]) -> None:
        await asyncio.sleep(0)
        seen.append(progress["processed"])

    tracker.add_callback(remote)
    tracker.start(total=3)
    tracker.update(succeeded=1)  # from sync code: run to completion
    asyncio.run(tracker.aupdate(succeeded=2))
    assert seen == [1, 3]


# -- ResultStorage ------------------------------------------------------------


@pytest.mark.parametrize("result_format", ["json", "pickle", "sqlite"])
@pytest.mark.parametrize("compressed", [False, True])
def test_storage_round_trips(tmp_path: Path, result_format: str, compressed: bool) -> None:
    storage = ResultStorage(tmp_path, result_format, compressed)
    storage.save_chunk("r1", 1, [{"b": 2}], metadata={"start": 1})
    storage.save_chunk("r1", 0, [{"a": 1}], errors=[{"index": 5, "error_type": "E", "message": ""}])
    storage.save_chunk("r2", 0, [np.float64(1.5)] if result_format != "pickle" else [1.5])
    assert storage.list_runs() == ["r1", "r2"]
    assert storage.list_chunks("r1") == [0, 1]
    assert storage.load_results("r1") == [{"a": 1}, {"b": 2}]
    assert storage.load_errors("r1")[0]["index"] == 5
    assert storage.load_chunk("r1", 1)["metadata"] == {"start": 1}
    assert storage.load_results("r2") == [1.5]
    with pytest.raises(KeyError):
        storage.load_chunk("r1", 9)
    stats = storage.get_storage_stats()
    assert (stats["runs"], stats["chunks"], stats["result_format"]) == (2, 3, result_format)
    if result_format != "sqlite":
        files = sorted(p.name for p in (tmp_path / "r1").iterdir())
        suffix = (".json" if result_format == "json" else ".pkl") + (".gz" if compressed else "")
        assert files == [f"chunk_00000000{suffix}", f"chunk_00000001{suffix}"]
    assert storage.delete_run("r2") == 1
    assert storage.list_runs() == ["r1"]


def test_compression_shrinks_repetitive_results(tmp_path: Path) -> None:
    plain = ResultStorage(tmp_path / "plain", "json")
    packed = ResultStorage(tmp_path / "packed", "json", compression_enabled=True)
    results = [{"text": "same words " * 20}] * 200
    plain.save_chunk("r", 0, results)
    packed.save_chunk("r", 0, results)
    plain_size = plain.get_storage_stats()["bytes_on_disk"]
    assert packed.get_storage_stats()["bytes_on_disk"] * 10 < plain_size
    assert packed.load_results("r") == results


def test_sqlite_payload_is_queryable_json(tmp_path: Path) -> None:
    storage = ResultStorage(tmp_path, "sqlite")
    storage.save_chunk("r", 0, [{"id": 7}])
    with sqlite3.connect(tmp_path / "results.sqlite") as connection:
        (value,) = connection.execute(
            "SELECT json_extract(payload, '$.results[0].id') FROM chunk_results"
        ).fetchone()
    assert value == 7


@pytest.mark.parametrize("result_format", ["json", "sqlite"])
def test_cleanup_removes_old_chunks_by_age(tmp_path: Path, result_format: str) -> None:
    now = [1_000.0]
    storage = ResultStorage(tmp_path, result_format, wall_clock=lambda: now[0])
    storage.save_chunk("old", 0, [1])
    if result_format == "json":  # files age by modification time
        os.utime(tmp_path / "old" / "chunk_00000000.json", (1_000.0, 1_000.0))
    now[0] = 5_000.0
    storage.save_chunk("new", 0, [2])
    if result_format == "json":
        os.utime(tmp_path / "new" / "chunk_00000000.json", (5_000.0, 5_000.0))
    assert storage.cleanup(max_age_seconds=3_600) == 1
    assert storage.list_runs() == ["new"]
    assert storage.cleanup() == 1
    assert storage.list_runs() == []


def test_json_storage_refuses_unserializable_results_clearly(tmp_path: Path) -> None:
    storage = ResultStorage(tmp_path, "json")
    with pytest.raises(TypeError, match="pickle"):
        storage.save_chunk("r", 0, [object()])
    assert storage.list_chunks("r") == []  # nothing half-written


def test_result_processors_sync_and_async(tmp_path: Path) -> None:
    storage = ResultStorage(tmp_path)
    seen: list[Any] = []

    async def to_database(results: list[Any]) -> None:
        for result in results:
            await asyncio.sleep(0)
            seen.append(("db", result))

    storage.add_result_processor(to_database)
    storage.add_result_processor(lambda results: seen.append(("log", len(results))))
    storage.process_results([1, 2])
    asyncio.run(storage.aprocess_results([3]))
    assert seen == [("log", 2), ("db", 1), ("db", 2), ("log", 1), ("db", 3)]


def test_default_storage_dir_is_created_on_demand() -> None:
    storage = ResultStorage()
    assert storage.storage_dir.is_dir()
    storage.save_chunk("r", 0, ["x"])
    assert storage.load_results("r") == ["x"]
    storage.cleanup()


def test_modes_and_strategies_are_the_seed_enums() -> None:
    assert [m.name for m in ProcessingMode] == ["SEQUENTIAL", "PARALLEL", "STREAMING", "HYBRID"]
    assert [s.name for s in ChunkStrategy] == [
        "FIXED",
        "MEMORY_BASED",
        "TIME_BASED",
        "ADAPTIVE",
        "WEIGHTED",
    ]


def test_time_estimate_falls_back_to_the_mean_per_target() -> None:
    processor = ChunkProcessor(ChunkConfig(chunk_size=10))
    assert processor.estimate_processing_time(5) is None
    processor.record_chunk(10, 2.0)
    processor.record_chunk(10, 4.0)  # one size only: no line to fit
    assert processor.estimate_processing_time(20) == pytest.approx(6.0)


@settings(max_examples=60, deadline=None)
@given(
    weights=st.lists(st.integers(min_value=0, max_value=30), max_size=60),
    chunk_size=st.integers(min_value=1, max_value=12),
    strategy=st.sampled_from(list(ChunkStrategy)),
)
def test_every_strategy_places_each_target_exactly_once_in_order(
    weights: list[int], chunk_size: int, strategy: ChunkStrategy
) -> None:
    targets = [{"id": i, "weight": w, "blob": "x" * w * 1000} for i, w in enumerate(weights)]
    config = ChunkConfig(chunk_size=chunk_size, max_memory_mb=0.05, max_concurrent_chunks=1)
    processor = ChunkProcessor(config)
    chunks = processor.create_chunks(iter(targets), strategy)
    assert [t for chunk in chunks for t in chunk] == targets
    assert all(chunk for chunk in chunks)
    if strategy in (ChunkStrategy.FIXED, ChunkStrategy.MEMORY_BASED):
        assert all(len(chunk) <= chunk_size for chunk in chunks)
    if strategy is ChunkStrategy.WEIGHTED:  # within budget unless a single heavy target
        assert all(sum(t["weight"] for t in c) <= chunk_size or len(c) == 1 for c in chunks)
