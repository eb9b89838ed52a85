"""Seed 002's BatchProcessor.process_targets on the bulk engine: seed examples, every mode
and strategy, isolation, callbacks, storage, memory, shutdown, bad input."""

from __future__ import annotations

import asyncio
import json
import os
import threading
from pathlib import Path
from typing import Any

import pytest

from batchpilot._core.events import BatchRecord
from batchpilot.chunked import (
    BatchProcessor,
    ChunkConfig,
    ChunkStrategy,
    ItemFailure,
    MemoryMonitor,
    ProcessingMode,
)
from batchpilot.errors import ClosedError
from batchpilot.testing import FakeClock

pytestmark = pytest.mark.timeout(30)


def _config(tmp_path: Path, **overrides: Any) -> ChunkConfig:
    return ChunkConfig(storage_dir=tmp_path, **overrides)


def _targets(count: int) -> list[dict[str, int]]:
    return [{"id": i} for i in range(count)]


# -- the seed's examples -------------------------------------------------------


@pytest.mark.asyncio
async def test_seed_basic_example_parallel_adaptive(tmp_path: Path) -> None:
    config = ChunkConfig(chunk_size=100, max_memory_mb=256, max_concurrent_chunks=2)
    config.storage_dir = tmp_path
    processor = BatchProcessor(config)

    async def process_target(target: dict[str, int]) -> dict[str, str]:
        return {"result": f"Processed {target['id']}"}

    results = await processor.process_targets(
        targets=_targets(1000),
        processor_func=process_target,
        mode=ProcessingMode.PARALLEL,
        strategy=ChunkStrategy.ADAPTIVE,
    )
    assert results == [{"result": f"Processed {i}"} for i in range(1000)]
    stats = processor.stats.to_dict()
    assert (stats["processed_targets"], stats["failed_targets"]) == (1000, 0)
    assert (stats["mode"], stats["strategy"], stats["workers"]) == ("parallel", "adaptive", 2)
    assert processor.result_storage.load_results(stats["run_id"]) == results


@pytest.mark.asyncio
async def test_seed_memory_intensive_example_sequential_memory_based(tmp_path: Path) -> None:
    config = _config(
        tmp_path, chunk_size=50, max_memory_mb=128, strategy=ChunkStrategy.MEMORY_BASED
    )
    processor = BatchProcessor(config)
    targets = [b"m" * 1000 for _ in range(120)]
    results = await processor.process_targets(
        targets=targets,
        processor_func=len,
        mode=ProcessingMode.SEQUENTIAL,
        strategy=ChunkStrategy.MEMORY_BASED,
    )
    assert results == [1000] * 120
    assert processor.stats.chunk_sizes == [50, 50, 20]
    assert processor.stats.workers == 1


@pytest.mark.asyncio
async def test_seed_streaming_example_reads_a_generator_lazily(tmp_path: Path) -> None:
    config = _config(tmp_path, chunk_size=100, enable_result_persistence=True, result_format="json")
    processor = BatchProcessor(config)
    produced = []

    def large_dataset() -> Any:
        for i in range(1000):
            produced.append(i)
            yield i

    def streaming_processor(target: int) -> int:
        return target * target

    results = await processor.process_targets(
        targets=large_dataset(),
        processor_func=streaming_processor,
        mode=ProcessingMode.STREAMING,
        strategy=ChunkStrategy.TIME_BASED,
    )
    assert results == [i * i for i in range(1000)]
    assert len(produced) == 1000
    assert processor.stats.total_targets is None
    run_id = processor.stats.run_id
    assert processor.result_storage.load_results(run_id) == results
    assert processor.stats.persisted_chunks == len(processor.result_storage.list_chunks(run_id))


@pytest.mark.asyncio
async def test_generator_is_not_read_ahead_of_the_chunks_in_flight(tmp_path: Path) -> None:
    processor = BatchProcessor(
        _config(
            tmp_path,
            chunk_size=100,
            max_concurrent_chunks=1,
            enable_result_persistence=False,
            cleanup_interval=0,
        )
    )
    pulled: list[int] = []
    seen_when_first_ran: list[int] = []

    def source() -> Any:
        for i in range(10_000):
            pulled.append(i)
            yield i

    def record(target: int) -> int:
        if target == 0:
            seen_when_first_ran.append(len(pulled))
        return target

    results = await processor.process_targets(source(), record, ProcessingMode.SEQUENTIAL)
    assert len(results) == 10_000
    assert seen_when_first_ran[0] <= 2 * 100  # at most the chunks in flight


