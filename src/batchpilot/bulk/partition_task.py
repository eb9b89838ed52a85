"""One partition's work, on a worker: read it, run the batch function, write its part.

`run_partition` is what the driver submits, once per partition, to any executor
(threads, processes, Dask, Ray). It reads the partition from its `Source` in the
run's batch format, calls the batch function once per batch, and writes each
result straight to the partition's part of the `Sink` (converted to a
``pyarrow.Table``), with no per-row Python for the columnar formats. The part is
committed at the end, atomically; on any error it is aborted, so a partition is
either wholly written or not at all. Only a small `PartitionReport` travels back,
unless the run has no sink: then the results do, for the caller to iterate.

A batch whose call raises is retried (the run's `RetryPolicy`), then bisected into
row slices until each failing row is alone (`batchpilot._core.isolation`); the
healthy slices' results are written, and each failing row is reported with its
file and line (`RowFailure`), like a row the reader could not parse.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .._core.formats import row_count, take_rows, to_arrow
from .._core.isolation import run_isolated
from .._core.retry import RetryPolicy
from ..errors import BatchFailedError
from ..sinks.part import PartInfo, PartWriter, Sink
from ..sources.partition import Batch, Partition, RowError, Source
from .models import take_setups

__all__ = ["PartitionFailed", "PartitionReport", "PartitionTask", "RowFailure", "run_partition"]


@dataclass(frozen=True)
class RowFailure:
    """A row that failed: where it is in the input and why (``Type: message``)."""

    path: str
    line: int
    error: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.error}"


class PartitionFailed(Exception):
    """With ``fail_fast``, the first failed row stops its partition (and the run)."""

    def __init__(self, failure: RowFailure) -> None:
        super().__init__(str(failure))
        self.failure = failure

    def __reduce__(self) -> tuple[Any, ...]:
        return (PartitionFailed, (self.failure,))


@dataclass(frozen=True)
class PartitionTask:
    """What a worker needs to run one partition; small and picklable."""

    source: Source
    partition: Partition
    sink: Sink | None  # None: the results travel back in the report
    batch_format: str
    batch_rows: int
    fail_fast: bool
    retry: RetryPolicy


@dataclass(frozen=True)
class PartitionReport:
    """What a finished partition sends back to the driver."""

    partition: int
    rows: int  # rows read from the input, malformed ones included
    failures: tuple[RowFailure, ...]  # rows unreadable or failed by the function
    part: PartInfo | None  # the committed part (None without a sink)
    outputs: tuple[Any, ...]  # the results, batch by batch, only without a sink
    batches: int  # calls of the batch function that returned
    seconds: float  # wall time on the worker
    worker: str  # ``host:pid`` of the process that ran it
    setups: int = 0  # model classes set up while running it (once per worker: see models)


def run_partition(fn: Callable[[Any], Any], task: PartitionTask) -> PartitionReport:
    """Run ``fn`` over ``task``'s partition and commit its part (on a worker)."""
    started = time.perf_counter()
    writer = task.sink.open_part(task.partition.index) if task.sink is not None else None
    apply = _Applier(fn, task)
    try:
        for batch in task.source.read(task.partition, task.batch_format, task.batch_rows):
            apply(batch, writer)
        part = writer.commit() if writer is not None else None
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    return PartitionReport(
        partition=task.partition.index,
        rows=apply.rows,
        failures=tuple(apply.failures),
        part=part,
        outputs=tuple(apply.outputs),
        batches=apply.calls,
        seconds=time.perf_counter() - started,
        worker=f"{socket.gethostname()}:{os.getpid()}",
        setups=take_setups(),
    )


class _Applier:
    """Calls the batch function on each batch and routes its results and failures."""

    def __init__(self, fn: Callable[[Any], Any], task: PartitionTask) -> None:
        self._fn = fn
        self._task = task
        self._records = task.batch_format == "records"  # results are per row
        self.rows = 0
        self.calls = 0
        self.failures: list[RowFailure] = []
        self.outputs: list[Any] = []

    def __call__(self, batch: Batch, writer: PartWriter | None) -> None:
        for error in batch.errors:
            self._fail(_read_failure(error))
        size = row_count(batch.data)
        self.rows += size + len(batch.errors)
        if size == 0:
            return
        try:
            results = [self._call(batch.data, size)]
        except Exception as error:
            if self._task.fail_fast:  # the batch's first row stands for where it failed
                failure = RowFailure(batch.path, batch.lines[0], _describe(error))
                raise PartitionFailed(failure) from error
            results = self._isolated(batch, size, error)
        for result in results:
            if writer is not None:
                writer.write(to_arrow(result))
            else:
                self.outputs.append(result)

    def _call(self, data: Any, size: int) -> Any:
        result = self._fn(data)
        self.calls += 1
        if self._records:
            result = _rows(result, size)
        return result

    def _isolated(self, batch: Batch, size: int, error: Exception) -> list[Any]:
        """The results of ``batch``'s healthy row slices, after its whole call raised
        ``error``; its failing rows reported."""
        first: list[Exception] = [error]  # the whole batch's first reply, already had

        def call(start: int, stop: int) -> Sequence[Any]:
            if first and (start, stop) == (0, size):
                raise first.pop()
            data = batch.data if (start, stop) == (0, size) else take_rows(batch.data, start, stop)
            result = self._call(data, stop - start)
            if self._records:
                return result  # one result per row
            return [result, *[None] * (stop - start - 1)]  # the slice's table, on its first row

        outcomes = run_isolated(call, size, self._task.retry, time.sleep)
        results: list[Any] = []
        rows: list[Any] = []
        for line, outcome in zip(batch.lines, outcomes, strict=False):
            if not outcome.ok:
                self.failures.append(RowFailure(batch.path, line, _describe(outcome.value)))
            elif self._records:
                rows.append(outcome.value)
            elif outcome.value is not None:
                results.append(outcome.value)
        return [rows] if self._records and rows else results

    def _fail(self, failure: RowFailure) -> None:
        self.failures.append(failure)
        if self._task.fail_fast:
            raise PartitionFailed(failure)


def _rows(result: Any, size: int) -> Any:
    """A records batch's results, checked to be one per input row (a dict is a row of
    its keys, any other value a row of ``result``: `to_arrow`)."""
    if not isinstance(result, (list, tuple)) or len(result) != size:
        got = f"{len(result)} results" if hasattr(result, "__len__") else type(result).__name__
        raise BatchFailedError(
            f"the batch function must return one result per row: {size} rows, got {got}"
        )
    return result


def _read_failure(error: RowError) -> RowFailure:
    return RowFailure(error.path, error.line, error.message)


def _describe(error: BaseException) -> str:
    try:
        return f"{type(error).__name__}: {error}"
    except Exception:  # an exception whose __str__ raises
        return type(error).__name__
