"""`BulkRun`: the lazy result stream of `map_batches`, and the engine that fills it.

A run reads the input one chunk at a time, keeps up to the executor's slots of
chunks in flight, and hands out each chunk's results in input order (or as
chunks complete). Every finished chunk is settled once: it feeds the size
controller, is committed to the job file, counted, and reported to listeners
and ``on_progress``. Everything here is per chunk, never per item.
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import logging
import pickle
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, Generator, Iterable, Iterator
from dataclasses import replace
from itertools import chain
from typing import Any

from .._core.events import notify
from .checkpoint import DamagedChunkError, JobStore, digest
from .chunking import Chunk, read_chunks
from .executors import ChunkExecutor, ShippingError
from .inflight import InFlight, merged, release_frames
from .options import BulkOptions
from .resume import read_job_chunks
from .runner import ChunkResult, ItemFailure, arun_chunk, run_chunk
from .statistics import BulkProgress, BulkStatistics, Counters, batch_records

__all__ = ["HISTORY_LIMIT", "TAIL_BALANCE_DURATION", "BulkRun"]

_log = logging.getLogger("batchpilot")

TAIL_BALANCE_DURATION = 0.02
"""Chunks expected to take less (seconds) are not split to balance the end of a run."""

HISTORY_LIMIT = 10_000
"""`BulkRun.batch_size_history` keeps the sizes of this many latest chunks.