# -- every mode and strategy, with error isolation ------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("mode", list(ProcessingMode))
@pytest.mark.parametrize("strategy", list(ChunkStrategy))
@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_every_mode_and_strategy_isolates_the_bad_target(
    tmp_path: Path, mode: ProcessingMode, strategy: ChunkStrategy, kind: str
) -> None:
    processor = BatchProcessor(_config(tmp_path, chunk_size=4, max_concurrent_chunks=3))

    def work(target: dict[str, int]) -> int:
        if target["id"] == 7:
            raise ValueError("bad target 7")
        return target["id"] * 10

    async def awork(target: dict[str, int]) -> int:
        await asyncio.sleep(0)
        return work(target)

    results = await processor.process_targets(
        _targets(23), work if kind == "sync" else awork, mode, strategy
    )
    assert results == [i * 10 for i in range(23) if i != 7]
    [failure] = processor.failures
    assert isinstance(failure, ItemFailure)
    assert (failure.index, failure.item, str(failure.error)) == (7, {"id": 7}, "bad target 7")
    stats = processor.stats.to_dict()
    assert (stats["successful_targets"], stats["failed_targets"]) == (22, 1)
    assert stats["error_types"] == {"ValueError": 1}
    assert sum(stats["chunk_sizes"]) == 23
    errors = processor.result_storage.load_errors(stats["run_id"])
    assert errors == [{"index": 7, "error_type": "ValueError", "message": "bad target 7"}]


@pytest.mark.asyncio
async def test_a_failing_target_is_called_once_and_its_neighbours_once(tmp_path: Path) -> None:
    processor = BatchProcessor(_config(tmp_path, chunk_size=8))
    calls: list[int] = []

    def work(target: int) -> int:
        calls.append(target)
        if target == 3:
            raise KeyError(target)
        return target

    await processor.process_targets(list(range(8)), work, ProcessingMode.SEQUENTIAL)
    assert sorted(calls) == list(range(8))  # no retries, no bisection re-runs


@pytest.mark.asyncio
async def test_custom_strategy_as_in_the_seed(tmp_path: Path) -> None:
    processor = BatchProcessor(_config(tmp_path))

    def custom_chunking_strategy(targets: list[int]) -> list[list[int]]:
        return [targets[:1], targets[1:]]

    processor.chunk_processor.custom_strategies["custom"] = custom_chunking_strategy
    results = await processor.process_targets([1, 2, 3], str, ProcessingMode.PARALLEL, "custom")
    assert results == ["1", "2", "3"]
    assert processor.stats.chunk_sizes == [1, 2]
    assert processor.stats.strategy == "custom"


@pytest.mark.asyncio
async def test_a_custom_strategy_that_repeats_one_target_and_drops_another_is_refused(
    tmp_path: Path,
) -> None:
    processor = BatchProcessor(_config(tmp_path))
    calls: list[int] = []

    def repeat_first_drop_sixth(targets: list[int]) -> list[list[int]]:
        return [targets[:5], [targets[0]], targets[6:]]

    def tenfold(target: int) -> int:
        calls.append(target)
        return target * 10

    processor.chunk_processor.custom_strategies["sloppy"] = repeat_first_drop_sixth
    with pytest.raises(
        ValueError, match=r"repeats or invents 1 target\(s\) \(0\) and drops 1 target\(s\) \(5\)"
    ):
        await processor.process_targets(list(range(10)), tenfold, ProcessingMode.PARALLEL, "sloppy")
    assert calls == []  # refused before any target ran


# -- modes: real concurrency, order of reporting, hybrid ------------------------


@pytest.mark.asyncio
async def test_parallel_runs_max_concurrent_chunks_at_once(tmp_path: Path) -> None:
    processor = BatchProcessor(_config(tmp_path, chunk_size=1, max_concurrent_chunks=3))
    all_three = threading.Barrier(3, timeout=10)

    def meet(target: int) -> int:
        all_three.wait()  # only passes if three chunks run at the same time
        return target

    assert await processor.process_targets([1, 2, 3], meet, ProcessingMode.PARALLEL) == [1, 2, 3]


