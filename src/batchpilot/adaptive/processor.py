"""`AdaptiveBatchProcessor` (seed 004): item lists in adaptively sized batches on `map_batches`."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Iterable
from typing import Any

from .._core.callables import is_async_callable
from .._core.clock import SYSTEM_CLOCK, Clock
from .._core.events import BatchListener, BatchRecord, as_listener
from .._core.memory import MemoryMonitor
from .._core.sizing import SizeController
from ..bulk import ItemFailure, map_batches
from .strategy import DEFAULT_MEMORY_LIMIT, BatchProcessingStrategy
from .totals import Totals

__all__ = ["AdaptiveBatchProcessor", "default_workers"]

_MIB = 1024 * 1024


def default_workers(max_workers: int | None) -> int:
    workers = (os.cpu_count() or 1) if max_workers is None else max_workers
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"max_workers must be an int >= 1 or None, got {max_workers!r}")
    return workers


class AdaptiveBatchProcessor:
    """Processes item lists in adaptively sized batches, sequentially or in parallel.

    Args:
        process_func: takes a list of items, returns a list of as many results
            (``async def`` functions run on an event loop of the engine).
        initial_batch_size: first batch size (when ``strategy`` is None).
        min_batch_size: smallest batch (when ``strategy`` is None).
        max_batch_size: largest batch (when ``strategy`` is None).
        max_workers: worker threads for the ``*_parallel`` methods; None: CPU count.
        strategy: any `SizeController`, e.g. a `BatchProcessingStrategy`; None
            builds a `BatchProcessingStrategy` from the three sizes.
        logger: where failures and summaries are logged.
        clock: time source of batch durations.
        listeners: get one `BatchRecord` per batch (``engine="bulk"``,
            ``name="adaptive"``), e.g. `batchpilot.metrics.PrometheusMetrics`.
        progress_bar: show the engine's tqdm progress bar for every call.

    Attributes:
        failures: `ItemFailure` per failed item of the latest call.
        last_run_stats: the engine's `BulkRun.stats()` of the latest call.

    Raises:
        TypeError: ``process_func`` not callable or ``strategy`` not a controller.
        ValueError: invalid sizes or worker count.

    Example:
        >>> processor = AdaptiveBatchProcessor(lambda batch: [x * 2 for x in batch])
        >>> processor.process_items_parallel(range(5))
        [0, 2, 4, 6, 8]
    """

    def __init__(
        self,
        process_func: Callable[[list[Any]], Any],
        initial_batch_size: int = 100,
        min_batch_size: int = 10,
        max_batch_size: int = 1000,
        max_workers: int | None = None,
        strategy: SizeController | None = None,
        logger: logging.Logger | None = None,
        *,
        clock: Clock = SYSTEM_CLOCK,
        listeners: Iterable[BatchListener | Callable[[BatchRecord], object]] = (),
        progress_bar: bool = False,
    ) -> None:
        if not callable(process_func):
            raise TypeError(f"process_func must be callable, got {type(process_func).__name__}")
        if strategy is not None and not isinstance(strategy, SizeController):
            raise TypeError(
                "strategy must be a BatchProcessingStrategy or another SizeController, "
                f"got {type(strategy).__name__}"
            )
        self.logger = logger or logging.getLogger("batchpilot.adaptive")
        self.process_func = process_func
        self.max_workers = default_workers(max_workers)
        if strategy is None:
            strategy = BatchProcessingStrategy(
                initial_batch_size=initial_batch_size,
                min_batch_size=min_batch_size,
                max_batch_size=max_batch_size,
                logger=self.logger,
            )
        self.strategy: SizeController = strategy
        limit = getattr(self.strategy, "memory_limit", DEFAULT_MEMORY_LIMIT)
        self.memory_monitor = MemoryMonitor(limit / _MIB, clock=clock)
        self.failures: list[ItemFailure[Any]] = []
        self.last_run_stats: dict[str, Any] = {}
        self._clock = clock
        self._listeners = [as_listener(listener) for listener in listeners]
        self._progress_bar = progress_bar
        self._totals = Totals()
        self._executor = "asyncio" if is_async_callable(process_func) else "threads"

    def process_items(self, items: Iterable[Any]) -> list[Any]:
        """Process ``items`` one batch at a time; return the results in input order.

        Each batch is sized after the previous one finished, in the calling thread.
        """
        return self._process(items, workers=1)

    def process_items_parallel(self, items: Iterable[Any]) -> list[Any]:
        """Process ``items`` with up to ``max_workers`` batches at once; input order kept."""
        return self._process(items, workers=self.max_workers)

    async def process_items_async(self, items: Iterable[Any]) -> list[Any]:
        """`process_items` without blocking the event loop."""
        return await asyncio.to_thread(self.process_items, items)

    async def process_items_parallel_async(self, items: Iterable[Any]) -> list[Any]:
        """`process_items_parallel` without blocking the event loop."""
        return await asyncio.to_thread(self.process_items_parallel, items)

    def _process(self, items: Iterable[Any], workers: int) -> list[Any]:
        executor = self._executor
        if workers == 1 and executor == "threads":
            executor = "serial"
        run = map_batches(
            self.process_func,
            items,
            batch_size=self.strategy,
            executor=executor,
            workers=workers,
            listeners=self._listeners,
            progress=self._progress_bar,
            name="adaptive",
            clock=self._clock,
        )
        with run:
            values = list(run)
        self.failures = run.failures
        for failure in self.failures:
            self.logger.error("item %d failed: %r", failure.index, failure.error)
        self.last_run_stats = run.stats()
        self._totals.add(self.last_run_stats)
        self.memory_monitor.sample()
        return [value for value in values if not isinstance(value, ItemFailure)]

    def get_stats(self) -> dict[str, Any]:
        """Totals over every call so far, as a plain dict.

        Keys: ``total_items_processed``, ``total_success_count``,
        ``total_error_count``, ``total_duration`` (s), ``batch_count``,
        ``avg_batch_size``, ``current_batch_size``, ``items_per_second``,
        ``error_rate`` (fraction), ``error_types``, ``batch_size_history`` (planned
        sizes, oldest first), ``max_workers``, ``memory_usage_mb`` (process RSS
        after the latest call) and ``peak_memory_mb`` (the largest such reading).
        """
        stats = self._totals.snapshot()
        stats.update(
            current_batch_size=self.strategy.next_size(),
            max_workers=self.max_workers,
            memory_usage_mb=self.memory_monitor.current_memory_mb,
            peak_memory_mb=self.memory_monitor.peak_memory_mb,
        )
        return stats

    def __repr__(self) -> str:
        return (
            f"AdaptiveBatchProcessor(batch_size={self.strategy.next_size()}, "
            f"max_workers={self.max_workers}, processed={self._totals.items}, "
            f"failed={self._totals.failed})"
        )
