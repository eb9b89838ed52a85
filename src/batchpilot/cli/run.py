"""``batchpilot run``: stream the records of a file through a batch function.

``batchpilot run MODULE:FUNC --input IN --output OUT`` streams the records of IN
(JSON Lines, CSV or Parquet) through ``FUNC`` on the bulk engine
(`batchpilot.map_batches`) and writes one row per successful record to OUT (JSON
Lines, SQLite or Parquet), in input order. Failed records go to
``OUT.errors.jsonl`` with their line numbers. Progress and results are
checkpointed in ``OUT.job.sqlite`` while the job runs, so ``--resume`` continues a
killed run; the checkpoint is deleted when the job completes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import inspect
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ..bulk.checkpoint import JobMismatchError
from .common import (
    EXIT_FAILED_ITEMS,
    EXIT_OK,
    INTERRUPTED,
    CliError,
    auto_or_positive_int,
    fail,
    port_number,
    positive_int,
)
from .records_io import (
    INPUT_FORMATS,
    OUTPUT_FORMATS,
    RecordSink,
    RecordSource,
    format_of,
    open_sink,
)

__all__ = [
    "RunSummary",
    "add_command",
    "errors_path",
    "job_path",
    "load_function",
    "run_job",
]

EXECUTORS = ("threads", "processes", "asyncio", "dask", "ray")
#: Rows handed to the output sink at a time.
_WRITE_CHUNK = 1024


def add_command(commands: Any) -> None:
    """Add the ``run`` subparser to ``commands`` (an argparse subparsers action)."""
    run = commands.add_parser(
        "run",
        help="run MODULE:FUNC over the records of a file",
        description="Stream the records of --input through FUNC on the bulk engine and "
        "write the results to --output, in input order. FUNC takes a list of records "
        "(dicts) and returns a list of results of the same length (or, with "
        "--per-item, takes one record and returns one result). A dict result is one "
        "output row; any other value becomes the row {'result': value}. Failed records "
        "are written to OUTPUT.errors.jsonl with their line numbers.",
        epilog="example: batchpilot run mymodel:score -i data.csv -o scores.sqlite",
    )
    run.add_argument("function", metavar="MODULE:FUNC", help="the function, e.g. mypkg.model:score")
    run.add_argument(
        "--input",
        "-i",
        required=True,
        type=Path,
        metavar="FILE",
        help=f"input file ({', '.join(sorted(INPUT_FORMATS))})",
    )
    run.add_argument(
        "--output",
        "-o",
        required=True,
        type=Path,
        metavar="FILE",
        help=f"output file, replaced when the job completes ({', '.join(sorted(OUTPUT_FORMATS))})",
    )
    run.add_argument(
        "--per-item", action="store_true", help="FUNC takes one record instead of a list"
    )
    run.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted run from its checkpoint (OUTPUT.job.sqlite)",
    )
    run.add_argument(
        "--workers",
        type=positive_int,
        default=None,
        metavar="N",
        help="parallel workers (default: CPU count)",
    )
    run.add_argument(
        "--executor",
        choices=EXECUTORS,
        default=None,
        help="where chunks run (asyncio for an async def FUNC, else threads)",
    )
    run.add_argument(
        "--batch-size",
        type=auto_or_positive_int,
        default="auto",
        metavar="auto|N",
        help="records per call of FUNC: 'auto' sizes batches by measured speed (auto)",
    )
    run.add_argument(
        "--table", default="results", metavar="NAME", help="table name for SQLite output (results)"
    )
    run.add_argument("--no-progress", action="store_true", help="do not show a progress bar")
    run.add_argument(
        "--metrics-port",
        type=port_number,
        default=None,
        metavar="PORT",
        help="serve Prometheus metrics of the run at http://127.0.0.1:PORT/metrics "
        "(0: a free port; needs batchpilot[metrics])",
    )
    run.set_defaults(handler=_run_command)


def load_function(spec: str) -> Callable[..., Any]:
    """Import ``MODULE:FUNC`` (FUNC may be dotted, e.g. ``pkg.mod:Model.score``).

    The current directory is importable, as with ``python -m``.

    Raises:
        CliError: Bad spec, module not importable, or no such callable.
    """
    module_name, sep, qualname = spec.partition(":")
    if not sep or not module_name or not qualname:
        raise CliError(f"expected MODULE:FUNC, got {spec!r}")
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise CliError(f"cannot import module {module_name!r}: {exc}") from None
    except Exception as exc:
        raise CliError(
            f"importing module {module_name!r} failed: {type(exc).__name__}: {exc}"
        ) from None
    for part in qualname.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise CliError(f"module {module_name!r} has no function {qualname!r}") from None
    if not callable(target):
        raise CliError(f"{spec} is not callable (it is a {type(target).__name__})")
    return target


@dataclass(frozen=True)
class _PerItem:
    """Turns a function of one record into a batch function (picklable for processes)."""

    function: Callable[[Any], Any]

    def __call__(self, records: Sequence[Any]) -> list[Any]:
        return [self.function(record) for record in records]


def _per_item_async(function: Callable[[Any], Awaitable[Any]]) -> Callable[..., Any]:
    """Turn an ``async def`` of one record into an async batch function.

    The records of one batch are awaited concurrently.
    """

    async def batch(records: Sequence[Any]) -> list[Any]:
        return list(await asyncio.gather(*(function(record) for record in records)))

    return batch


def _as_batch_function(function: Callable[..., Any], per_item: bool) -> Callable[..., Any]:
    """The batch function the bulk engine calls: ``function`` itself, or a per-item adapter."""
    if not per_item:
        return function
    if inspect.iscoroutinefunction(function):
        return _per_item_async(function)
    return _PerItem(function)


def job_path(output: Path) -> Path:
    """The checkpoint file of the job that writes ``output``."""
    return output.with_name(output.name + ".job.sqlite")


def errors_path(output: Path) -> Path:
    """Where the failed records of the job that writes ``output`` are listed."""
    return output.with_name(output.name + ".errors.jsonl")


@dataclass
class RunSummary:
    """What a run did, for the final line and for callers of `run_job`."""

    items: int = 0
    failed: int = 0
    resumed: int = 0
    seconds: float = 0.0
    first_failure: tuple[int, str] | None = None

    @property
    def rate(self) -> float:
        """Items per second over the whole run."""
        return self.items / self.seconds if self.seconds > 0 else 0.0


def _run_command(args: argparse.Namespace) -> int:
    summary = run_job(
        args.function,
        args.input,
        args.output,
        per_item=args.per_item,
        resume=args.resume,
        workers=args.workers,
        executor=args.executor,
        batch_size=args.batch_size,
        table=args.table,
        progress=not args.no_progress,
        metrics_port=args.metrics_port,
        abandon_on_interrupt=args.console,
    )
    print(f"batchpilot: {_describe(summary)} -> {args.output}", file=sys.stderr)
    if summary.first_failure is not None:
        line, error = summary.first_failure
        print(
            f"batchpilot: {summary.failed} failed, listed in {errors_path(args.output)} "
            f"(first: line {line}: {error})",
            file=sys.stderr,
        )
    return EXIT_FAILED_ITEMS if summary.failed else EXIT_OK


def _describe(summary: RunSummary) -> str:
    """The one-line summary: items, failures, resumed items, seconds, items/s."""
    extra = [f"{summary.failed} failed"] if summary.failed else []
    if summary.resumed:
        extra.append(f"{summary.resumed} resumed from the checkpoint")
    counts = f"{summary.items} items" + (f" ({', '.join(extra)})" if extra else "")
    return f"{counts} in {summary.seconds:.2f} s, {summary.rate:,.0f} items/s"


def run_job(
    function: str,
    input_path: Path,
    output_path: Path,
    *,
    per_item: bool = False,
    resume: bool = False,
    workers: int | None = None,
    executor: str | None = None,
    batch_size: int | Literal["auto"] = "auto",
    table: str = "results",
    progress: bool = True,
    metrics_port: int | None = None,
    abandon_on_interrupt: bool = False,
) -> RunSummary:
    """Run ``function`` over the records of ``input_path`` into ``output_path``.

    The arguments are those of ``batchpilot run``. With ``abandon_on_interrupt``
    (the console command), Ctrl-C ends the process at once, abandoning the chunks
    still running as ``kill -9`` would (``--resume`` reruns them); otherwise a
    KeyboardInterrupt waits for them, closes the run and propagates.

    Raises:
        CliError, RecordsFormatError: Bad function, input, output or job state.
    """
    from ..bulk import map_batches

    started = time.perf_counter()
    source = RecordSource(input_path)
    format_of(output_path, OUTPUT_FORMATS, "output")
    if output_path.resolve() == input_path.resolve():
        raise CliError(f"--output must differ from --input ({input_path})")
    fn = load_function(function)
    if executor is None:
        executor = "asyncio" if inspect.iscoroutinefunction(fn) else "threads"
    job = _check_job_state(output_path, resume)
    total = source.scan()
    with _metrics_exporter(metrics_port) as listeners:
        try:
            run = map_batches(
                _as_batch_function(fn, per_item),
                (record for _, record in source.records()),
                batch_size=batch_size,
                executor=executor,
                workers=workers,
                job=str(job),
                ordered=True,
                listeners=listeners,
                name=output_path.name,
            )
        except JobMismatchError as exc:  # e.g. a checkpoint of a newer format
            raise CliError(f"{exc}; to start over, delete {job}") from None
        except (TypeError, ValueError) as exc:  # options the engine rejects before any work
            raise CliError(f"{function}: {exc}") from None
        summary = RunSummary()
        sink = open_sink(output_path, table=table)
        with run:
            try:
                stopper = _exit_on_sigint(sink, progress) if abandon_on_interrupt else None
                with stopper or contextlib.nullcontext():
                    failed = _write_results(run, sink, summary, total, progress)
                sink.commit()
            except JobMismatchError as exc:
                sink.abort()
                raise CliError(f"{exc}; to start over, delete {job}") from None
            except BaseException:
                sink.abort()
                raise
    summary.resumed = run.stats()["items_resumed"]
    _write_failures(source, failed, errors_path(output_path), summary)
    job.unlink(missing_ok=True)
    summary.seconds = time.perf_counter() - started
    return summary


@contextlib.contextmanager
def _metrics_exporter(port: int | None) -> Iterator[list[Any]]:
    """Listeners for the run: a Prometheus exporter served on ``port``, or none."""
    if port is None:
        yield []
        return
    try:
        from prometheus_client import CollectorRegistry

        from ..metrics import PrometheusMetrics, start_http_server
    except ImportError:
        raise CliError(
            "--metrics-port needs prometheus-client: pip install 'batchpilot[metrics]'"
        ) from None
    registry = CollectorRegistry()
    metrics = PrometheusMetrics(registry)
    try:
        server = start_http_server(port, registry=registry)
    except OSError as exc:
        raise CliError(f"cannot serve metrics on port {port}: {exc.strerror or exc}") from None
    print(f"batchpilot: metrics at {server.url}", file=sys.stderr, flush=True)
    try:
        yield [metrics]
    finally:
        server.close()


@contextlib.contextmanager
def _exit_on_sigint(sink: RecordSink, progress: bool) -> Iterator[None]:
    """While active, Ctrl-C deletes the partial output and ends the process at once.

    Waiting for running chunks (a KeyboardInterrupt unwinding through the engine,
    then Python joining its worker threads at exit) could take as long as a chunk;
    the checkpoint makes an immediate exit as safe as ``kill -9``.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop_now(signum: int, frame: object) -> None:
        sink.abort()
        if progress:
            print(file=sys.stderr)  # end the progress bar's line
        fail(INTERRUPTED, EXIT_FAILED_ITEMS)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(EXIT_FAILED_ITEMS)

    previous = signal.signal(signal.SIGINT, stop_now)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _check_job_state(output: Path, resume: bool) -> Path:
    job = job_path(output)
    if job.exists() and not resume:
        raise CliError(
            f"{job} holds an interrupted run of this job: pass --resume to continue it, "
            f"or delete it to start over"
        )
    if resume and not job.exists() and output.exists():
        raise CliError(f"nothing to resume: {output} is complete (no checkpoint {job})")
    return job