@pytest.mark.asyncio
async def test_sequential_runs_one_chunk_at_a_time(tmp_path: Path) -> None:
    processor = BatchProcessor(_config(tmp_path, chunk_size=2, max_concurrent_chunks=4))
    lock = threading.Lock()
    active = [0, 0]  # now, most

    def work(target: int) -> int:
        with lock:
            active[0] += 1
            active[1] = max(active)
        with lock:
            active[0] -= 1
        return target

    await processor.process_targets(list(range(40)), work, ProcessingMode.SEQUENTIAL)
    assert active[1] == 1


@pytest.mark.asyncio
async def test_streaming_reports_chunks_as_they_complete(tmp_path: Path) -> None:
    processor = BatchProcessor(_config(tmp_path, chunk_size=1, max_concurrent_chunks=2))
    second_reported = threading.Event()
    reported: list[int] = []

    def first_waits_for_second(target: int) -> int:
        if target == 0:
            assert second_reported.wait(10)
        return target

    def on_progress(progress: dict[str, Any]) -> None:
        reported.append(progress["processed"])
        second_reported.set()

    processor.progress_tracker.add_callback(on_progress)
    stored: list[list[int]] = []
    processor.result_storage.add_result_processor(stored.append)
    results = await processor.process_targets([0, 1], first_waits_for_second, "streaming")
    assert stored == [[1], [0]]  # completion order
    assert results == [0, 1]  # returned in input order all the same
    assert processor.stats.next_target_index == 2
    assert reported == [1, 2]


@pytest.mark.asyncio
@pytest.mark.parametrize(("reading", "workers"), [(90.0, 2), (150.0, 1), (0.0, 4)])
async def test_hybrid_runs_as_many_chunks_as_memory_headroom_allows(
    tmp_path: Path, reading: float, workers: int
) -> None:
    monitor = MemoryMonitor(100, read_memory_mb=lambda: reading)
    config = _config(tmp_path, chunk_size=1, max_concurrent_chunks=4, max_memory_mb=100)
    processor = BatchProcessor(config, memory_monitor=monitor)
    big = b"x" * (4 * 1024 * 1024)  # a 4 MiB target: 10 MiB headroom fits 2 chunks
    results = await processor.process_targets([big, big, big], len, ProcessingMode.HYBRID)
    assert results == [len(big)] * 3
    assert processor.stats.workers == workers


@pytest.mark.asyncio
async def test_async_targets_run_on_the_callers_loop(tmp_path: Path) -> None:
    processor = BatchProcessor(_config(tmp_path, chunk_size=3))
    caller = asyncio.get_running_loop()
    loops: set[bool] = set()

    async def work(target: int) -> int:
        loops.add(asyncio.get_running_loop() is caller)
        return target

    await processor.process_targets(range(10), work)
    assert loops == {True}


# -- time limits ------------------------------------------------------------------


@pytest.mark.asyncio
async def test_async_target_over_the_time_limit_fails_alone(tmp_path: Path) -> None:
    processor = BatchProcessor(_config(tmp_path, chunk_size=3, max_processing_time=0.05))
    never = asyncio.Event()

    async def work(target: int) -> int:
        if target == 1:
            await never.wait()
        return target

    assert await processor.process_targets([0, 1, 2], work) == [0, 2]
    [failure] = processor.failures
    assert failure.index == 1 and isinstance(failure.error, TimeoutError)


@pytest.mark.asyncio
async def test_slow_sync_targets_are_counted(tmp_path: Path) -> None:
    clock = FakeClock()
    processor = BatchProcessor(_config(tmp_path, max_processing_time=1.0), clock=clock)

    def work(target: int) -> int:
        clock.advance(2.0 if target == 1 else 0.5)
        return target

    assert await processor.process_targets([0, 1, 2], work, "sequential") == [0, 1, 2]
    assert processor.stats.slow_targets == 1
    assert processor.stats.to_dict()["processing_time"] == 3.0


# -- callbacks: progress, result processors, post-processors ------------------------


