"""`map_batches`: the bulk engine's entry point (see the package docstring)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, overload

from .._core.keywords import fn_items_and_options_as_keywords
from ..sources.partition import Source
from .options import BulkOptions
from .partitioned import PartitionedRun
from .run import BulkRun

__all__ = ["map_batches"]


@overload
@fn_items_and_options_as_keywords(BulkOptions)
def map_batches(fn: Callable[[Any], Any] | type, items: Source) -> PartitionedRun: ...


@overload
@fn_items_and_options_as_keywords(BulkOptions)
def map_batches(fn: Callable[[list[Any]], Any] | type, items: Iterable[Any]) -> BulkRun: ...


@fn_items_and_options_as_keywords(BulkOptions)
def map_batches(
    fn: Callable[[Any], Any] | type, items: Iterable[Any] | Source, **options: Any
) -> BulkRun | PartitionedRun:
    """Apply a batch function to every item of a (possibly huge, lazy) iterable.

    Args:
        fn: takes a list of items, returns a list of as many results (an ``async
            def`` function runs on ``executor="asyncio"``); or a model class, with
            ``predict(self, batch)`` doing that and optionally ``setup(self)``: it is
            instantiated and set up once per worker process, Dask worker or Ray
            actor (once per run on threads, asyncio, serial), and reused for every
            chunk there; ``statistics().model_setups`` counts the setups.
        items: any iterable; read lazily, one chunk at a time. Or a partitioned
            `batchpilot.sources` Source: its partitions are read, run and written by
            the workers themselves (`PartitionedRun`; docs/partitions.md).
        batch_size: ``"auto"`` (chunks sized to take about 0.1 s, starting at 1
            and at most doubling per step, up to 65,536, and shrinking at the end
            of an input with a length so workers finish together), a fixed int,
            or any core `SizeController` (``Fixed``, ``AIMD``, ``TargetLatency``...).
        executor: None (default: ``"asyncio"`` for an ``async def`` function,
            else ``"threads"``), ``"threads"``, ``"processes"``, ``"asyncio"``, ``"dask"`` (a local
            Dask cluster), ``"ray"`` (``ray.init`` if not running; a model class runs
            on a pool of ``workers`` actors), ``"serial"`` (the calling thread), a
            ``dask.distributed.Client``, a `RayExecutor` (e.g. ``actors=True,
            num_gpus=1``: what each actor reserves), or any `ChunkExecutor`.
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
        listeners: get one `BatchRecord` per chunk run (``engine="bulk"``); with
            ``cost``, one per batch run inside a chunk (saying why it closed and
            what it cost) and one for a chunk's items that failed alone.
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
        batch_format: with a Source, what ``fn`` gets and returns: ``"records"`` (a
            list of dicts, one result per row; the default), ``"pyarrow"`` (a
            ``pyarrow.Table``), ``"pandas"`` (a DataFrame) or ``"numpy"`` (a dict of
            arrays); a columnar result may have any number of rows.
        sink: with a Source, a `batchpilot.sinks` Sink each worker writes its
            partition's part to; the run then yields each committed `PartInfo`.

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
    run_options = BulkOptions(**options)
    if isinstance(items, Source):
        return PartitionedRun(fn, items, run_options)
    if run_options.batch_format is not None or run_options.sink is not None:
        raise ValueError("batch_format= and sink= need a partitioned source (batchpilot.sources)")
    try:
        iter(items)
    except TypeError:
        raise TypeError(f"items must be iterable, got {type(items).__name__}") from None
    return BulkRun(fn, items, run_options)