def _write_results(
    results: Iterator[Any], sink: RecordSink, summary: RunSummary, total: int, progress: bool
) -> dict[int, BaseException]:
    """Write the successful results in order; return the failed items' errors by index."""
    from tqdm import tqdm

    from ..bulk import ItemFailure

    failed: dict[int, BaseException] = {}
    done: list[Any] = []
    # delay: no bar for the first half second, so an early error stays a single line.
    bar = tqdm(results, total=total, disable=not progress, unit="item", file=sys.stderr, delay=0.5)
    index = -1
    with bar:
        for index, value in enumerate(bar):
            if isinstance(value, ItemFailure):
                failed[index] = value.error
                continue
            done.append(value)
            if len(done) >= _WRITE_CHUNK:
                sink.write(done)
                done.clear()
    summary.items = index + 1
    sink.write(done)
    return failed


def _write_failures(
    source: RecordSource, failed: dict[int, BaseException], path: Path, summary: RunSummary
) -> None:
    path.unlink(missing_ok=True)
    summary.failed = len(failed)
    if not failed:
        return
    with path.open("w", encoding="utf-8") as file:
        for index, (line, _) in enumerate(source.records()):
            error = failed.get(index)
            if error is not None:
                message = f"{type(error).__name__}: {error}"
                if summary.first_failure is None:
                    summary.first_failure = (line, message)
                file.write(json.dumps({"line": line, "error": message}) + "\n")