@pytest.mark.asyncio
async def test_progress_callbacks_get_rates_and_eta(tmp_path: Path) -> None:
    clock = FakeClock()
    processor = BatchProcessor(_config(tmp_path, chunk_size=2), clock=clock)
    snapshots: list[dict[str, Any]] = []

    async def custom_progress_callback(progress: dict[str, Any]) -> None:
        snapshots.append(progress)

    processor.progress_tracker.add_callback(custom_progress_callback)
    # each chunk takes 2 s of fake time; result processors run before progress updates
    processor.result_storage.add_result_processor(lambda results: clock.advance(2.0))
    await processor.process_targets(range(6), str, ProcessingMode.SEQUENTIAL)
    assert [s["processed"] for s in snapshots] == [2, 4, 6]
    assert [s["items_per_second"] for s in snapshots] == [1.0, 1.0, 1.0]
    assert [s["eta_seconds"] for s in snapshots] == [4.0, 2.0, 0.0]
    assert snapshots[-1]["percentage"] == 100.0


@pytest.mark.asyncio
async def test_result_and_post_processors(tmp_path: Path) -> None:
    processor = BatchProcessor(_config(tmp_path, chunk_size=2))
    sent: list[int] = []

    async def result_processor(results: list[int]) -> None:
        for result in results:
            await asyncio.sleep(0)
            sent.append(result)

    async def post_process_results(results: list[int]) -> list[int]:
        return [r + 1 for r in results]

    observed: list[list[int]] = []
    processor.result_storage.add_result_processor(result_processor)
    processor.add_post_processor(post_process_results)
    processor.add_post_processor(observed.append)  # returns None: results kept
    processor.add_post_processor(lambda results: results[::-1])
    results = await processor.process_targets([1, 2, 3], lambda t: t * 10)
    assert sent == [10, 20, 30]
    assert observed == [[11, 21, 31]]
    assert results == [31, 21, 11]
    with pytest.raises(TypeError, match="post-processor"):
        processor.add_post_processor(42)  # type: ignore[arg-type]


@pytest.mark.asyncio
async def test_broken_callbacks_do_not_stop_the_job(tmp_path: Path) -> None:
    processor = BatchProcessor(_config(tmp_path, chunk_size=1))

    def broken(_: Any) -> None:
        raise RuntimeError("monitoring is down")

    processor.progress_tracker.add_callback(broken)
    processor.result_storage.add_result_processor(broken)
    assert await processor.process_targets([1, 2], str) == ["1", "2"]
    assert processor.stats.callback_errors == 4


# -- persistence, memory, error recovery -----------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("result_format", ["json", "pickle", "sqlite"])
async def test_results_persist_per_chunk_in_every_format(
    tmp_path: Path, result_format: str
) -> None:
    config = _config(tmp_path, chunk_size=3, result_format=result_format, compression_enabled=True)
    processor = BatchProcessor(config)
    results = await processor.process_targets(range(10), lambda t: {"v": t})
    storage = processor.result_storage
    run_id = processor.stats.run_id
    assert storage.list_chunks(run_id) == [0, 1, 2, 3]
    assert storage.load_chunk(run_id, 3)["metadata"]["start"] == 9
    assert storage.load_results(run_id) == results


@pytest.mark.asyncio
async def test_persistence_disabled_writes_nothing(tmp_path: Path) -> None:
    processor = BatchProcessor(_config(tmp_path / "out", enable_result_persistence=False))
    assert await processor.process_targets([1], str) == ["1"]
    assert not (tmp_path / "out").exists()
    assert processor.stats.persisted_chunks == 0


@pytest.mark.asyncio
async def test_unstorable_results_are_returned_and_counted(tmp_path: Path) -> None:
    processor = BatchProcessor(_config(tmp_path, chunk_size=1))
    marker = object()
    assert await processor.process_targets([1], lambda t: marker) == [marker]
    assert processor.stats.persistence_errors == 1


