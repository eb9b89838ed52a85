"""`BatchProcessor` (seed 002): chunks targets, runs them on the bulk engine, keeps the books.

The choices it makes where the seed is silent are listed in the docstring of
`batchpilot.chunked`.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sized
from itertools import chain
from typing import Any

from .._core.callables import is_async_callable
from .._core.clock import SYSTEM_CLOCK, Clock
from .._core.events import BatchListener, BatchRecord, as_listener, notify
from .._core.memory import MemoryMonitor
from ..bulk import ItemFailure, map_batches
from ..bulk.executors import resolve_executor
from ..errors import ClosedError
from .callbacks import check_callable
from .config import ChunkConfig, ChunkStrategy, ProcessingMode
from .planner import ChunkProcessor
from .progress import ProgressTracker
from .runner import ChunkOutcome, ChunkRunner, PlannedChunk
from .stats import ProcessingStats
from .storage import ResultStorage

__all__ = ["BatchProcessor", "PostProcessor"]

_log = logging.getLogger("batchpilot.chunked")

_USEFUL_GC_MB = 1.0
"""A full garbage collection that frees less (MiB) is not repeated on the next chunk."""

PostProcessor = Callable[[list[Any]], Any]


class BatchProcessor:
    """Seed 002's high-level processor of huge target lists.

    Attributes:
        config: the `ChunkConfig` (may be changed between and during runs).
        chunk_processor: the `ChunkProcessor` (``custom_strategies`` lives here).
        memory_monitor: the `MemoryMonitor` (limit: ``config.max_memory_mb``).
        progress_tracker: the `ProgressTracker` (``add_callback`` lives here).
        result_storage: the `ResultStorage` (``add_result_processor`` lives here).
        stats: `ProcessingStats` of the latest run (``stats.to_dict()``).
        failures: `ItemFailure` per failed target of the latest run.

    Args:
        config: settings; None uses the defaults.
        memory_monitor: replaces the default monitor (e.g. a scripted reading).
        clock: time source of durations, rates and ETA.
        listeners: get one `BatchRecord` (``engine="bulk"``, ``name="chunked"``)
            per finished chunk, e.g. `batchpilot.metrics.PrometheusMetrics`.

    Example:
        >>> import asyncio
        >>> processor = BatchProcessor(ChunkConfig(chunk_size=2, enable_result_persistence=False))
        >>> asyncio.run(processor.process_targets([1, 2, 3], lambda t: t * 10))
        [10, 20, 30]
    """

    def __init__(
        self,
        config: ChunkConfig | None = None,
        *,
        memory_monitor: MemoryMonitor | None = None,
        clock: Clock = SYSTEM_CLOCK,
        listeners: Iterable[BatchListener | Callable[[BatchRecord], object]] = (),
    ) -> None:
        if config is not None and not isinstance(config, ChunkConfig):
            raise TypeError(f"config must be a ChunkConfig, got {type(config).__name__}")
        self.config = config if config is not None else ChunkConfig()
        self.memory_monitor = memory_monitor or MemoryMonitor(
            self.config.max_memory_mb, clock=clock
        )
        self.chunk_processor = ChunkProcessor(self.config, memory_monitor=self.memory_monitor)
        self._next_full_gc = 0  # completed-chunk count before which no full gc runs
        self._gc_backoff = 0  # chunks to wait after a full gc that freed nothing (0: none yet)
        self.progress_tracker = ProgressTracker(clock=clock)
        self.result_storage = ResultStorage(
            self.config.storage_dir, self.config.result_format, self.config.compression_enabled
        )
        self.stats = ProcessingStats(clock=clock)
        self.failures: list[ItemFailure[Any]] = []
        self._post_processors: list[PostProcessor] = []
        self._listeners = [as_listener(listener) for listener in listeners]
        self._clock = clock
        self._chunk_ends: dict[int, int] = {}  # start -> stop of chunks finished out of order
        self._bar: Any = None  # the tqdm bar of the running job, if any
        self._stop = threading.Event()
        self._closed = False
        self._running = False

    def add_post_processor(self, post_processor: PostProcessor) -> None:
        """Run ``post_processor(results)`` (sync or async) after every run, in order.

        Its return value replaces the results; returning None keeps them (for
        processors that only act on the results).
        """
        check_callable(post_processor, "post-processor")
        self._post_processors.append(post_processor)

    def shutdown(self) -> None:
        """Stop gracefully: plan no new chunks, let started chunks finish and be stored.

        Idempotent and safe from any thread or a signal handler. Later
        ``process_targets`` calls raise `ClosedError`.
        """
        self._closed = True
        self._stop.set()

    @property
    def is_shutdown(self) -> bool:
        """True once `shutdown` was called."""
        return self._closed

    async def process_targets(
        self,
        targets: Iterable[Any],
        processor_func: Callable[[Any], Any],
        mode: ProcessingMode | str = ProcessingMode.PARALLEL,
        strategy: ChunkStrategy | str | None = None,
    ) -> list[Any]:
        """Process every target with ``processor_func``; return the results in input order.

        Args:
            targets: any iterable (a list, or a generator read lazily).
            processor_func: called with one target; plain or ``async def``.
            mode: a `ProcessingMode` (or its value).
            strategy: a `ChunkStrategy`, a custom strategy's name, or None for
                ``config.strategy``.

        Raises:
            TypeError: ``targets`` is not iterable or ``processor_func`` not
                callable (before any work).
            ValueError: unknown mode or strategy (before any work).
            ClosedError: the processor was shut down.
            RuntimeError: another run of this processor is in progress.
        """
        if isinstance(targets, (str, bytes)) or not isinstance(targets, Iterable):
            raise TypeError(f"targets must be an iterable of targets, got {type(targets).__name__}")
        check_callable(processor_func, "processor_func")
        try:
            mode = ProcessingMode(mode)
        except ValueError:
            raise ValueError(f"unknown processing mode {mode!r}") from None
        if mode is not ProcessingMode.SEQUENTIAL and self.config.executor != "threads":
            if is_async_callable(processor_func):
                raise TypeError(
                    f"an async processor_func runs on the caller's event loop; "
                    f"executor={self.config.executor!r} needs a plain function"
                )
            resolve_executor(self.config.executor).check_picklable(processor_func)
        if self._closed:
            raise ClosedError("this BatchProcessor was shut down")
        if self._running:
            raise RuntimeError("process_targets is already running on this BatchProcessor")
        chunks = self.chunk_processor.iter_chunks(targets, strategy)
        resolved = self.chunk_processor.resolve_strategy(strategy)
        self._running = True
        try:
            return await self._run(targets, chunks, processor_func, mode, resolved)
        finally:
            self._running = False

    async def _run(
        self,
        targets: Iterable[Any],
        chunks: Iterator[list[Any]],
        func: Callable[[Any], Any],
        mode: ProcessingMode,
        strategy: ChunkStrategy | str,
    ) -> list[Any]:
        total = len(targets) if isinstance(targets, Sized) else None
        self._begin(total, mode, strategy)
        if self.config.progress_bar:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, desc=self.stats.run_id, unit="target")
        try:
            results = await self._run_chunks(chunks, func, mode)
            for post_processor in self._post_processors:
                processed = post_processor(results)
                if inspect.isawaitable(processed):
                    processed = await processed
                if processed is not None:
                    results = processed
            return results
        except BaseException:
            self.stats.interrupted = True
            raise
        finally:
            if self._bar is not None:
                self._bar.close()
                self._bar = None
            self._end()

    async def _run_chunks(
        self, chunks: Iterator[list[Any]], func: Callable[[Any], Any], mode: ProcessingMode
    ) -> list[Any]:
        """Run every chunk on the engine; finish each as it comes; results in input order."""
        if mode is ProcessingMode.HYBRID:
            first = next(chunks, None)
            self.stats.workers = self._hybrid_workers(first or [])
            chunks = chain([first] if first else [], chunks)
        elif mode is ProcessingMode.SEQUENTIAL:
            self.stats.workers = 1
        else:
            self.stats.workers = self.config.max_concurrent_chunks
        executor = "serial" if mode is ProcessingMode.SEQUENTIAL else self.config.executor
        if is_async_callable(func):
            runner = ChunkRunner(func, self.config, self._clock.now, asyncio.get_running_loop())
        elif executor in ("serial", "threads"):
            runner = ChunkRunner(func, self.config, self._clock.now)
        else:  # other processes: time with their own clock
            runner = ChunkRunner(func, self.config, time.perf_counter)
        run = map_batches(
            runner,
            self._planned(chunks),
            batch_size=1,
            executor=executor,
            workers=self.stats.workers,
            ordered=mode is not ProcessingMode.STREAMING,
            fail_fast=not self.config.enable_error_recovery,
            name=f"chunked:{self.stats.run_id}",
            clock=self._clock,
        )
        finished: dict[int, list[Any]] = {}
        try:
            async for value in run:
                index, results = await self._finish_chunk(value)
                finished[index] = results
        finally:
            # close() first waits for a chunk still in flight: never on the event loop
            asyncio.get_running_loop().run_in_executor(None, run.close)
        return [result for index in sorted(finished) for result in finished[index]]

    def _begin(
        self, total: int | None, mode: ProcessingMode, strategy: ChunkStrategy | str
    ) -> None:
        run_id = f"run-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
        self.stats = ProcessingStats(
            run_id=run_id,
            mode=mode.value,
            strategy=strategy.value if isinstance(strategy, ChunkStrategy) else strategy,
            total_targets=total,
            start_time=self._clock.now(),
            clock=self._clock,
        )
        self.failures = []
        self._chunk_ends = {}
        self.memory_monitor.reset_peak()
        if self.config.enable_progress_tracking:
            self.progress_tracker.start(total)
        _log.info("run %s: %s targets, mode=%s", run_id, total, mode.value)

    def _end(self) -> None:
        stats = self.stats
        stats.end_time = self._clock.now()
        if self.config.enable_memory_monitoring:
            stats.peak_memory_mb = self.memory_monitor.peak_memory_mb
        if self.config.enable_progress_tracking:
            self.progress_tracker.finish()
        _log.info(
            "run %s: %d succeeded, %d failed in %.3f s%s",
            stats.run_id,
            stats.successful_targets,
            stats.failed_targets,
            stats.processing_time,
            " (interrupted)" if stats.interrupted else "",
        )

    def _hybrid_workers(self, first_chunk: list[Any]) -> int:
        """Chunks at once that fit the memory headroom, judged by the first chunk."""
        headroom = self.memory_monitor.memory_limit_mb - self.memory_monitor.sample()
        chunk_mb = self.chunk_processor.estimate_memory_usage(first_chunk)
        if headroom <= 0:
            return 1
        fitting = int(headroom // chunk_mb) if chunk_mb > 0 else self.config.max_concurrent_chunks
        return max(1, min(self.config.max_concurrent_chunks, fitting))

    def _planned(self, chunks: Iterator[list[Any]]) -> Iterator[PlannedChunk]:
        """Number the chunks; stop planning (at a chunk boundary) after `shutdown`."""
        index = start = 0
        while not self._stop.is_set():
            targets = next(chunks, None)
            if targets is None:
                return
            yield PlannedChunk(index, start, targets)
            index += 1
            start += len(targets)
        self.stats.interrupted = True

    async def _finish_chunk(self, value: Any) -> tuple[int, list[Any]]:
        """Per finished chunk: account, store, check memory, report progress."""
        if isinstance(value, ItemFailure):  # the runner itself failed: all targets fail
            chunk: PlannedChunk = value.item
            errors = [(offset, value.error) for offset in range(len(chunk.targets))]
            outcome = ChunkOutcome(chunk, [], errors, 0.0)
        else:
            outcome = value
            chunk = outcome.chunk
        failures = [
            ItemFailure(chunk.start + offset, chunk.targets[offset], error)
            for offset, error in outcome.errors
        ]
        self._account(outcome, failures)
        await self._store(chunk, outcome.results, failures, outcome.duration)
        self._check_memory()
        if self.config.enable_progress_tracking:
            before = self.progress_tracker.callback_errors
            await self.progress_tracker.aupdate(len(outcome.results), len(failures))
            self.stats.callback_errors += self.progress_tracker.callback_errors - before
        if self._bar is not None:
            self._bar.update(len(chunk.targets))
        self._chunk_ends[chunk.start] = chunk.start + len(chunk.targets)
        while (end := self._chunk_ends.pop(self.stats.next_target_index, None)) is not None:
            self.stats.next_target_index = end
        return chunk.index, outcome.results

    def _account(self, outcome: ChunkOutcome, failures: list[ItemFailure[Any]]) -> None:
        """Failures, sizing feedback, statistics and listeners for one chunk."""
        for failure in failures:
            _log.error("target %d failed: %r", failure.index, failure.error)
        self.failures.extend(failures)
        size = len(outcome.chunk.targets)
        self.chunk_processor.record_chunk(size, outcome.duration, len(failures))
        self.stats.slow_targets += outcome.slow_targets
        error_types = Counter(type(f.error).__name__ for f in failures)
        self.stats.record_chunk(
            size, len(outcome.results), len(failures), outcome.duration, error_types
        )
        notify(
            self._listeners,
            BatchRecord(
                engine="bulk",
                size=size,
                duration=outcome.duration,
                succeeded=len(outcome.results),
                failed=len(failures),
                error_types=dict(error_types),
                name="chunked",
                cost=size,
                padded_cost=size,
            ),
        )

    async def _store(
        self,
        chunk: PlannedChunk,
        results: list[Any],
        failures: list[ItemFailure[Any]],
        duration: float,
    ) -> None:
        storage = self.result_storage
        if self.config.enable_result_persistence:
            errors = [
                {"index": f.index, "error_type": type(f.error).__name__, "message": str(f.error)}
                for f in failures
            ]
            metadata = {"start": chunk.start, "size": len(chunk.targets), "duration": duration}
            try:
                await asyncio.to_thread(
                    storage.save_chunk, self.stats.run_id, chunk.index, results, errors, metadata
                )
                self.stats.persisted_chunks += 1
            except Exception:
                _log.exception("storing chunk %d of run %s failed", chunk.index, self.stats.run_id)
                self.stats.persistence_errors += 1
        before = storage.processor_errors
        await storage.aprocess_results(results)
        self.stats.callback_errors += storage.processor_errors - before

    def _check_memory(self) -> None:
        """Collect garbage when over the limit, backing off while it frees nothing.

        A full collection costs milliseconds to a tenth of a second in a large
        process. When the memory is over the limit for reasons garbage collection
        cannot fix (e.g. libraries loaded before the job), a full collection per
        chunk would dominate the run, so after one that freed less than
        `_USEFUL_GC_MB` the next waits ``cleanup_interval`` chunks (at least one),
        and each further useless one doubles the wait: a long run over the limit
        pays a logarithmic number of full collections. One that frees memory
        resets the wait.
        """
        if not self.config.enable_memory_monitoring:
            return
        monitor = self.memory_monitor
        interval = self.config.cleanup_interval
        done = self.stats.completed_chunks
        if monitor.sample() > monitor.memory_limit_mb and done >= self._next_full_gc:
            freed = monitor.collect_garbage()
            if freed >= _USEFUL_GC_MB:
                self._gc_backoff = 0
                self._next_full_gc = done + 1
            else:
                self._gc_backoff = 2 * self._gc_backoff if self._gc_backoff else max(interval, 1)
                self._next_full_gc = done + self._gc_backoff
        elif interval > 0 and done % interval == 0:
            monitor.collect_garbage(generation=1)
        else:
            return
        self.stats.gc_collections += 1

    def __repr__(self) -> str:
        return (
            f"BatchProcessor(running={self._running}, shutdown={self._closed}, "
            f"processed={self.stats.processed_targets}, failed={self.stats.failed_targets}, "
            f"chunk_size={self.config.chunk_size}, "
            f"max_concurrent_chunks={self.config.max_concurrent_chunks})"
        )
