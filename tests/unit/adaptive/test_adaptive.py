"""Seed 004 on the bulk engine: sizing strategies with scripted durations (exact
sequences), the processor's four methods and stats, and the manager's atomic batch
inserts into a real SQLite file through batchpilot.db.Database."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from batchpilot import Fixed
from batchpilot.adaptive import (
    CHEMICAL_SOURCE_DEFAULTS,
    DEFAULT_MEMORY_LIMIT,
    AdaptiveBatchProcessor,
    BatchProcessingManager,
    BatchProcessingStrategy,
    ChemicalDataBatchStrategy,
    ItemFailure,
)
from batchpilot.bulk import HISTORY_LIMIT
from batchpilot.db import Database
from batchpilot.errors import BatchFailedError
from batchpilot.testing import FakeClock

pytestmark = pytest.mark.timeout(30)

GIB = 1024 * 1024 * 1024


def _quiet_memory() -> float:
    return 100.0 * 1024 * 1024


# -- BatchProcessingStrategy -------------------------------------------------------


def test_strategy_defaults_are_the_seeds() -> None:
    strategy = BatchProcessingStrategy()
    assert (
        strategy.initial_batch_size,
        strategy.min_batch_size,
        strategy.max_batch_size,
        strategy.target_duration,
        strategy.memory_limit,
    ) == (100, 10, 1000, 5.0, GIB)
    assert DEFAULT_MEMORY_LIMIT == GIB
    assert strategy.current_batch_size == strategy.get_next_batch_size() == 100


def test_strategy_grows_capped_per_step_then_holds_the_target_duration() -> None:
    strategy = BatchProcessingStrategy(read_memory_bytes=_quiet_memory)
    sizes = []
    for _ in range(5):  # 0.01 s per item: 500 items take the 5 s target
        size = strategy.next_size()
        sizes.append(size)
        strategy.observe(size, 0.01 * size)
    assert sizes == [100, 200, 400, 500, 500]


def test_strategy_shrinks_at_once_when_batches_get_slow() -> None:
    strategy = BatchProcessingStrategy(initial_batch_size=400, read_memory_bytes=_quiet_memory)
    strategy.observe(400, 20.0)  # 4x over the 5 s target
    assert strategy.next_size() == 100
    strategy.observe(100, 5.0)  # the fit now says 0.05 s per item: 100 items
    assert strategy.next_size() == 100


def test_strategy_halves_after_a_failed_batch_and_over_the_memory_limit() -> None:
    memory = [0.0]
    strategy = BatchProcessingStrategy(
        initial_batch_size=400, memory_limit=GIB, read_memory_bytes=lambda: memory[0]
    )
    strategy.observe(400, 5.0, ok=False)
    assert strategy.next_size() == 200
    memory[0] = 2.0 * GIB
    strategy.observe(200, 5.0)  # on target, but the process is over the limit
    assert strategy.next_size() == 100
    memory[0] = 0.0
    sizes = []
    for _ in range(4):
        strategy.observe(strategy.next_size(), 1.0, ok=False)
        sizes.append(strategy.next_size())
    assert sizes == [50, 25, 12, 10]  # never below min_batch_size


@pytest.mark.parametrize(
    "kwargs",
    [
        {"initial_batch_size": 5},
        {"min_batch_size": 0},
        {"max_batch_size": 5},
        {"target_duration": 0.0},
        {"memory_limit": 0},
        {"initial_batch_size": 1.5},
    ],
)
def test_strategy_rejects_invalid_settings(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        BatchProcessingStrategy(**kwargs)


# -- ChemicalDataBatchStrategy ------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "initial", "target"),
    [("generic", 100, 5.0), ("chembl", 50, 10.0), ("pubchem", 200, 8.0), ("ChEMBL", 50, 10.0)],
)
def test_chemical_per_source_defaults(source: str, initial: int, target: float) -> None:
    strategy = ChemicalDataBatchStrategy(source)
    assert (strategy.current_batch_size, strategy.target_duration) == (initial, target)
    assert strategy.data_source == source.lower()
    assert CHEMICAL_SOURCE_DEFAULTS[source.lower()] == {
        "initial_batch_size": initial,
        "target_duration": target,
    }


def test_chemical_explicit_arguments_win_and_defaults_fit_the_bounds() -> None:
    explicit = ChemicalDataBatchStrategy("chembl", initial_batch_size=300, target_duration=2.0)
    assert (explicit.current_batch_size, explicit.target_duration) == (300, 2.0)
    assert ChemicalDataBatchStrategy("pubchem", max_batch_size=150).current_batch_size == 150
    assert isinstance(ChemicalDataBatchStrategy(), BatchProcessingStrategy)


def test_chemical_unknown_source_is_a_clear_value_error() -> None:
    with pytest.raises(ValueError, match=r"unknown data_source 'zinc'.*chembl"):
        ChemicalDataBatchStrategy("zinc")


def test_chemical_is_conservative_with_unstable_times_and_heavy_items() -> None:
    memory = [0.0]
    strategy = ChemicalDataBatchStrategy(
        "generic", initial_batch_size=100, read_memory_bytes=lambda: memory[0]
    )
    for per_item in (0.05, 0.05, 0.05, 0.05):  # stable and on target: stays at 100
        strategy.observe(100, per_item * 100)
    assert strategy.next_size() == 100
    strategy.observe(100, 0.2 * 100)  # 4x slower: the model shrinks, then 5% more
    plain = BatchProcessingStrategy(initial_batch_size=100, read_memory_bytes=lambda: 0.0)
    for per_item in (0.05, 0.05, 0.05, 0.05, 0.2):
        plain.observe(100, per_item * 100)
    assert strategy.next_size() == int(plain.next_size() * 0.95)
    heavy = ChemicalDataBatchStrategy("generic", read_memory_bytes=lambda: memory[0])
    heavy.observe(100, 5.0)
    memory[0] = 200 * 1024 * 1024.0  # 2 MiB more per item in the next batch
    heavy.observe(100, 5.0)
    assert heavy.next_size() == 90


# -- AdaptiveBatchProcessor -------------------------------------------------------


def process_batch(items: list[int]) -> list[int]:
    return [item * 2 for item in items]


def test_processor_defaults_follow_the_seed() -> None:
    processor = AdaptiveBatchProcessor(process_batch)
    assert processor.max_workers == os.cpu_count()
    assert isinstance(processor.strategy, BatchProcessingStrategy)
    assert processor.strategy.next_size() == 100
    assert processor.strategy.min_batch_size == 10  # type: ignore[attr-defined]
    assert processor.strategy.max_batch_size == 1000  # type: ignore[attr-defined]


def test_seed_basic_usage_parallel() -> None:
    processor = AdaptiveBatchProcessor(
        process_func=process_batch,
        initial_batch_size=100,
        min_batch_size=10,
        max_batch_size=500,
        max_workers=4,
    )
    items = list(range(5000))
    assert processor.process_items_parallel(items) == [i * 2 for i in items]
    history = processor.get_stats()["batch_size_history"]
    assert history[0] == 100 and sum(history) == 5000
    assert all(10 <= size <= 500 for size in history)


def test_batch_size_history_keeps_the_last_history_limit_batches_across_calls() -> None:
    processor = AdaptiveBatchProcessor(lambda items: items, strategy=Fixed(1), max_workers=1)
    first = HISTORY_LIMIT // 2 + 1
    assert processor.process_items([7] * first) == [7] * first
    assert processor.process_items(list(range(HISTORY_LIMIT))) == list(range(HISTORY_LIMIT))
    stats = processor.get_stats()
    assert stats["batch_count"] == first + HISTORY_LIMIT
    assert len(stats["batch_size_history"]) == HISTORY_LIMIT


def test_sequential_sizes_adapt_from_measured_durations() -> None:
    clock = FakeClock()

    def costly(items: list[int]) -> list[int]:
        clock.advance(0.01 * len(items))  # 500 items hit the 5 s target
        return items

    # the process's own memory stays out of it: a test process that has imported torch
    # and Ray holds more than the 1 GiB default limit, which halves every batch
    strategy = BatchProcessingStrategy(read_memory_bytes=_quiet_memory)
    processor = AdaptiveBatchProcessor(costly, strategy=strategy, clock=clock)
    assert processor.process_items(range(3000)) == list(range(3000))
    # sequential batches are sized after the previous one finished: exact sequence
    assert processor.get_stats()["batch_size_history"] == [100, 200, 400, 500, 500, 500, 500, 300]
    assert processor.get_stats()["total_duration"] == 30.0
    assert processor.get_stats()["items_per_second"] == 100.0


@pytest.mark.asyncio
async def test_seed_async_usage_both_methods() -> None:
    processor = AdaptiveBatchProcessor(process_func=process_batch, initial_batch_size=100)
    items = list(range(1000))
    assert await processor.process_items_async(items) == [i * 2 for i in items]
    assert await processor.process_items_parallel_async(items) == [i * 2 for i in items]
    assert processor.get_stats()["total_items_processed"] == 2000


@pytest.mark.asyncio
async def test_async_process_func_is_supported() -> None:
    async def fetch(items: list[int]) -> list[int]:
        await asyncio.sleep(0)
        return [i + 1 for i in items]

    processor = AdaptiveBatchProcessor(fetch, initial_batch_size=10, max_workers=3)
    assert processor.process_items_parallel(range(50)) == list(range(1, 51))
    assert await processor.process_items_async(range(3)) == [1, 2, 3]


def test_a_bad_item_fails_alone_and_is_reported() -> None:
    def fragile(items: list[int]) -> list[int]:
        if 37 in items:
            raise ValueError("item 37 is malformed")
        return items

    processor = AdaptiveBatchProcessor(fragile, initial_batch_size=10, max_workers=2)
    assert processor.process_items_parallel(range(100)) == [i for i in range(100) if i != 37]
    [failure] = processor.failures
    assert isinstance(failure, ItemFailure)
    assert (failure.index, failure.item) == (37, 37)
    stats = processor.get_stats()
    assert (stats["total_error_count"], stats["total_success_count"]) == (1, 99)
    assert stats["error_rate"] == 0.01
    assert stats["error_types"] == {"ValueError": 1}


def test_a_wrong_result_count_fails_the_whole_batch() -> None:
    processor = AdaptiveBatchProcessor(lambda items: items[:-1], strategy=Fixed(10), max_workers=1)
    assert processor.process_items(range(20)) == []
    assert len(processor.failures) == 20
    assert all(isinstance(f.error, BatchFailedError) for f in processor.failures)


def test_stats_have_every_documented_key() -> None:
    processor = AdaptiveBatchProcessor(process_batch, initial_batch_size=10, max_workers=2)
    processor.process_items(range(30))
    stats = processor.get_stats()
    assert set(stats) == {
        "total_items_processed",
        "total_success_count",
        "total_error_count",
        "total_duration",
        "batch_count",
        "avg_batch_size",
        "current_batch_size",
        "items_per_second",
        "error_rate",
        "error_types",
        "batch_size_history",
        "max_workers",
        "memory_usage_mb",
        "peak_memory_mb",
    }
    assert stats["total_items_processed"] == 30
    assert stats["batch_count"] == len(stats["batch_size_history"])
    assert stats["avg_batch_size"] == 30 / stats["batch_count"]
    assert stats["memory_usage_mb"] > 0 and stats["peak_memory_mb"] >= stats["memory_usage_mb"]
    assert stats["max_workers"] == 2
    assert "AdaptiveBatchProcessor(" in repr(processor)


def test_empty_input_processes_nothing() -> None:
    processor = AdaptiveBatchProcessor(process_batch)
    assert processor.process_items([]) == []
    assert processor.get_stats()["batch_count"] == 0


@pytest.mark.parametrize(
    ("args", "kwargs", "error"),
    [
        (("not callable",), {}, TypeError),
        ((process_batch,), {"strategy": "fast"}, TypeError),
        ((process_batch,), {"initial_batch_size": 5}, ValueError),
        ((process_batch,), {"max_workers": 0}, ValueError),
    ],
)
def test_processor_rejects_bad_arguments(
    args: tuple[Any, ...], kwargs: dict[str, Any], error: type[Exception]
) -> None:
    with pytest.raises(error):
        AdaptiveBatchProcessor(*args, **kwargs)


def test_non_iterable_items_fail_before_any_work() -> None:
    called: list[Any] = []
    processor = AdaptiveBatchProcessor(lambda items: called.append(items) or items)
    with pytest.raises(TypeError, match="iterable"):
        processor.process_items(42)  # type: ignore[arg-type]
    assert called == []


# -- BatchProcessingManager -------------------------------------------------------


@pytest.fixture
def db(tmp_path: Path) -> Any:
    database = Database(f"sqlite:///{tmp_path / 'molecules.db'}")
    database.create_table("transform_molecules", {"name": str, "weight": float}, primary_key="name")
    yield database
    database.close()


def _rows(tmp_path: Path) -> list[tuple[str, float]]:
    with sqlite3.connect(tmp_path / "molecules.db") as connection:
        return connection.execute(
            "SELECT name, weight FROM transform_molecules ORDER BY name"
        ).fetchall()


def molecule_transform_function(molecules: list[int]) -> list[dict[str, Any]]:
    return [{"name": f"mol{m:04d}", "weight": m * 1.5} for m in molecules]


def test_seed_manager_example_inserts_every_batch(db: Database, tmp_path: Path) -> None:
    manager = BatchProcessingManager(
        db=db, max_workers=4, adaptive_batch_sizing=True, parallel_processing=True
    )
    results = manager.process_items(
        items=list(range(300)),
        operation="transform_molecules",
        data_source="chembl",
        process_func=molecule_transform_function,
        initial_batch_size=50,
    )
    assert results == molecule_transform_function(list(range(300)))
    assert _rows(tmp_path) == [(r["name"], r["weight"]) for r in results]
    stats = manager.get_stats()
    line = (
        f"Processed {stats['total_items_processed']} items in {stats['total_duration']:.2f} seconds"
    )
    assert line.startswith("Processed 300 items in ")
    assert stats["batch_size_history"][0] == 50
    assert stats["operations"]["transform_molecules"]["total_items_processed"] == 300
    assert "BatchProcessingManager(" in repr(manager)


def test_a_failed_batch_leaves_no_partial_rows(db: Database, tmp_path: Path) -> None:
    # "mol0003" comes twice in one batch: the insert of that batch fails at the
    # duplicate and is rolled back; bisection then inserts the healthy items, so the
    # first "mol0003" succeeds and only the duplicate fails. Without atomicity the
    # first half-insert would have left "mol0003" behind and failed it as well.
    def with_duplicate(items: list[int]) -> list[dict[str, Any]]:
        return [{"name": f"mol{3 if i == 6 else i:04d}", "weight": float(i)} for i in items]

    manager = BatchProcessingManager(db, max_workers=1, adaptive_batch_sizing=False)
    results = manager.process_items(range(8), "transform_molecules", "generic", with_duplicate, 8)
    assert [f.index for f in manager.failures] == [6]
    assert len(results) == 7
    assert [name for name, _ in _rows(tmp_path)] == [f"mol{i:04d}" for i in (0, 1, 2, 3, 4, 5, 7)]
    assert dict(_rows(tmp_path))["mol0003"] == 3.0


def test_fixed_sequential_manager(db: Database, tmp_path: Path) -> None:
    threads: set[int] = set()

    def remember_thread(items: list[int]) -> list[dict[str, Any]]:
        threads.add(threading.get_ident())
        return molecule_transform_function(items)

    manager = BatchProcessingManager(
        db, max_workers=4, adaptive_batch_sizing=False, parallel_processing=False
    )
    manager.process_items(range(95), "transform_molecules", "pubchem", remember_thread, 20)
    stats = manager.get_stats()
    assert stats["batch_size_history"] == [20, 20, 20, 20, 15]
    assert len(threads) == 1
    assert len(_rows(tmp_path)) == 95


def test_manager_without_process_func_inserts_the_items(db: Database, tmp_path: Path) -> None:
    manager = BatchProcessingManager(db, max_workers=2)
    records = [{"name": f"m{i}", "weight": 1.0} for i in range(25)]
    assert manager.process_items(records, "transform_molecules") == records
    assert len(_rows(tmp_path)) == 25


def test_manager_wrong_record_count_inserts_nothing_for_that_batch(
    db: Database, tmp_path: Path
) -> None:
    manager = BatchProcessingManager(db, max_workers=1, adaptive_batch_sizing=False)
    results = manager.process_items(
        range(10), "transform_molecules", process_func=lambda items: [], initial_batch_size=5
    )
    assert results == []
    assert len(manager.failures) == 10
    assert _rows(tmp_path) == []
    assert manager.get_stats()["total_error_count"] == 10


def test_manager_rejects_bad_input_before_any_work(db: Database, tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="transaction"):
        BatchProcessingManager(object())
    manager = BatchProcessingManager(db)
    with pytest.raises(ValueError, match="data_source"):
        manager.process_items([1], "transform_molecules", "zinc")
    with pytest.raises(ValueError, match="operation"):
        manager.process_items([1], "")
    with pytest.raises(TypeError, match="process_func"):
        manager.process_items([1], "transform_molecules", process_func=42)  # type: ignore[arg-type]
    assert _rows(tmp_path) == []


def test_listeners_see_every_batch() -> None:
    from batchpilot._core.events import BatchRecord

    records: list[BatchRecord] = []
    processor = AdaptiveBatchProcessor(
        process_batch, strategy=Fixed(10), max_workers=2, listeners=[records.append]
    )
    processor.process_items_parallel(range(35))
    assert sorted(r.size for r in records) == [5, 10, 10, 10]
    assert {(r.engine, r.name) for r in records} == {("bulk", "adaptive")}
    with pytest.raises(TypeError, match="listener"):
        AdaptiveBatchProcessor(process_batch, listeners=[42])  # type: ignore[list-item]


def test_manager_passes_listeners_on(db: Database) -> None:
    records: list[Any] = []
    manager = BatchProcessingManager(
        db, adaptive_batch_sizing=False, parallel_processing=False, listeners=[records.append]
    )
    manager.process_items(
        range(30), "transform_molecules", "generic", molecule_transform_function, 10
    )
    assert [r.size for r in records] == [10, 10, 10]


def test_progress_bar_is_the_engines(capsys: pytest.CaptureFixture[str]) -> None:
    AdaptiveBatchProcessor(process_batch, progress_bar=True).process_items(range(35))
    assert "35/35" in capsys.readouterr().err