@pytest.mark.asyncio
@pytest.mark.parametrize(("reading", "generations"), [(10.0, [1, 1, 1]), (500.0, [2, 1, 2, 1, 1])])
async def test_memory_monitoring_collects_garbage(
    tmp_path: Path, reading: float, generations: list[int]
) -> None:
    collected: list[int] = []
    monitor = MemoryMonitor(
        100, read_memory_mb=lambda: reading, collect=lambda g: collected.append(g) or 0
    )
    config = _config(tmp_path, chunk_size=1, cleanup_interval=2, max_memory_mb=100)
    processor = BatchProcessor(config, memory_monitor=monitor)
    await processor.process_targets(range(6), str, ProcessingMode.SEQUENTIAL)
    # under the limit: a cheap young-generation pass every 2nd chunk; over it, a
    # full collection that frees nothing is not repeated for cleanup_interval chunks,
    # then for twice as many (young passes in between)
    assert collected == generations
    assert processor.stats.gc_collections == len(generations)
    assert processor.stats.peak_memory_mb == reading
    assert processor.memory_monitor.get_memory_stats()["gc_collections"] == len(generations)


@pytest.mark.asyncio
async def test_without_error_recovery_the_first_failure_is_raised(tmp_path: Path) -> None:
    processor = BatchProcessor(_config(tmp_path, chunk_size=2, enable_error_recovery=False))

    def work(target: int) -> int:
        if target == 5:
            raise ZeroDivisionError("target 5")
        return target

    with pytest.raises(ZeroDivisionError, match="target 5"):
        await processor.process_targets(range(10), work, ProcessingMode.SEQUENTIAL)
    storage = processor.result_storage
    assert storage.load_results(processor.stats.run_id) == [0, 1, 2, 3]
    assert processor.stats.interrupted is True
    assert processor.stats.next_target_index == 4
    assert processor.stats.end_time is not None


# -- dynamic configuration and shutdown ------------------------------------------------


@pytest.mark.asyncio
async def test_dynamic_configuration_applies_to_later_chunks(tmp_path: Path) -> None:
    processor = BatchProcessor(_config(tmp_path, chunk_size=8))

    def adaptive_configuration(progress: dict[str, Any]) -> None:
        if progress["chunks_completed"] == 1:
            processor.config.chunk_size //= 2

    processor.progress_tracker.add_callback(adaptive_configuration)
    results = await processor.process_targets(range(40), str, ProcessingMode.SEQUENTIAL)
    assert len(results) == 40
    assert processor.stats.chunk_sizes == [8] + [4] * 8


@pytest.mark.asyncio
async def test_shutdown_stops_at_a_chunk_boundary_with_stored_results_intact(
    tmp_path: Path,
) -> None:
    processor = BatchProcessor(_config(tmp_path, chunk_size=5))

    def stop_after_first_chunk(progress: dict[str, Any]) -> None:
        processor.shutdown()

    processor.progress_tracker.add_callback(stop_after_first_chunk)
    results = await processor.process_targets(range(100), str, ProcessingMode.SEQUENTIAL)
    stats = processor.stats.to_dict()
    assert stats["interrupted"] is True
    assert stats["next_target_index"] == 5  # sequential: nothing planned ahead
    assert results == [str(i) for i in range(5)]
    assert processor.result_storage.load_results(stats["run_id"]) == results
    with pytest.raises(ClosedError):
        await processor.process_targets([1], str)
    processor.shutdown()  # idempotent


@pytest.mark.asyncio
async def test_cancelling_the_task_keeps_stored_chunks_intact(tmp_path: Path) -> None:
    processor = BatchProcessor(_config(tmp_path, chunk_size=2, max_concurrent_chunks=1))
    release = threading.Event()
    first_stored = asyncio.Event()

    def work(target: int) -> int:
        if target >= 2:
            release.wait(10)
        return target

    processor.result_storage.add_result_processor(lambda results: first_stored.set())
    task = asyncio.create_task(processor.process_targets(range(10), work, "sequential"))
    await asyncio.wait_for(first_stored.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    release.set()
    storage = processor.result_storage
    assert storage.load_results(processor.stats.run_id) == [0, 1]
    assert processor.stats.interrupted is True
    assert processor.stats.next_target_index == 2  # chunk 0 done, chunk 1 was not


# -- bad input, stats ------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("targets", "func", "mode", "strategy", "error"),
    [
        (42, str, "parallel", None, TypeError),
        ("abc", str, "parallel", None, TypeError),
        ([1], "str", "parallel", None, TypeError),
        ([1], str, "sideways", None, ValueError),
        ([1], str, "parallel", "no_such_strategy", ValueError),
    ],
)
async def test_bad_input_fails_before_any_work(
    tmp_path: Path, targets: Any, func: Any, mode: Any, strategy: Any, error: type[Exception]
) -> None:
    processor = BatchProcessor(_config(tmp_path))
    with pytest.raises(error):
        await processor.process_targets(targets, func, mode, strategy)
    assert processor.stats.completed_chunks == 0
    assert not any(tmp_path.iterdir())


