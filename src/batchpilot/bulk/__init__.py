"""The bulk engine: map a batch function over a huge, lazy input, fast and resumably.

`map_batches(fn, items)` cuts ``items`` into chunks, runs ``fn(chunk)`` on an
executor (threads, processes, asyncio, Dask distributed, Ray, or the calling
thread) and returns a
`BulkRun`: a lazy iterator of per-item results, in input order by default.

How a failed item appears: ``fn`` is called once per chunk; if that call
raises, the chunk's items are isolated with the core's retry-then-bisect
(`batchpilot._core.isolation`), and each item that still fails is yielded as an
`ItemFailure(index, item, error)` in its own place in the stream. Failures are
also collected on `BulkRun.failures`. With ``fail_fast=True`` the first
exception is raised from the iterator instead and the run stops.

Speed comes from doing per-chunk, never per-item, Python work: chunks are read
with `itertools.islice`, results are flattened by `itertools.chain`, and the
iterator ``for`` loops and ``list()`` use is that C-level chain itself.

The seed APIs (`batchpilot.chunked`, `batchpilot.adaptive`) and the CLI are built
on this module; see ``docs/bulk.md``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import logging
import math
import pickle
import threading
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable, Generator, Iterable, Iterator
from dataclasses import dataclass, field, replace
from itertools import chain, islice
from typing import Any, Literal

from .._core.callables import is_async_callable
from .._core.clock import SYSTEM_CLOCK, Clock
from .._core.events import BatchListener, BatchRecord, as_listener, notify
from .._core.exports import publish
from .._core.retry import NO_RETRY, RetryPolicy
from .._core.sizing import SizeController
from .checkpoint import (
    HEAD_ITEMS,
    DamagedChunkError,
    JobFileError,
    JobInUseError,
    JobMismatchError,
    JobStore,
    digest,
)
from .chunking import Chunk, make_controller, read_chunks
from .executors import ChunkExecutor, ExecutorSpec, ProcessExecutor, ShippingError, resolve_executor
from .grouping import DEFAULT_SORT_WINDOW, cost_grouped
from .runner import ChunkResult, ItemFailure, arun_chunk, run_chunk
from .serialize import SERIALIZERS, StoredError

__all__ = [
    "HISTORY_LIMIT",
    "BulkProgress",
    "BulkRun",
    "ChunkExecutor",
    "DamagedChunkError",
    "ItemFailure",
    "JobFileError",
    "JobInUseError",
    "JobMismatchError",
    "ProcessExecutor",
    "StoredError",
    "map_batches",
]

_log = logging.getLogger("batchpilot")

TAIL_BALANCE_DURATION = 0.02
"""Chunks expected to take less (seconds) are not split to balance the end of a run."""

HISTORY_LIMIT = 10_000
"""`BulkRun.batch_size_history` keeps the sizes of this many latest chunks.