Bounded so that a long job of small chunks (``batch_size=1``, a slow function)
does not grow by a list entry per chunk; ``stats()["chunks_processed"]`` counts
every chunk.
"""


class BulkRun(Iterator[Any]):
    """The lazy result stream of `map_batches`, with its live statistics.

    Iterate it once (``for``, ``list()``, or ``async for`` from asyncio code):
    results come in input order (or as chunks complete, with ``ordered=False``),
    an `ItemFailure` in place of each failed item. Work starts on the first
    ``next()``. ``close()`` (or leaving a ``with`` block) stops the run and
    releases the executor and the job file.
    """

    def __init__(
        self, fn: Callable[[list[Any]], Any] | type, items: Iterable[Any], options: BulkOptions
    ) -> None:
        """Check ``fn`` against ``options`` (`BulkOptions.bind`) and open the job file.

        Nothing runs before the first ``next()``.
        """
        binding = options.bind(fn)
        self._options = options  # the run's settings, checked
        self._fn = binding.function  # what one chunk runs: fn, or fn grouped by cost
        self.controller = binding.controller  # chooses each chunk's size
        self._executor = binding.executor  # where chunks run
        self.ordered = options.ordered  # hand out results in input order
        self.name = options.name  # names the run in records, progress bar and repr
        self._clock = options.clock  # time source of progress and elapsed time
        self._total = len(items) if hasattr(items, "__len__") else None  # type: ignore[arg-type]
        self._iterator = iter(items)  # the input, read one chunk at a time
        self._store = (  # the job file, locked to this run
            JobStore(options.job, options.serializer) if options.job is not None else None
        )
        self._spread = 1  # chunks that run at once: the executor's slots
        self._item_cost = 0.0  # seconds per item of the latest finished chunk
        self._is_async = self._executor.kind == "asyncio"  # chunks run as coroutines
        self._chunk_clock = None if self._executor.remote else self._clock  # workers' clock
        self._counters = Counters()  # running totals
        self._history: deque[int] = deque(maxlen=HISTORY_LIMIT)  # planned sizes, latest
        self._failures: list[ItemFailure[Any]] = []  # every failure, by completion order
        self._in_flight = 0  # chunks launched and not yet handed out
        self._unsettled_items = 0  # items launched whose chunk has not finished yet
        self._started_at: float | None = None  # clock time of the first next()
        self._finished = False  # the whole input was processed and collected
        self._chunk_lists = self._run()  # each chunk's result list, produced lazily
        self._advancing = threading.Lock()  # one thread advances _chunk_lists at a time
        self._stream: Iterator[Any] = chain.from_iterable(self._chunk_lists)  # the results

    # -- the iterator ------------------------------------------------------

    def __iter__(self) -> Iterator[Any]:
        """The C-level result iterator itself, so ``for`` loops pay no Python call per item."""
        return self._stream

    def __next__(self) -> Any:
        return next(self._stream)

    async def __aiter__(self) -> AsyncIterator[Any]:
        """Iterate from asyncio code: each chunk is awaited in a worker thread.

        The event loop is never blocked. Use either ``for`` or ``async for`` on one
        run, not both.
        """
        while (values := await asyncio.to_thread(self._next_chunk)) is not None:
            for value in values:
                yield value

    def _next_chunk(self) -> list[Any] | None:
        with self._advancing:
            return next(self._chunk_lists, None)

    def close(self) -> None:
        """Stop the run: cancel chunks not started, release executor and job file. Idempotent.

        A ``for`` loop already running may still see the rest of the chunk it is in;
        a chunk an ``async for`` is waiting for (even from a cancelled task) is
        waited for first.
        """
        with self._advancing:
            self._chunk_lists.close()
        self._stream = iter(())
        if self._store is not None:
            self._store.close()

    def __enter__(self) -> BulkRun:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- live state --------------------------------------------------------

    @property
    def failures(self) -> list[ItemFailure[Any]]:
        """Every `ItemFailure` produced so far (a copy), by completion order."""
        return list(self._failures)

    @property
    def batch_size(self) -> int:
        """The chunk size the controller will plan next."""
        return self.controller.next_size()

    @property
    def batch_size_history(self) -> list[int]:
        """Planned sizes of the last `HISTORY_LIMIT` chunks run, oldest first (not resumed ones)."""
        return list(self._history)

    @property
    def finished(self) -> bool:
        """True once the whole input has been processed and collected."""
        return self._finished

    def progress(self) -> BulkProgress:
        """A snapshot of the run's progress."""
        counters = self._counters
        elapsed = 0.0 if self._started_at is None else self._clock.now() - self._started_at
        return BulkProgress(
            done=counters.done,
            failed=counters.failed,
            chunks=counters.chunks,
            elapsed=elapsed,
            total=self._total,
            resumed=counters.resumed,
            chunk_size=self.batch_size,
        )

    def statistics(self) -> BulkStatistics:
        """A frozen snapshot: the fields every engine shares, then the run's own."""
        progress = self.progress()
        counters = self._counters
        return BulkStatistics(
            name=self.name,
            batches=progress.chunks,
            items=progress.done,
            succeeded=progress.done - progress.failed,
            failed=progress.failed,
            current_batch_size=progress.chunk_size,
            queue_depth=self._unsettled_items,
            rate=progress.rate,
            resumed=progress.resumed,
            quarantined_chunks=counters.quarantined,
            elapsed=progress.elapsed,
            total=progress.total,
            error_types=dict(counters.errors),
            batch_size_history=tuple(self._history),
            in_flight_chunks=self._in_flight,
            finished=self._finished,
            close_reasons=dict(counters.reasons),
            oom_splits=counters.oom_splits,
            model_setups=counters.setups,
        )

    def stats(self) -> dict[str, Any]:
        """A plain snapshot: counts, rate, error types, current and planned chunk sizes.

        A view of `statistics` (`BulkStatistics.as_stats` names its keys).
        """
        return self.statistics().as_stats()

    def __repr__(self) -> str:
        counters = self._counters
        return (
            f"BulkRun(name={self.name!r}, executor={self._executor.describe()}, "
            f"done={counters.done}, failed={counters.failed}, chunks={counters.chunks}, "
            f"in_flight={self._in_flight}, batch_size={self.batch_size}, "
            f"job={self._options.job!r}, finished={self._finished})"
        )

    # -- the engine --------------------------------------------------------

    def _run(self) -> Generator[list[Any], None, None]:
        """Yield each chunk's result list; everything here is per chunk, never per item."""
        self._started_at = self._clock.now()
        executor = self._executor.build(self._options.workers)
        bar = self._make_bar()
        pipeline: deque[InFlight] = deque()
        try:
            self._spread = executor.slots
            chunks = self._read()
            exhausted = False
            source_error: Exception | None = None
            while True:
                while not exhausted and len(pipeline) < executor.slots:
                    self._settle_finished(pipeline, bar)
                    try:
                        chunk = next(chunks, None)
                    except Exception as error:  # from the input: finish what was read first
                        chunk, source_error = None, error
                    if chunk is None:
                        exhausted = True
                    else:
                        pipeline.append(self._launch(executor, chunk))
                if not pipeline:
                    break
                entry = self._next_entry(pipeline, bar)
                self._in_flight = len(pipeline)
                yield self._collect(entry, bar)
            if source_error is not None:
                raise source_error
            self._complete()
        finally:
            for entry in pipeline:
                if entry.future is not None:
                    entry.future.cancel()
            self._in_flight = 0
            executor.shutdown()
            if bar is not None:
                bar.close()
            if self._store is not None:
                self._store.close()

    def _tail_cap(self, position: int) -> int | None:
        """Under ``"auto"``, when chunks take long enough for an uneven finish to
        matter, no chunk takes more than its share of the items left, so the
        workers finish together. Quick chunks are left whole: splitting them
        would cost more thread hand-offs than it saves."""
        if self._total is None:
            return None
        if self._item_cost * self.controller.next_size() < TAIL_BALANCE_DURATION:
            return None
        return -(-(self._total - position) // self._spread)

    def _read(self) -> Iterator[Chunk]:
        """Chunks of the input; with a job file, verified and skipping stored chunks."""
        cap = self._tail_cap if self._options.balance_tail else None
        if self._store is None:
            return read_chunks(self._iterator, self.controller, cap=cap)
        return read_job_chunks(self._store, self._iterator, self.controller, cap)

    def _launch(self, executor: ChunkExecutor, chunk: Chunk) -> InFlight:
        if chunk.stored:
            return self._launch_stored(executor, chunk)
        chunk_digest = digest(chunk.items) if self._store is not None else b""
        try:
            future = self._submit(executor, chunk.items, chunk.start)
        except ShippingError:
            if self._options.fail_fast:
                raise
            return self._launch_shippable(executor, chunk, chunk_digest)
        return InFlight(chunk.start, future, chunk_digest)

    def _submit(
        self, executor: ChunkExecutor, items: list[Any], start: int
    ) -> cf.Future[ChunkResult]:
        task = arun_chunk if self._is_async else run_chunk
        args: tuple[Any, ...] = (
            self._fn,
            items,
            start,
            self._options.retry,
            self._options.fail_fast,
        )
        if self._chunk_clock is not None:
            args = (*args, self._chunk_clock)
        future: cf.Future[ChunkResult] = executor.submit(task, *args)
        self._history.append(len(items))
        self._unsettled_items += len(items)
        return future

    def _launch_part(
        self,
        executor: ChunkExecutor,
        chunk: Chunk,
        chunk_digest: bytes,
        base: list[Any],
        offsets: list[int],
        resumed: int = 0,
    ) -> InFlight:
        """Run only the items of ``chunk`` at ``offsets``; the others keep ``base``'s values."""
        if offsets:
            future = self._submit(executor, [chunk.items[o] for o in offsets], 0)
        else:
            future = cf.Future()
            future.set_result(ChunkResult(0, [], 0.0))
        return InFlight(chunk.start, future, chunk_digest, None, base, offsets, resumed)

    def _launch_stored(self, executor: ChunkExecutor, chunk: Chunk) -> InFlight:
        """A chunk from the job file; with ``retry_failed`` its stored failures run again.

        Otherwise its results are read when collected, unless ``quarantine_damaged``
        asks to read them now: a damaged chunk is quarantined and run again whole.
        """
        if not (self._options.retry_failed or self._options.quarantine_damaged):
            return InFlight(chunk.start, None, items=chunk.items)
        assert self._store is not None
        try:
            values = self._store.load(chunk.start, chunk.items)
        except DamagedChunkError as damaged:
            if not self._options.quarantine_damaged:
                raise
            self._store.quarantine(damaged)
            self._counters.quarantined += 1
            return self._launch(executor, replace(chunk, stored=False))
        if not self._options.retry_failed:
            return InFlight(chunk.start, None, base=values)
        offsets = [offset for offset, v in enumerate(values) if isinstance(v, ItemFailure)]
        if not offsets:
            return InFlight(chunk.start, None, base=values)
        resumed = len(values) - len(offsets)
        return self._launch_part(executor, chunk, digest(chunk.items), values, offsets, resumed)

    def _launch_shippable(
        self, executor: ChunkExecutor, chunk: Chunk, chunk_digest: bytes
    ) -> InFlight:
        """A chunk the executor could not send: each item that does not pickle fails alone."""
        base: list[Any] = [None] * len(chunk.items)
        offsets = []
        for offset, item in enumerate(chunk.items):
            try:
                pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL)
            except Exception as error:
                problem = ShippingError(
                    f"item {chunk.start + offset} cannot be pickled to send it to executor "
                    f"{self._executor.describe()}: {error}"
                )
                problem.__cause__ = error
                base[offset] = ItemFailure(chunk.start + offset, item, problem)
            else:
                offsets.append(offset)
        return self._launch_part(executor, chunk, chunk_digest, base, offsets)

    def _next_entry(self, pipeline: deque[InFlight], bar: Any) -> InFlight:
        """The next chunk to hand out: the oldest (ordered) or the first finished.

        While waiting, every chunk that finishes is settled at once (committed to
        the job file, counted, reported), and a failed chunk under ``fail_fast``
        is raised at once, whatever its position.
        """
        while True:
            ready = self._ready(pipeline)
            if ready is not None:
                pipeline.remove(ready)
                return ready
            running = [e.future for e in pipeline if e.future is not None and not e.future.done()]
            cf.wait(running, return_when=cf.FIRST_COMPLETED)
            self._settle_finished(pipeline, bar)

    def _ready(self, pipeline: deque[InFlight]) -> InFlight | None:
        for entry in pipeline:
            future = entry.future
            if (
                future is not None
                and future.done()
                and not future.cancelled()
                and future.exception() is not None
            ):
                return entry  # collecting it raises (fail_fast)
        candidates = [pipeline[0]] if self.ordered else pipeline
        return next((e for e in candidates if e.future is None or e.future.done()), None)

    def _settle_finished(self, pipeline: deque[InFlight], bar: Any) -> None:
        """Account for chunks that completed while others were being planned."""
        for entry in pipeline:
            if (
                entry.settled is None
                and entry.future is not None
                and entry.future.done()
                and not entry.future.cancelled()
                and entry.future.exception() is None
            ):
                self._settle(entry, entry.future.result(), bar)

    def _settle(self, entry: InFlight, ran: ChunkResult, bar: Any) -> None:
        """Per finished chunk: feed the controller, commit, count, notify."""
        result = ran if entry.offsets is None else merged(entry, ran)
        entry.settled = result
        self._unsettled_items -= ran.size
        self._counters.setups += ran.setups
        if ran.size:
            self._item_cost = ran.duration / ran.size
            self.controller.observe(ran.size, ran.duration, ok=ran.failed < ran.size)
        if self._store is not None:
            self._store.commit(entry.start, entry.start + result.size, entry.digest, result.values)
        if result.failed:
            failures = [v for v in result.values if isinstance(v, ItemFailure)]
            for failure in failures:
                release_frames(failure.error)
            self._failures.extend(failures)
            self._counters.errors.update(result.error_types)
        self._counters.add_batches(result.batches)
        self._account(result.size, result.failed, bar, resumed=entry.resumed)
        size = result.size - entry.resumed
        for record in batch_records(result, size, self._unsettled_items, self.name):
            notify(self._options.hooks, record)

    def _account(self, size: int, failed: int, bar: Any, resumed: int = 0) -> None:
        counters = self._counters
        counters.done += size
        counters.failed += failed
        counters.chunks += 1
        counters.resumed += resumed
        if bar is not None:
            bar.update(size)
        if self._options.on_progress is not None:
            try:
                self._options.on_progress(self.progress())
            except Exception:
                _log.exception("on_progress callback %r failed", self._options.on_progress)

    def _collect(self, entry: InFlight, bar: Any) -> list[Any]:
        if entry.future is None:
            assert self._store is not None
            values = entry.base
            if values is None:
                assert entry.items is not None
                values = self._store.load(entry.start, entry.items)
            failures = [v for v in values if isinstance(v, ItemFailure)]
            self._failures.extend(failures)
            self._counters.errors.update(type(f.error).__name__ for f in failures)
            self._account(len(values), len(failures), bar, resumed=len(values))
            return values
        if entry.settled is None:
            self._settle(entry, entry.future.result(), bar)
        assert entry.settled is not None
        return entry.settled.values

    def _complete(self) -> None:
        self._finished = True
        if self._store is not None:
            self._store.mark_complete(self._counters.done)

    def _make_bar(self) -> Any:
        if not self._options.progress:
            return None
        from tqdm.auto import tqdm

        return tqdm(total=self._total, desc=self.name or "map_batches", unit="item")
