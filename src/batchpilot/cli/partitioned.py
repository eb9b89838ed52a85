"""``batchpilot run`` over a partitioned input: the workers read and write their own data.

A run is partitioned (`is_partitioned`) when its input is a folder, a glob, an
fsspec URL or several files, or when ``--batch-format`` is given. It runs on the
partitioned engine (`batchpilot.bulk.PartitionedRun`, docs/partitions.md): the
input is a `batchpilot.sources` source, the output a `batchpilot.sinks` sink
(part files in a folder or URL, or a database table), and the job file records
finished partitions.

Choices (docs/cli.md, "Partitioned inputs"):

* The job file is ``OUT.job.sqlite`` beside a local output folder; an output that
  is a remote URL or a database needs ``--job FILE``. As for one file, a run
  refuses an existing job file unless ``--resume`` (and ``--resume`` needs one),
  and the job file is deleted when the run completes.
* Failed rows are listed, one JSON line each with their ``file``, ``line`` and
  ``error``, in ``OUT/_errors.jsonl`` (a folder output, before ``_SUCCESS``) or
  in ``JOB.errors.jsonl`` (a database output).
* ``--max-failures`` and the systematic-failure rule are checked by the driver
  after each partition's report; ``--fail-fast`` stops at the first failed row.
  Either way the partitions in flight are cancelled and the finished ones stay
  in the job file for ``--resume``.
"""

from __future__ import annotations

import contextlib
import glob
import inspect
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .._core.models import is_model_class
from .common import CliError
from .early_stop import guard
from .executors import executor_for, require_installed
from .functions import as_batch_function, load_function
from .job import job_files
from .records_io import STDIO
from .run_metrics import metrics_exporter
from .run_options import RunOptions
from .runner import RunSummary
from .signals import exit_on_sigint

__all__ = ["BATCH_FORMATS", "PART_FORMATS", "is_partitioned", "run_partitioned"]

BATCH_FORMATS = ("records", "pyarrow", "pandas", "numpy")
PART_FORMATS = ("parquet", "jsonl")
#: Where the failed rows of a folder output are listed (``_``: dataset readers skip it).
ERRORS_NAME = "_errors.jsonl"
_DATABASE_PREFIXES = ("sqlite:", "postgresql:", "postgresql+", "postgres:")


def inputs_of(options: RunOptions) -> list[str]:
    """The ``--input`` values of ``options``, as strings."""
    return [os.fspath(value) for value in (options.input_path, *options.more_inputs)]


def is_partitioned(options: RunOptions) -> bool:
    """Whether the run goes to the partitioned engine (else one file through the driver)."""
    paths = inputs_of(options)
    return options.batch_format is not None or len(paths) > 1 or _is_dataset(paths[0])


def _is_dataset(path: str) -> bool:
    return path != STDIO and ("://" in path or glob.has_magic(path) or os.path.isdir(path))


def _is_database(output: str) -> bool:
    return output.startswith(_DATABASE_PREFIXES)


def _is_local(output: str) -> bool:
    return "://" not in output or output.startswith("file://")


def run_partitioned(options: RunOptions) -> RunSummary:
    """Run ``options.function`` over a partitioned input into a folder or a database.

    Raises:
        CliError: Bad function, input, output, options or job state (nothing run).
    """
    from .. import sinks, sources

    started = time.perf_counter()
    _check_options(options)
    if options.executor is not None:
        require_installed(options.executor)
    fn = load_function(options.function)
    if inspect.iscoroutinefunction(fn):
        raise CliError(f"{options.function} is an async def: a partitioned run needs a plain one")
    output = os.fspath(options.output_path)
    storage = dict(options.storage_options or {})
    source = sources.files(inputs_of(options), schema=options.schema, storage_options=storage)
    try:
        listing = source.listing()
    except (FileNotFoundError, ValueError) as exc:
        raise CliError(str(exc)) from None
    sink: Any
    if _is_database(output):
        if options.key is None:
            raise CliError("--key COLUMN is needed to write into a database (its unique key)")
        sink = sinks.database(output, options.table, key=options.key)
    else:
        parquet = all(entry.path.endswith((".parquet", ".pq")) for entry in listing)
        fmt = options.output_format or ("parquet" if parquet else "jsonl")
        sink = (sinks.parquet if fmt == "parquet" else sinks.jsonl)(output, storage_options=storage)
    job = _job_path(options, output)
    errors = _Failures(output, job, storage)
    batch_fn = guard(as_batch_function(fn, options.per_item), options.systematic_failures)
    summary = RunSummary()
    stop = _StopRules(options.max_failures)
    with metrics_exporter(options.metrics_port) as listeners:
        run = stop.run = _start(
            options, batch_fn, source, sink, job, listeners, stop, model=is_model_class(fn)
        )
        summary.stopped = _drive(run, options, errors)
        stats = run.stats()
    summary.items, summary.resumed = stats["rows"], stats["rows_resumed"]
    summary.failed = len(run.failures)
    if summary.stopped is not None:
        summary.stopped += f"; --resume continues from the checkpoint {job}"
        return summary
    for path in job_files(job):
        if not path.is_dir():
            path.unlink(missing_ok=True)
    if run.failures:
        first = min(run.failures, key=_where)
        summary.first_failure = (first.line, first.error)
        summary.failure_file = first.path
        summary.failures_listed = errors.location
    summary.seconds = time.perf_counter() - started
    return summary