def test_bad_config_type_is_rejected() -> None:
    with pytest.raises(TypeError, match="ChunkConfig"):
        BatchProcessor({"chunk_size": 5})  # type: ignore[arg-type]


@pytest.mark.asyncio
async def test_a_second_concurrent_run_is_refused(tmp_path: Path) -> None:
    processor = BatchProcessor(_config(tmp_path))
    release = threading.Event()
    first = asyncio.create_task(processor.process_targets([1], lambda t: release.wait(10)))
    await asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="already running"):
        await processor.process_targets([1], str)
    release.set()
    assert await first == [True]


@pytest.mark.asyncio
async def test_stats_to_dict_is_json_and_has_every_key(tmp_path: Path) -> None:
    processor = BatchProcessor(_config(tmp_path, chunk_size=4))
    await processor.process_targets(range(10), str)
    stats = json.loads(json.dumps(processor.stats.to_dict()))
    expected = {
        "run_id", "mode", "strategy", "total_targets", "processed_targets",
        "successful_targets", "failed_targets", "slow_targets", "completed_chunks",
        "failed_chunks", "chunk_sizes", "chunk_times", "error_types", "persisted_chunks",
        "persistence_errors", "callback_errors", "gc_collections", "peak_memory_mb",
        "workers", "interrupted", "next_target_index", "start_time", "end_time",
        "processing_time", "targets_per_second", "success_rate", "error_rate",
        "average_chunk_size", "average_chunk_time",
    }  # fmt: skip
    assert set(stats) == expected
    assert stats["average_chunk_size"] == 10 / 3
    assert stats["next_target_index"] == 10 and stats["interrupted"] is False
    assert "BatchProcessor(" in repr(processor)


@pytest.mark.asyncio
async def test_empty_input_and_disabled_tracking(tmp_path: Path) -> None:
    config = _config(tmp_path, enable_progress_tracking=False, enable_memory_monitoring=False)
    processor = BatchProcessor(config)
    seen: list[Any] = []
    processor.progress_tracker.add_callback(seen.append)
    assert await processor.process_targets([], str) == []
    assert await processor.process_targets([1, 2], str) == ["1", "2"]
    assert seen == []  # progress tracking off: no callbacks
    assert processor.stats.gc_collections == 0
    assert processor.stats.to_dict()["processed_targets"] == 2


@pytest.mark.asyncio
async def test_listeners_get_one_record_per_chunk_with_real_counts(tmp_path: Path) -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    from batchpilot.metrics import PrometheusMetrics

    records: list[BatchRecord] = []
    registry = CollectorRegistry()
    processor = BatchProcessor(
        _config(tmp_path, chunk_size=4),
        listeners=[records.append, PrometheusMetrics(registry)],
    )

    def work(target: int) -> int:
        if target == 5:
            raise LookupError(target)
        return target

    await processor.process_targets(range(10), work, ProcessingMode.SEQUENTIAL)
    assert [(r.size, r.succeeded, r.failed) for r in records] == [(4, 4, 0), (4, 3, 1), (2, 2, 0)]
    assert records[1].error_types == {"LookupError": 1}
    assert {(r.engine, r.name) for r in records} == {("bulk", "chunked")}
    assert b'name="chunked"' in generate_latest(registry)
    with pytest.raises(TypeError, match="listener"):
        BatchProcessor(listeners=[42])  # type: ignore[list-item]


def square_in_worker(target: int) -> tuple[int, int]:
    if target == 3:
        raise ArithmeticError("target 3")
    return target * target, os.getpid()


@pytest.mark.asyncio
@pytest.mark.timeout(60)
async def test_processes_executor_runs_targets_in_other_processes(tmp_path: Path) -> None:
    config = _config(tmp_path, chunk_size=3, max_concurrent_chunks=2, executor="processes")
    processor = BatchProcessor(config)
    results = await processor.process_targets(range(10), square_in_worker, "parallel")
    assert [square for square, _ in results] == [t * t for t in range(10) if t != 3]
    assert os.getpid() not in {pid for _, pid in results}
    [failure] = processor.failures
    assert (failure.index, str(failure.error)) == (3, "target 3")
    assert processor.result_storage.load_errors(processor.stats.run_id)[0]["index"] == 3