Bounded so that a long job of small chunks (``batch_size=1``, a slow function)
does not grow by a list entry per chunk; ``stats()["chunks_processed"]`` counts
every chunk.
"""

BatchSize = int | Literal["auto"] | SizeController


@dataclass(frozen=True)
class BulkProgress:
    """A snapshot of a running job, given to ``on_progress`` after every chunk.

    Attributes:
        done: items finished so far (succeeded or failed), resumed ones included.
        failed: items that ended as `ItemFailure`.
        chunks: chunks finished so far.
        elapsed: seconds since the run started.
        total: input length if known (``len(items)``), else None.
        resumed: items taken from the job file instead of being run.
        chunk_size: the chunk size the controller will plan next.
    """

    done: int
    failed: int
    chunks: int
    elapsed: float
    total: int | None
    resumed: int = 0
    chunk_size: int = 0

    @property
    def rate(self) -> float:
        """Items per second run in this process (resumed items excluded)."""
        ran = self.done - self.resumed
        return ran / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def eta(self) -> float | None:
        """Estimated seconds left, or None without a known total or a rate yet."""
        if self.total is None or self.rate <= 0:
            return None
        return max(self.total - self.done, 0) / self.rate


@dataclass
class _InFlight:
    """One chunk between planning and collection.

    ``future`` is None for a chunk stored in the job file (``items`` are its
    input items, ``base`` its stored values once loaded). When only some of a
    chunk's items run (``offsets``), ``base`` holds the values of the others
    and the future's results are merged into it; ``resumed`` of them came from
    the job file.
    """

    start: int
    future: cf.Future[ChunkResult] | None
    digest: bytes = b""
    settled: ChunkResult | None = None
    base: list[Any] | None = None
    offsets: list[int] | None = None
    resumed: int = 0
    items: list[Any] | None = None


@dataclass
class _Counters:
    done: int = 0
    failed: int = 0
    chunks: int = 0
    resumed: int = 0
    quarantined: int = 0
    errors: Counter[str] = field(default_factory=Counter)


class BulkRun(Iterator[Any]):
    """The lazy result stream of `map_batches`, with its live statistics.

    Iterate it once (``for``, ``list()``, or ``async for`` from asyncio code):
    results come in input order (or as chunks complete, with ``ordered=False``),
    an `ItemFailure` in place of each failed item. Work starts on the first
    ``next()``. ``close()`` (or leaving a ``with`` block) stops the run and
    releases the executor and the job file.
    """

    def __init__(
        self,
        fn: Callable[[list[Any]], Any],
        items: Iterable[Any],
        *,
        controller: SizeController,
        balance_tail: bool,
        executor: ExecutorSpec,
        workers: int | None,
        job: str | None,
        retry_failed: bool,
        quarantine_damaged: bool,
        serializer: str,
        ordered: bool,
        progress: bool,
        fail_fast: bool,
        retry: RetryPolicy,
        on_progress: Callable[[BulkProgress], object] | None,
        listeners: list[BatchListener],
        name: str,
        clock: Clock,
    ) -> None:
        self._fn = fn
        self._total = len(items) if hasattr(items, "__len__") else None  # type: ignore[arg-type]
        self._balance_tail = balance_tail
        self._spread = 1
        self._item_cost = 0.0
        self._iterator = iter(items)
        self.controller = controller
        self._executor = executor
        self._workers = workers
        self._job = job
        self._store = JobStore(job, serializer) if job is not None else None
        self._retry_failed = retry_failed
        self._quarantine_damaged = quarantine_damaged
        self.ordered = ordered
        self._progress_bar = progress
        self._fail_fast = fail_fast
        self._retry = retry
        self._on_progress = on_progress
        self._listeners = listeners
        self.name = name
        self._clock = clock
        self._is_async = executor.kind == "asyncio"
        self._chunk_clock = None if executor.remote else clock
        self._counters = _Counters()
        self._history: deque[int] = deque(maxlen=HISTORY_LIMIT)
        self._failures: list[ItemFailure[Any]] = []
        self._in_flight = 0
        self._unsettled_items = 0  # items launched whose chunk has not finished yet
        self._started_at: float | None = None
        self._finished = False
        self._chunk_lists = self._run()
        self._advancing = threading.Lock()
        self._stream: Iterator[Any] = chain.from_iterable(self._chunk_lists)

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

    def stats(self) -> dict[str, Any]:
        """A plain snapshot: counts, rate, error types, current and planned chunk sizes."""
        snapshot = self.progress()
        return {
            "items_processed": snapshot.done,
            "items_succeeded": snapshot.done - snapshot.failed,
            "items_failed": snapshot.failed,
            "items_resumed": snapshot.resumed,
            "chunks_processed": snapshot.chunks,
            "chunks_quarantined": self._counters.quarantined,
            "elapsed_seconds": snapshot.elapsed,
            "items_per_second": snapshot.rate,
            "error_rate": snapshot.failed / snapshot.done if snapshot.done else 0.0,
            "error_types": dict(self._counters.errors),
            "current_batch_size": snapshot.chunk_size,
            "batch_size_history": self.batch_size_history,
            "in_flight_chunks": self._in_flight,
            "finished": self._finished,
        }

    def __repr__(self) -> str:
        counters = self._counters
        return (
            f"BulkRun(name={self.name!r}, executor={self._executor.describe()}, "
            f"done={counters.done}, failed={counters.failed}, chunks={counters.chunks}, "
            f"in_flight={self._in_flight}, batch_size={self.batch_size}, "
            f"job={self._job!r}, finished={self._finished})"
        )

    # -- the engine --------------------------------------------------------

    def _run(self) -> Generator[list[Any], None, None]:
        """Yield each chunk's result list; everything here is per chunk, never per item."""
        self._started_at = self._clock.now()
        executor = self._executor.build(self._workers)
        bar = self._make_bar()
        pipeline: deque[_InFlight] = deque()
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
        """Chunks of the input; with a job file, verify the input and skip stored chunks."""
        cap = self._tail_cap if self._balance_tail else None
        if self._store is None:
            yield from read_chunks(self._iterator, self.controller, cap=cap)
            return
        head: list[Any] = []
        source: Iterator[Any] = self._iterator
        try:
            head.extend(islice(self._iterator, HEAD_ITEMS))
        except Exception as error:  # no fingerprint from a partial head; run it, then raise
            source = _raising(error)
        else:
            self._store.check_head(head)
        stored = self._store.done_ranges()
        stored_digests = {start: chunk_digest for start, _, chunk_digest in stored}
        chunks = read_chunks(
            chain(head, source),
            self.controller,
            [(start, stop) for start, stop, _ in stored],
            cap=cap,
        )
        end = 0
        for chunk in chunks:
            if chunk.stored and digest(chunk.items) != stored_digests[chunk.start]:
                raise JobMismatchError(
                    f"{self._store.path}: input items {chunk.start}..{chunk.stop} differ "
                    "from the ones this job stored; use another job file"
                )
            end = chunk.stop
            yield chunk
        finished_total = self._store.total
        if finished_total is not None and end > finished_total:
            raise JobMismatchError(
                f"{self._store.path}: the input has more than the {finished_total} items "
                "this finished job processed; use another job file"
            )

    def _launch(self, executor: ChunkExecutor, chunk: Chunk) -> _InFlight:
        if chunk.stored:
            return self._launch_stored(executor, chunk)
        chunk_digest = digest(chunk.items) if self._store is not None else b""
        try:
            future = self._submit(executor, chunk.items, chunk.start)
        except ShippingError:
            if self._fail_fast:
                raise
            return self._launch_shippable(executor, chunk, chunk_digest)
        return _InFlight(chunk.start, future, chunk_digest)

    def _submit(
        self, executor: ChunkExecutor, items: list[Any], start: int
    ) -> cf.Future[ChunkResult]:
        task = arun_chunk if self._is_async else run_chunk
        args: tuple[Any, ...] = (self._fn, items, start, self._retry, self._fail_fast)
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
    ) -> _InFlight:
        """Run only the items of ``chunk`` at ``offsets``; the others keep ``base``'s values."""
        if offsets:
            future = self._submit(executor, [chunk.items[o] for o in offsets], 0)
        else:
            future = cf.Future()
            future.set_result(ChunkResult(0, [], 0.0))
        return _InFlight(chunk.start, future, chunk_digest, None, base, offsets, resumed)

    def _launch_stored(self, executor: ChunkExecutor, chunk: Chunk) -> _InFlight:
        """A chunk from the job file; with ``retry_failed`` its stored failures run again.

        Otherwise its results are read when collected, unless ``quarantine_damaged``
        asks to read them now: a damaged chunk is quarantined and run again whole.
        """
        if not (self._retry_failed or self._quarantine_damaged):
            return _InFlight(chunk.start, None, items=chunk.items)
        assert self._store is not None
        try:
            values = self._store.load(chunk.start, chunk.items)
        except DamagedChunkError as damaged:
            if not self._quarantine_damaged:
                raise
            self._store.quarantine(damaged)
            self._counters.quarantined += 1
            return self._launch(executor, replace(chunk, stored=False))
        if not self._retry_failed:
            return _InFlight(chunk.start, None, base=values)
        offsets = [offset for offset, v in enumerate(values) if isinstance(v, ItemFailure)]
        if not offsets:
            return _InFlight(chunk.start, None, base=values)
        resumed = len(values) - len(offsets)
        return self._launch_part(executor, chunk, digest(chunk.items), values, offsets, resumed)

    def _launch_shippable(
        self, executor: ChunkExecutor, chunk: Chunk, chunk_digest: bytes
    ) -> _InFlight:
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

    def _next_entry(self, pipeline: deque[_InFlight], bar: Any) -> _InFlight:
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

    def _ready(self, pipeline: deque[_InFlight]) -> _InFlight | None:
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

    def _settle_finished(self, pipeline: deque[_InFlight], bar: Any) -> None:
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

    def _settle(self, entry: _InFlight, ran: ChunkResult, bar: Any) -> None:
        """Per finished chunk: feed the controller, commit, count, notify."""
        result = ran if entry.offsets is None else _merged(entry, ran)
        entry.settled = result
        self._unsettled_items -= ran.size
        if ran.size:
            self._item_cost = ran.duration / ran.size
            self.controller.observe(ran.size, ran.duration, ok=ran.failed < ran.size)
        if self._store is not None:
            self._store.commit(entry.start, entry.start + result.size, entry.digest, result.values)
        if result.failed:
            failures = [v for v in result.values if isinstance(v, ItemFailure)]
            for failure in failures:
                _release_frames(failure.error)
            self._failures.extend(failures)
            self._counters.errors.update(result.error_types)
        self._account(result.size, result.failed, bar, resumed=entry.resumed)
        size = result.size - entry.resumed
        notify(
            self._listeners,
            BatchRecord(
                engine="bulk",
                size=size,
                duration=result.duration,
                succeeded=size - result.failed,
                failed=result.failed,
                error_types=result.error_types,
                queue_depth=self._unsettled_items,
                name=self.name,
            ),
        )

    def _account(self, size: int, failed: int, bar: Any, resumed: int = 0) -> None:
        counters = self._counters
        counters.done += size
        counters.failed += failed
        counters.chunks += 1
        counters.resumed += resumed
        if bar is not None:
            bar.update(size)
        if self._on_progress is not None:
            try:
                self._on_progress(self.progress())
            except Exception:
                _log.exception("on_progress callback %r failed", self._on_progress)

    def _collect(self, entry: _InFlight, bar: Any) -> list[Any]:
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
        if not self._progress_bar:
            return None
        from tqdm.auto import tqdm

        return tqdm(total=self._total, desc=self.name or "map_batches", unit="item")