def _check_options(options: RunOptions) -> None:
    """Refuse what a partitioned run does not do, and a job file state it cannot use."""
    output = os.fspath(options.output_path)
    if STDIO in (*inputs_of(options), output):
        raise CliError(f"a partitioned run reads and writes files or URLs, not {STDIO}")
    refused = {
        "--retry-failed": options.retry_failed,
        "--line-column": options.line_column is not None,
        f"--if-exists {options.if_exists}": options.if_exists != "fail",
        "--executor asyncio": options.executor == "asyncio",
    }
    for option, given in refused.items():
        if given:
            raise CliError(f"{option} does not apply to a partitioned run (docs/cli.md)")
    if options.per_item and (options.batch_format or "records") != "records":
        raise CliError("--per-item needs --batch-format records")
    if _is_database(output) and options.output_format is not None:
        raise CliError("--output-format applies to a folder output, not a database")


def _job_path(options: RunOptions, output: str) -> Path:
    """The job file: ``--job``, else ``OUT.job.sqlite`` beside a local folder; checked
    against ``--resume`` as for one file."""
    if options.job is not None:
        job = options.job
    elif _is_local(output) and not _is_database(output):
        folder = Path(output.removeprefix("file://").rstrip("/") or "/")
        job = folder.with_name(folder.name + ".job.sqlite")
    else:
        raise CliError(
            f"--job FILE (a local file) is needed to checkpoint a run writing to {output}"
        )
    if job.is_dir():
        raise CliError(f"--job is a directory, not a file: {job}")
    if not job.parent.is_dir():
        raise CliError(f"folder of the job file not found: {job.parent}")
    if options.resume and not job.exists():
        raise CliError(f"nothing to resume: no checkpoint {job}")
    if not options.resume and job.exists():
        raise CliError(
            f"{job} holds an interrupted run of this job: pass --resume to continue it, "
            "delete it to start over, or pass --job FILE to keep it and use another job file"
        )
    return job


def _start(
    options: RunOptions, batch_fn: Callable[..., Any], source: Any, sink: Any, job: Path,
    listeners: list[Any], on_progress: Callable[[Any], None], model: bool,
) -> Any:  # fmt: skip
    """The partitioned run (not yet started); options the engine rejects are a `CliError`."""
    from ..bulk import map_batches

    executor = options.executor or "threads"
    address = options.address
    runs_on = executor_for(executor, address, options.workers, actors=model)
    output = os.fspath(options.output_path)
    try:
        return map_batches(
            batch_fn, source, batch_format=options.batch_format or "records", sink=sink,
            job=str(job), executor=runs_on, workers=options.workers, batch_size=options.batch_size,
            fail_fast=options.fail_fast, progress=options.progress, listeners=listeners,
            on_progress=on_progress,
            name=output.rstrip("/").rsplit("/", 1)[-1],
        )  # fmt: skip
    except (TypeError, ValueError) as exc:
        if not isinstance(runs_on, str):
            runs_on.shutdown()
        raise CliError(f"{options.function}: {exc}") from None


def _drive(run: Any, options: RunOptions, errors: _Failures) -> str | None:
    """Run to the end (None) or until a stop rule says why not (the reason)."""
    from ..bulk.checkpoint import JobFileError
    from ..bulk.partition_task import PartitionFailed
    from ..errors import ConfigError

    written = 0
    with contextlib.ExitStack() as stack:
        if options.abandon_on_interrupt:
            stack.enter_context(exit_on_sigint(options.progress))
        try:
            for _ in run:
                written += 1
                if written == run.stats()["partitions_total"]:
                    errors.write(run.failures)  # before the sink's _SUCCESS
        except PartitionFailed as failed:
            return f"--fail-fast: {failed.failure}"
        except (JobFileError, ConfigError, FileNotFoundError) as exc:
            raise CliError(str(exc)) from None
        finally:
            run.close()
    return run.stopped


class _StopRules:
    """``on_progress`` of the run: stop it when too many rows failed, or systematically."""

    def __init__(self, max_failures: int | None) -> None:
        self.run: Any = None  # the run it watches, set once made
        self._max = max_failures
        self._seen = 0

    def __call__(self, progress: Any) -> None:
        failures = self.run.failures
        new, self._seen = failures[self._seen :], len(failures)
        if not failures:
            return
        first = f" (first: {min(failures, key=_where)})"
        systematic = next((f for f in new if f.error.startswith("SystematicFailure:")), None)
        if systematic is not None:
            self.run.stop(systematic.error.removeprefix("SystematicFailure: ") + first)
        elif self._max is not None and len(failures) > self._max:
            self.run.stop(f"more than --max-failures {self._max} records failed{first}")


def _where(failure: Any) -> tuple[str, int]:
    return (failure.path, failure.line)


class _Failures:
    """The failures list: ``OUT/_errors.jsonl`` of a folder, ``JOB.errors.jsonl`` of a database."""

    def __init__(self, output: str, job: Path, storage: dict[str, Any]) -> None:
        self._storage = storage
        if _is_database(output):
            self.location = str(job.with_name(job.name + ".errors.jsonl"))
        elif "://" in output:
            self.location = output.rstrip("/") + "/" + ERRORS_NAME
        else:
            self.location = os.path.join(os.path.abspath(output), ERRORS_NAME)

    def write(self, failures: list[Any]) -> None:
        """Write ``failures`` sorted by file and line (or remove a stale list)."""
        import fsspec

        opened = fsspec.open(self.location, "w", encoding="utf-8", **self._storage)
        if not failures:
            if opened.fs.exists(opened.path):
                opened.fs.rm(opened.path)
            return
        with opened as file:
            for failure in sorted(failures, key=_where):
                line = {"file": failure.path, "line": failure.line, "error": failure.error}
                file.write(json.dumps(line) + "\n")
