"""`PartitionedRun`: `map_batches` over a partitioned source, where workers do the I/O.

The driver plans and records; the workers read, compute and write (DESIGN.md,
"Partitions"). The driver asks the `Source` for its partitions (metadata only),
skips those the job file records as finished, and submits one `run_partition`
task per partition to the executor, keeping its slots busy. Each task reads its
own partition, runs the batch function batch by batch and commits its own part of
the `Sink`; the driver gets back a small `PartitionReport`, records the partition
in the job file (`PartitionLedger`), counts it, and when every partition is
finished writes the sink's manifest and ``_SUCCESS``. Rows travel back to the
driver only without a sink, for the caller to iterate.

Iterating the run drives it: it yields, in partition order, each partition's
committed `PartInfo` (with a sink, resumed partitions included) or its results,
batch by batch (without one). A task that raises (an unreadable file, a sink that
refuses a write, `PartitionFailed` under ``fail_fast``) stops the run: the
partitions in flight are cancelled, the error is raised from the iterator, and the
finished ones stay recorded, so a rerun with the same job file goes on from there.
`stop` (e.g. from ``on_progress``, once too many rows failed) ends the iteration the
same way, without an error: `stopped` says why, and no manifest is written.

Each finished partition is also one `BatchRecord` for ``listeners`` (its rows, its
failed rows by exception type, its seconds on the worker), which is how
``--metrics-port`` aggregates what the workers did.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

from .._core.events import BatchRecord, notify
from .._core.formats import check_batch_format
from ..sinks.part import PartInfo, Sink
from ..sources.partition import Partition, Source
from .executors import ChunkExecutor
from .ledger import PartitionLedger, plan_digest
from .options import BulkOptions
from .partition_task import PartitionReport, PartitionTask, RowFailure, run_partition
from .statistics import BulkProgress

__all__ = ["DEFAULT_BATCH_ROWS", "PartitionedRun"]

_log = logging.getLogger("batchpilot")

DEFAULT_BATCH_ROWS = 65_536
"""Rows per call of the batch function with ``batch_size="auto"`` (Arrow's batch size)."""

_UNSUPPORTED = ("cost", "retry_failed", "quarantine_damaged")


class PartitionedRun(Iterator[Any]):
    """The run of `map_batches` over a `Source`: iterate it (or call `wait`) to run it."""

    def __init__(
        self, fn: Callable[[Any], Any] | type, source: Source, options: BulkOptions
    ) -> None:
        """Check the options; nothing is read or run before the first ``next()``.

        Raises:
            ValueError: an option a partitioned run does not take, ``job`` without
                ``sink``, or an unknown ``batch_format``.
            TypeError: ``sink`` is not a `Sink`, or ``fn`` cannot be shipped to the
                executor's workers.
        """
        for name in _UNSUPPORTED:
            if getattr(options, name) not in (None, False, ()):
                raise ValueError(f"{name}= is not supported with a partitioned source")
        if options.sink is not None and not isinstance(options.sink, Sink):
            raise TypeError(f"sink must be a batchpilot.sinks Sink, got {options.sink!r}")
        if options.job is not None and options.sink is None:
            raise ValueError(
                "job= with a partitioned source needs sink=: a finished partition's results "
                "are kept in its part of the sink, not in the job file"
            )
        if not (options.batch_size == "auto" or isinstance(options.batch_size, int)):
            raise TypeError("batch_size must be an int or 'auto' with a partitioned source")
        self._fn, self._spec = options.bind_partitioned(fn)
        self._source = source
        self._sink: Sink | None = options.sink
        self._options = options
        self._format = check_batch_format(options.batch_format or "records")
        self._rows = DEFAULT_BATCH_ROWS if options.batch_size == "auto" else options.batch_size
        self.failures: list[RowFailure] = []  # every failed row, resumed partitions' included
        self._counts = {
            "partitions": 0, "done": 0, "resumed": 0, "rows": 0, "batches": 0, "setups": 0
        }  # fmt: skip
        self._resumed_rows = 0
        self._workers: set[str] = set()
        self._parts: dict[int, PartInfo] = {}  # every committed part, resumed ones included
        self._started = 0.0
        self._stream: Iterator[Any] | None = None
        self.stopped: str | None = None  # why `stop` ended the run (None: it did not)

    def __next__(self) -> Any:
        if self._stream is None:
            self._stream = self._run()
        return next(self._stream)

    def wait(self) -> dict[str, Any]:
        """Run to the end (dropping what iteration would yield); return `stats`."""
        for _ in self:
            pass
        return self.stats()

    def close(self) -> None:
        """Stop the run: cancel partitions in flight, release the executor and job file."""
        if self._stream is not None:
            self._stream.close()  # type: ignore[attr-defined]

    def stop(self, reason: str) -> None:
        """End the run once the partition being settled is counted (call it from
        ``on_progress``, in the driver): the partitions in flight are cancelled, the
        iteration ends without an error, `stopped` is ``reason``, and the sink's
        manifest and ``_SUCCESS`` are not written. The job file keeps the finished
        partitions for a rerun."""
        self.stopped = reason

    def __enter__(self) -> PartitionedRun:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def stats(self) -> dict[str, Any]:
        """A snapshot: partitions, rows, failed rows, batch calls, workers, rate."""
        elapsed = self._options.clock.now() - self._started if self._started else 0.0
        ran = self._counts["rows"] - self._resumed_rows
        return {
            "partitions_total": self._counts["partitions"],
            "partitions_done": self._counts["done"],
            "partitions_resumed": self._counts["resumed"],
            "rows": self._counts["rows"],
            "rows_resumed": self._resumed_rows,
            "rows_failed": len(self.failures),
            "batches": self._counts["batches"],
            "workers": len(self._workers),
            "model_setups": self._counts["setups"],
            "elapsed": elapsed,
            "rows_per_second": ran / elapsed if elapsed > 0 else 0.0,
        }

    def _run(self) -> Iterator[Any]:
        self._started = self._options.clock.now()
        plan = self._source.partitions()
        self._counts["partitions"] = len(plan)
        ledger = None
        if self._options.job is not None:
            digest = plan_digest(plan)
            settings = json.dumps({"batch_format": self._format, "sink": repr(self._sink)})
            fingerprint = self._source.fingerprint()
            ledger = PartitionLedger(self._options.job, fingerprint, digest, settings)
        bar = self._progress_bar(plan)
        executor: ChunkExecutor | None = None
        in_flight: dict[cf.Future[PartitionReport], int] = {}
        try:
            resumed = self._resume(ledger, bar)
            if self._sink is not None:
                # A reopened job file resumes even when it records no partition yet: a
                # part may have been committed just before the driver died.
                self._sink.prepare(resume=ledger is not None and not ledger.created)
            ready: dict[int, Any] = dict(resumed)  # what each finished partition yields
            pending = [p for p in plan if p.index not in resumed]
            if pending:
                executor = self._spec.build(self._options.workers)
            upcoming = 0  # the plan position yielded next
            while upcoming < len(plan):
                while pending and executor is not None and len(in_flight) < executor.slots:
                    partition = pending.pop(0)
                    task = self._task(partition)
                    in_flight[executor.submit(run_partition, self._fn, task)] = partition.index
                if in_flight:
                    finished, _ = cf.wait(in_flight, return_when=cf.FIRST_COMPLETED)
                    for future in finished:
                        del in_flight[future]
                        report = future.result()
                        self._settle(report, ledger, bar)
                        ready[report.partition] = report.part or report.outputs
                while upcoming < len(plan) and plan[upcoming].index in ready:
                    value = ready.pop(plan[upcoming].index)
                    upcoming += 1
                    if self._sink is not None:
                        yield value
                    else:
                        yield from value
                if self.stopped is not None:
                    return
            if self._sink is not None:
                self._sink.finish(sorted(self._parts.values(), key=_partition))
        finally:
            for future in in_flight:
                future.cancel()
            if executor is not None:
                executor.shutdown()
            if ledger is not None:
                ledger.close()
            if bar is not None:
                bar.close()

    def _resume(self, ledger: PartitionLedger | None, bar: Any) -> dict[int, PartInfo]:
        """The parts of the partitions ``ledger`` records as finished; counted as done."""
        if ledger is None:
            return {}
        parts: dict[int, PartInfo] = {}
        for index, (part, failures) in ledger.finished().items():
            parts[index] = self._parts[index] = part
            self.failures.extend(failures)
            self._counts["done"] += 1
            self._counts["resumed"] += 1
            self._counts["rows"] += part.rows + len(failures)
            self._resumed_rows += part.rows + len(failures)
        if parts:
            _log.info("resuming: %d partitions already finished", len(parts))
            if bar is not None:
                bar.update(self._resumed_rows)
        return parts

    def _task(self, partition: Partition) -> PartitionTask:
        return PartitionTask(
            source=self._source,
            partition=partition,
            sink=self._sink,
            batch_format=self._format,
            batch_rows=self._rows,
            fail_fast=self._options.fail_fast,
            retry=self._options.retry,
        )

    def _settle(self, report: PartitionReport, ledger: PartitionLedger | None, bar: Any) -> None:
        """Record and count a finished partition (its part is committed)."""
        if ledger is not None:
            ledger.record(report)
        if report.part is not None:
            self._parts[report.partition] = report.part
        self.failures.extend(report.failures)
        self._workers.add(report.worker)
        self._counts["done"] += 1
        self._counts["rows"] += report.rows
        self._counts["batches"] += report.batches
        self._counts["setups"] += report.setups
        if bar is not None:
            bar.update(report.rows)
        notify(self._options.hooks, _record(report, self._options.name or ""))
        if self._options.on_progress is not None:
            self._report_progress()

    def _report_progress(self) -> None:
        progress = BulkProgress(
            done=self._counts["rows"],
            failed=len(self.failures),
            chunks=self._counts["done"],
            elapsed=self._options.clock.now() - self._started,
            total=None,
            resumed=self._resumed_rows,
            chunk_size=self._rows,
        )
        try:
            self._options.on_progress(progress)  # type: ignore[misc]
        except Exception:
            _log.exception("on_progress callback failed")

    def _progress_bar(self, plan: list[Partition]) -> Any:
        if not self._options.progress:
            return None
        from tqdm.auto import tqdm

        known = all(p.rows is not None for p in plan)
        total = sum(p.rows or 0 for p in plan) if known else None
        return tqdm(total=total, desc=self._options.name or "map_batches", unit="row")

    def __repr__(self) -> str:
        return f"PartitionedRun(source={self._source!r}, sink={self._sink!r})"


def _record(report: PartitionReport, name: str) -> BatchRecord:
    """A finished partition as one batch record: its rows and failures, its seconds."""
    kinds: dict[str, int] = {}
    for failure in report.failures:
        kind = failure.error.split(":", 1)[0]
        kinds[kind] = kinds.get(kind, 0) + 1
    size = report.rows
    return BatchRecord(
        engine="bulk", size=size, duration=report.seconds, succeeded=size - len(report.failures),
        failed=len(report.failures), error_types=kinds, name=name, cost=size, padded_cost=size,
    )  # fmt: skip


def _partition(part: PartInfo) -> int:
    return part.partition