@pytest.mark.asyncio
async def test_other_process_executors_need_a_picklable_plain_function(tmp_path: Path) -> None:
    processor = BatchProcessor(_config(tmp_path, executor="processes"))

    async def remote(target: int) -> int:
        return target

    with pytest.raises(TypeError, match="picklable"):
        await processor.process_targets([1], lambda t: t, "parallel")
    with pytest.raises(TypeError, match="async"):
        await processor.process_targets([1], remote, "streaming")
    assert processor.stats.completed_chunks == 0
    # SEQUENTIAL always runs in-process, so anything goes there
    assert await processor.process_targets([1], lambda t: t + 1, "sequential") == [2]


@pytest.mark.asyncio
async def test_time_based_sizes_are_exact_in_sequential_mode(tmp_path: Path) -> None:
    clock = FakeClock()
    config = _config(tmp_path, chunk_size=10, target_chunk_time=1.0, max_chunk_size=100)
    processor = BatchProcessor(config, clock=clock)

    def ten_ms_each(target: int) -> int:
        clock.advance(0.01)  # 100 targets take the 1 s target
        return target

    await processor.process_targets(range(500), ten_ms_each, "sequential", "time_based")
    assert processor.stats.chunk_sizes == [10, 20, 40, 80, 100, 100, 100, 50]


@pytest.mark.asyncio
async def test_progress_bar_counts_targets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    processor = BatchProcessor(_config(tmp_path, chunk_size=4, progress_bar=True))
    await processor.process_targets(range(10), str, "sequential")
    assert "10/10" in capsys.readouterr().err
    processor.config.progress_bar = False
    await processor.process_targets(range(10), str, "sequential")
    assert capsys.readouterr().err == ""


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("cleanup_interval", "chunks", "full_collections"),
    [
        (5, 20, 3),  # after 0, 5 and 15 completed chunks: the wait starts at 5, doubles
        (0, 100, 7),  # after 0, 1, 3, 7, 15, 31 and 63: 0 still backs off, from 1
    ],
)
async def test_full_gc_backs_off_when_memory_stays_over_the_limit(
    tmp_path: Path, cleanup_interval: int, chunks: int, full_collections: int
) -> None:
    """A process already over the limit (libraries loaded) must not pay a full gc per chunk."""
    generations: list[int] = []

    def collect(generation: int) -> int:
        generations.append(generation)
        return 0

    monitor = MemoryMonitor(100, read_memory_mb=lambda: 400.0, collect=collect)
    config = _config(
        tmp_path,
        chunk_size=10,
        cleanup_interval=cleanup_interval,
        enable_result_persistence=False,
    )
    processor = BatchProcessor(config, memory_monitor=monitor)
    results = await processor.process_targets(
        targets=list(range(10 * chunks)),
        processor_func=lambda x: x,
        mode=ProcessingMode.SEQUENTIAL,
        strategy=ChunkStrategy.FIXED,
    )
    assert results == list(range(10 * chunks))
    assert generations.count(2) == full_collections


@pytest.mark.asyncio
async def test_a_full_gc_that_frees_memory_runs_again_after_the_next_chunk(
    tmp_path: Path,
) -> None:
    class Heap:
        """500 MiB, of which each collection frees 50 that the next chunk takes again."""

        def __init__(self) -> None:
            self.generations: list[int] = []
            self.just_collected = False

        def read(self) -> float:
            freed, self.just_collected = self.just_collected, False
            return 450.0 if freed else 500.0

        def collect(self, generation: int) -> int:
            self.generations.append(generation)
            self.just_collected = True
            return 0

    heap = Heap()
    monitor = MemoryMonitor(100, read_memory_mb=heap.read, collect=heap.collect)
    config = _config(tmp_path, chunk_size=1, cleanup_interval=5, enable_result_persistence=False)
    processor = BatchProcessor(config, memory_monitor=monitor)
    await processor.process_targets(range(4), str, ProcessingMode.SEQUENTIAL)
    assert heap.generations == [2, 2, 2, 2]