def _release_frames(error: BaseException) -> None:
    """Drop the tracebacks of a kept failure's exception and of its causes.

    A traceback's frames hold the chunk, the executor's and the isolation's frames
    alive (each finished frame also keeps its caller's): about 290 KB per failure,
    so `BulkRun.failures` grew without bound on a long job. Failures from process,
    Dask and Ray workers arrive without a traceback anyway; the message and the
    exception's type stay.
    """
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        current.__traceback__ = None
        current = current.__cause__ or current.__context__


def _merged(entry: _InFlight, ran: ChunkResult) -> ChunkResult:
    """A whole chunk's result: ``entry.base`` with the items at ``entry.offsets`` replaced."""
    assert entry.base is not None and entry.offsets is not None
    values = list(entry.base)
    for offset, value in zip(entry.offsets, ran.values, strict=True):
        if isinstance(value, ItemFailure):
            value = ItemFailure(entry.start + offset, value.item, value.error)
        values[offset] = value
    errors = Counter(type(v.error).__name__ for v in values if isinstance(v, ItemFailure))
    return ChunkResult(entry.start, values, ran.duration, sum(errors.values()), dict(errors))


def _raising(error: Exception) -> Iterator[Any]:
    """An iterator that raises ``error`` when first advanced."""
    raise error
    yield  # makes this a generator


def map_batches(
    fn: Callable[[list[Any]], Any],
    items: Iterable[Any],
    *,
    batch_size: BatchSize = "auto",
    executor: Any = None,
    workers: int | None = None,
    job: str | None = None,
    retry_failed: bool = False,
    quarantine_damaged: bool = False,
    serializer: str = "json",
    ordered: bool = True,
    progress: bool = False,
    fail_fast: bool = False,
    retry: RetryPolicy = NO_RETRY,
    on_progress: Callable[[BulkProgress], object] | None = None,
    listeners: Iterable[BatchListener | Callable[[BatchRecord], object]] = (),
    name: str = "",
    clock: Clock = SYSTEM_CLOCK,
    cost: Callable[[Any], float] | None = None,
    max_batch_cost: float = math.inf,
    padded: bool = False,
    sort_window: int = DEFAULT_SORT_WINDOW,
    is_oom: Callable[[BaseException], bool] | None = None,
) -> BulkRun:
    """Apply a batch function to every item of a (possibly huge, lazy) iterable.

    Args:
        fn: takes a list of items, returns a list of as many results (an ``async
            def`` function runs on ``executor="asyncio"``).
        items: any iterable; read lazily, one chunk at a time.
        batch_size: ``"auto"`` (chunks sized to take about 0.1 s, starting at 1
            and at most doubling per step, up to 65,536, and shrinking at the end
            of an input with a length so workers finish together), a fixed int,
            or any core `SizeController` (``Fixed``, ``AIMD``, ``TargetLatency``...).
        executor: None (default: ``"asyncio"`` for an ``async def`` function,
            else ``"threads"``), ``"threads"``, ``"processes"``, ``"asyncio"``, ``"dask"`` (a local
            Dask cluster), ``"ray"`` (``ray.init`` if not running), ``"serial"`` (the
            calling thread), a ``dask.distributed.Client``, or any `ChunkExecutor`.
        workers: threads/processes/Dask workers/Ray CPUs, or the asyncio concurrency
            limit; default: CPU count (8 for asyncio).
        job: path of a SQLite job file: results are committed per chunk and a rerun
            of the same input resumes, skipping chunks already stored. One run at
            a time may use a job file (`JobInUseError` otherwise).
        retry_failed: with ``job``, run again the items the job file recorded as
            failed (their new outcomes replace the stored ones); other stored
            results are reused as they are.
        quarantine_damaged: with ``job``, a stored chunk whose results are damaged
            (they do not decode, or not one per item) is moved to the file's
            ``quarantined_chunks`` table, logged, counted in
            ``stats()["chunks_quarantined"]``, and its items run again; the other
            chunks are read as usual. Without it such a chunk raises
            `DamagedChunkError`. A file that cannot be read at all raises either way.
        serializer: how ``job`` stores results: ``"json"`` (plain data and numpy
            arrays; opening the file never runs code from it) or ``"pickle"`` (any
            picklable result; only for job files you trust, and needed to resume
            files written by batchpilot 0.1).
        ordered: yield results in input order (default) or as chunks complete.
        progress: show a tqdm progress bar.
        fail_fast: raise the first failure instead of isolating failing items.
        retry: how often a failing chunk is retried before bisecting.
        on_progress: called with a `BulkProgress` after every chunk (an exception
            from it is logged, like a listener's, and does not stop the run).
        listeners: get one `BatchRecord` per chunk run (``engine="bulk"``).
        name: names the run in records, progress bar and ``repr``.
        clock: time source for progress and, with local executors, for chunk
            durations and retry waits (remote workers use their own clock).
        cost: an item's cost (e.g. its token count). With it, a chunk is a window
            of ``sort_window`` items cut into batches of at most ``batch_size``
            items (an int; ``"auto"``: the window) and ``max_batch_cost``; ``fn``
            runs once per batch. An item over budget runs alone.
        max_batch_cost: the budget of one batch, in cost units (with ``cost``).
        padded: a batch costs its largest item's cost times its size (every row
            padded to the longest), not the sum of its items' costs.
        sort_window: items regrouped by cost together (0: first in, first out).
        is_oom: says whether an exception of ``fn`` is out of memory (default:
            `MemoryError` and torch's ``OutOfMemoryError``); such a batch is split
            by cost and the budget lowered, then raised again after successes.

    Returns:
        A `BulkRun`: iterate it for the results; ``ItemFailure`` marks failed items.

    Raises:
        TypeError: ``fn`` is not callable, ``items`` not iterable, ``fn`` cannot be
            pickled for a process/Dask/Ray executor, or ``fn``'s kind (sync/async)
            does not suit the executor.
        ValueError: an invalid option.
        JobMismatchError: ``job`` belongs to another input, a newer format or
            another serializer (a pickle file needs ``serializer="pickle"``).
        JobInUseError: another process (or open run) is using ``job``.
        DamagedChunkError: (a `JobFileError`, from the iterator) a stored chunk
            of ``job`` is damaged, without ``quarantine_damaged``.
        JobFileError: ``job`` is damaged, or a directory.
    """
    if not callable(fn):
        raise TypeError(f"fn must be callable (a batch function), got {type(fn).__name__}")
    try:
        iter(items)
    except TypeError:
        raise TypeError(f"items must be iterable, got {type(items).__name__}") from None
    if cost is not None:
        fn, batch_size = cost_grouped(
            fn,
            batch_size,
            cost=cost,
            max_batch_cost=max_batch_cost,
            padded=padded,
            sort_window=sort_window,
            is_oom=is_oom,
        )
    controller = make_controller(batch_size)
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int)):
        raise TypeError(f"workers must be an int or None, got {workers!r}")
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    is_async = is_async_callable(fn)
    if executor is None:
        executor = "asyncio" if is_async else "threads"
    spec = resolve_executor(executor)
    if is_async != (spec.kind == "asyncio"):
        needs = "executor='asyncio'" if is_async else "a plain function, not async def"
        raise TypeError(f"{fn!r} with executor={spec.describe()}: this needs {needs}")
    spec.check_picklable(fn)
    if not isinstance(retry, RetryPolicy):
        raise TypeError(f"retry must be a RetryPolicy, got {type(retry).__name__}")
    if job is not None and not isinstance(job, str):
        job = str(job)
    if not isinstance(retry_failed, bool):
        raise TypeError(f"retry_failed must be a bool, got {retry_failed!r}")
    if serializer not in SERIALIZERS:
        raise ValueError(f"serializer must be one of {SERIALIZERS}, got {serializer!r}")
    if retry_failed and job is None:
        raise ValueError("retry_failed=True needs a job file (job=...) to take failures from")
    if not isinstance(quarantine_damaged, bool):
        raise TypeError(f"quarantine_damaged must be a bool, got {quarantine_damaged!r}")
    if quarantine_damaged and job is None:
        raise ValueError("quarantine_damaged=True needs a job file (job=...)")
    return BulkRun(
        fn,
        items,
        controller=controller,
        balance_tail=batch_size == "auto",
        executor=spec,
        workers=workers,
        job=job,
        retry_failed=retry_failed,
        quarantine_damaged=quarantine_damaged,
        serializer=serializer,
        ordered=ordered,
        progress=progress,
        fail_fast=fail_fast,
        retry=retry,
        on_progress=on_progress,
        listeners=[as_listener(hook) for hook in listeners],
        name=name,
        clock=clock,
    )


publish(__name__, globals(), __all__)
