"""``batchpilot run``: stream the records of a file through a batch function.

``batchpilot run MODULE:FUNC --input IN --output OUT`` streams the records of IN
(see `records_io`) through ``FUNC`` on the bulk engine (`batchpilot.map_batches`)
and writes one row per successful record to OUT (see `outputs`), in input order.
Failed records go to ``OUT.errors.jsonl`` with their line numbers. While the job
runs, its output is written in segments and its progress committed to the job
file (``OUT.job.sqlite``, or ``--job``), so ``--resume`` continues a killed run
from where it got, reading only the rest of the input. The job file and the
segments are deleted when the job completes. One run at a time uses a job (a
lock on ``JOB.lock``, see `job.JobLock`). ``--retry-failed`` runs FUNC again
over the records the failures list names and appends their results;
``--address`` runs the chunks on an existing Dask or Ray cluster. A
``SystemExit`` or ``KeyboardInterrupt`` raised by FUNC stops the run as an
error (`StoppedByFunction`), never as a success.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import inspect
import json
import os
import shutil
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from .._core.targets import TargetImportError, import_target
from .common import (
    EXIT_FAILED_ITEMS,
    EXIT_OK,
    INTERRUPTED,
    CliError,
    StoppedByFunction,
    auto_or_positive_int,
    fail,
    non_empty,
    port_number,
    positive_int,
    same_file,
)
from .consume import ErrorLog, Outcome, consume
from .csv_types import SchemaError, infer_types, parse_schema, resolve_types
from .early_stop import StopRules, guard
from .job import Checkpoint, JobFile, input_identity, job_files, parts_dir
from .outputs import IF_EXISTS, OUTPUT_FORMATS, Target, finish, open_segment, output_target, trim
from .records_io import INPUT_FORMATS, STDIO, Position, RecordsFormatError, RecordSource

__all__ = [
    "EXIT_STOPPED",
    "RunSummary",
    "add_command",
    "errors_path",
    "job_path",
    "load_function",
    "run_job",
]

EXECUTORS = ("threads", "processes", "asyncio", "dask", "ray")
#: The executors that --address can attach to an existing cluster.
CLUSTER_EXECUTORS = ("dask", "ray")
#: Exit code of a run stopped early (systematic failure, --max-failures, --fail-fast).
EXIT_STOPPED = 3
#: Stop when the first this many records all fail with one exception type.
SYSTEMATIC_FAILURES = 10


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
        "are written to OUTPUT.errors.jsonl with their line numbers. Exit codes: 0 all "
        "records succeeded; 1 some failed (listed), or interrupted; 2 bad usage or input "
        "(nothing written); 3 stopped early (systematic failure, --max-failures, "
        "--fail-fast).",
        epilog="example: batchpilot run mymodel:score -i data.csv -o scores.sqlite",
    )
    run.add_argument("function", metavar="MODULE:FUNC", help="the function, e.g. mypkg.model:score")
    run.add_argument(
        "--input",
        "-i",
        required=True,
        type=non_empty,
        metavar="FILE",
        help=f"input file ({', '.join(sorted(INPUT_FORMATS))}; text formats may end in .gz "
        f"or .zst), or {STDIO} for JSON Lines on standard input",
    )
    run.add_argument(
        "--output",
        "-o",
        required=True,
        type=non_empty,
        metavar="FILE",
        help=f"output file ({', '.join(sorted(OUTPUT_FORMATS))}; text formats may end in .gz "
        f"or .zst), a folder (a Parquet dataset, one sub-folder per --table), or {STDIO} for "
        "JSON Lines on standard output",
    )
    run.add_argument(
        "--if-exists",
        choices=IF_EXISTS,
        default="fail",
        help="when the output (a file; for SQLite and datasets, the table) exists: fail "
        "(default), append to it, or replace it (only the table, in a database or dataset)",
    )
    run.add_argument(
        "--table",
        default="results",
        type=non_empty,
        metavar="NAME",
        help="table of an SQLite output or Parquet dataset (results)",
    )
    run.add_argument(
        "--per-item", action="store_true", help="FUNC takes one record instead of a list"
    )
    run.add_argument(
        "--schema",
        default=None,
        type=non_empty,
        metavar="SPEC",
        help="CSV/TSV column types, NAME:TYPE,... with TYPE int, float, bool or str; *:TYPE "
        "for the other columns (default: inferred by pyarrow; *:str keeps every field a string)",
    )
    run.add_argument(
        "--line-column",
        default=None,
        type=non_empty,
        metavar="NAME",
        help="add each record's input line number to its output row under NAME",
    )
    run.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted run from its job file",
    )
    run.add_argument(
        "--retry-failed",
        action="store_true",
        help="run FUNC again over the records listed in OUTPUT.errors.jsonl by a previous "
        "run of the same input, append their results to OUTPUT and list only those that "
        "fail again",
    )
    run.add_argument(
        "--job",
        type=Path,
        default=None,
        metavar="FILE",
        help="the job file that checkpoints the run (default: OUTPUT.job.sqlite)",
    )
    run.add_argument(
        "--max-failures",
        type=_non_negative_int,
        default=None,
        metavar="N",
        help="stop (exit 3) once more than N records have failed",
    )
    run.add_argument(
        "--fail-fast",
        action="store_true",
        help="stop (exit 3) at the first failing call of FUNC, without isolating the record",
    )
    run.add_argument(
        "--systematic-failures",
        type=_non_negative_int,
        default=SYSTEMATIC_FAILURES,
        metavar="N",
        help="stop (exit 3) when the first N records all fail with the same exception type "
        f"({SYSTEMATIC_FAILURES}; 0: never)",
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
        "--address",
        default=None,
        metavar="ADDRESS",
        help="run on an existing cluster: with --executor dask the scheduler "
        "(tcp://HOST:PORT), with --executor ray auto, HOST:PORT or ray://HOST:PORT",
    )
    run.add_argument(
        "--batch-size",
        type=auto_or_positive_int,
        default="auto",
        metavar="auto|N",
        help="records per call of FUNC: 'auto' sizes batches by measured speed (auto)",
    )
    run.add_argument("--no-progress", action="store_true", help="do not show a progress bar")
    run.add_argument(
        "--metrics-port",
        type=port_number,
        default=None,
        metavar="PORT",
        help="serve Prometheus metrics of the run at http://127.0.0.1:PORT/metrics "
        "(0: a free port; needs prometheus-client)",
    )
    run.set_defaults(handler=_run_command)


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def load_function(spec: str) -> Callable[..., Any]:
    """Import ``MODULE:FUNC`` (FUNC may be dotted, e.g. ``pkg.mod:Model.score``).

    The current directory is importable, as with ``python -m``.

    Raises:
        CliError: Bad spec, module not importable, or no such callable.
    """
    try:
        target = import_target(spec, placeholder="FUNC", noun="function")
    except TargetImportError as exc:
        raise CliError(str(exc)) from None
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
    stopped: str | None = None
    retried: bool = False

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
        retry_failed=args.retry_failed,
        job=args.job,
        if_exists=args.if_exists,
        workers=args.workers,
        executor=args.executor,
        address=args.address,
        batch_size=args.batch_size,
        table=args.table,
        schema=args.schema,
        line_column=args.line_column,
        max_failures=args.max_failures,
        fail_fast=args.fail_fast,
        systematic_failures=args.systematic_failures,
        progress=not args.no_progress,
        metrics_port=args.metrics_port,
        abandon_on_interrupt=args.console,
    )
    if summary.stopped is not None:
        return fail(f"stopped early: {summary.stopped}", EXIT_STOPPED)
    shown = "standard output" if args.output == STDIO else args.output
    print(f"batchpilot: {_describe(summary)} -> {shown}", file=sys.stderr)
    if summary.first_failure is not None:
        line, error = summary.first_failure
        listed = errors_path(Path(args.output))
        where = "on standard error" if args.output == STDIO else f"in {listed}"
        print(
            f"batchpilot: {summary.failed} failed, listed {where} (first: line {line}: {error})",
            file=sys.stderr,
        )
    return EXIT_FAILED_ITEMS if summary.failed else EXIT_OK


def _describe(summary: RunSummary) -> str:
    """The one-line summary: items, failures, resumed items, seconds, items/s."""
    extra = [f"{summary.failed} failed"] if summary.failed else []
    if summary.resumed:
        extra.append(f"{summary.resumed} resumed from the checkpoint")
    if summary.retried:
        extra.append("retried from the failures list")
    counts = f"{summary.items} items" + (f" ({', '.join(extra)})" if extra else "")
    return f"{counts} in {summary.seconds:.2f} s, {summary.rate:,.0f} items/s"


@dataclass
class _Plan:
    """A run checked and ready: input, target, job and where to start."""

    source: RecordSource
    target: Target
    job: JobFile
    start: Checkpoint
    total: int | None
    resumable: bool
    fresh: bool
    #: With --retry-failed, the input lines of the records to run again (else all).
    retry: frozenset[int] | None = None


def _prepare(
    function: str,
    input_path: str | os.PathLike[str],
    output_path: str | os.PathLike[str],
    *,
    job: Path | None,
    resume: bool,
    retry_failed: bool,
    if_exists: str,
    table: str,
    per_item: bool,
    schema: str | None,
    line_column: str | None,
) -> _Plan:
    """Check input, output, options and job state before any work; resume or scan.

    The job's lock is held from here to the end of the run (released by the
    job file's ``close`` or ``discard``, or here if a check fails).
    """
    source = RecordSource(input_path)
    target = output_target(output_path, table)
    stdio = source.is_stdin or target.kind == "stdout"
    if not stdio and same_file(target.path, source.path):
        raise CliError(f"--output must differ from --input ({source.path})")
    if stdio and (resume or job is not None):
        raise CliError(f"--resume and --job need a file for --input and --output, not {STDIO}")
    if stdio and retry_failed:
        raise CliError(f"--retry-failed needs a file for --input and --output, not {STDIO}")
    if resume and retry_failed:
        raise CliError("--retry-failed cannot be combined with --resume: resume the run first")
    if schema is not None and source.format not in ("csv", "tsv"):
        raise CliError("--schema applies to CSV and TSV inputs only")
    try:
        types = parse_schema(schema) if schema else {}
    except SchemaError as exc:
        raise CliError(str(exc)) from None
    job_file = job or job_path(target.path if target.kind != "stdout" else Path("stdout"))
    if job_file.is_dir():
        raise CliError(f"--job is a directory, not a file: {job_file}")
    if not job_file.parent.is_dir():
        raise CliError(f"folder of the job file not found: {job_file.parent}")
    if not stdio:
        _check_job_files(job_file, source, target)
    settings = {
        "function": function,
        "per_item": per_item,
        "line_column": line_column,
        "output": str(target),
        "table": table,
        "schema": schema,
        "input": None if source.is_stdin else input_identity(source.path),
        "input_path": str(source.path),
    }
    run_job_file = JobFile(job_file, settings)
    if not stdio:
        run_job_file.lock.acquire()
    try:
        return _plan(
            source, target, run_job_file, resume=resume, retry_failed=retry_failed,
            if_exists=if_exists, types=types, stdio=stdio,
        )  # fmt: skip
    except BaseException:
        run_job_file.lock.release()
        raise


def _check_job_files(job: Path, source: RecordSource, target: Target) -> None:
    """Refuse a job whose files (`job_files`) are the input or a file the run writes,
    or whose parts folder (deleted when the job ends) holds one of them.

    Symlinks and hard links count as the file they name.
    """
    theirs = [(source.path, "the input"), (errors_path(target.path), "the failures list")]
    theirs += [
        (path, "the output" if path == target.path else "a file the run writes")
        for path in target.files()
    ]
    parts = parts_dir(job)
    for path, role in theirs:
        if Path(os.path.realpath(path)).is_relative_to(os.path.realpath(parts)):
            raise CliError(
                f"--job {job}: its parts folder {parts}, deleted when the job ends, holds "
                f"{role} of this run ({path}); pass --job a file in another folder"
            )
        for mine in job_files(job):
            if same_file(mine, path):
                which = "" if mine == job else f" (its {mine.name})"
                raise CliError(
                    f"--job {job}{which} is {role} of this run ({path}); pass --job a file "
                    "of its own, such as the default OUTPUT.job.sqlite"
                )


def _plan(
    source: RecordSource,
    target: Target,
    run_job_file: JobFile,
    *,
    resume: bool,
    retry_failed: bool,
    if_exists: str,
    types: dict[str, Any],
    stdio: bool,
) -> _Plan:
    """The plan of a checked run: resumed from its job file, or a scanned input."""
    job_file = run_job_file.path
    if resume:
        if not job_file.exists():
            if target.exists():
                raise CliError(
                    f"nothing to resume: {target} is complete (no checkpoint {job_file})"
                )
            raise CliError(f"nothing to resume: no checkpoint {job_file}")
        target.check(if_exists)
        start = run_job_file.load()
        source.types = dict(run_job_file.settings["types"])
        trim(target, run_job_file.parts, start.segments)
        total = run_job_file.settings["total"]
        return _Plan(source, target, run_job_file, start, total, True, False)
    if job_file.exists() and target.kind != "stdout":
        raise CliError(
            f"{job_file} holds an interrupted run of this job: pass --resume to continue it, "
            f"delete it to start over, or pass --job FILE to keep it and use another job file"
        )
    retry = _failed_lines(target) if retry_failed else None
    target.check("append" if retry is not None else if_exists)
    shutil.rmtree(run_job_file.parts, ignore_errors=True)  # left by a run never committed
    if source.format in ("csv", "tsv"):
        header = source.header()
        inferred = {}
        if types.get("*") is None:
            with source.open_bytes() as stream:
                inferred = infer_types(stream, source.delimiter)
        try:
            source.types = resolve_types(header, types, inferred)
        except SchemaError as exc:
            raise CliError(str(exc)) from None
        source.fixed = frozenset(types) if "*" not in types else frozenset(header)
    total = None if source.is_stdin else source.scan()
    if retry is not None:
        _check_retry_lines(source, retry, errors_path(target.path))
        total = len(retry)
    run_job_file.update_settings(types=source.types, total=total)
    resumable = not stdio and retry is None
    return _Plan(source, target, run_job_file, Checkpoint(), total, resumable, True, retry)


def _failed_lines(target: Target) -> frozenset[int]:
    """The input lines listed in the failures list of ``target``'s last run."""
    listed = errors_path(target.path)
    if not target.exists():
        raise CliError(f"nothing to retry: no output {target}")
    if not listed.is_file():
        raise CliError(f"nothing to retry: no failures listed for {target} ({listed.name})")
    lines = set()
    with listed.open(encoding="utf-8") as file:
        for number, text in enumerate(file, start=1):
            try:
                line = json.loads(text)["line"]
            except (ValueError, KeyError, TypeError):
                line = None
            if not isinstance(line, int) or isinstance(line, bool) or line < 1:
                raise CliError(f"{listed}: line {number}: not an entry of a failures list")
            lines.add(line)
    if not lines:
        raise CliError(f"nothing to retry: {listed} lists no failures")
    return frozenset(lines)


def _check_retry_lines(source: RecordSource, lines: frozenset[int], listed: Path) -> None:
    """Refuse a failures list naming lines that hold no record of this input."""
    found = {line for line, _, _ in source.located(Position()) if line in lines}
    missing = sorted(lines - found)
    if missing:
        raise CliError(
            f"{listed} lists lines that hold no record of {source.path} (first: line "
            f"{missing[0]}); was it written by a run over another input?"
        )


def run_job(
    function: str,
    input_path: str | os.PathLike[str],
    output_path: str | os.PathLike[str],
    *,
    per_item: bool = False,
    resume: bool = False,
    retry_failed: bool = False,
    job: Path | None = None,
    if_exists: str = "fail",
    workers: int | None = None,
    executor: str | None = None,
    address: str | None = None,
    batch_size: int | Literal["auto"] = "auto",
    table: str = "results",
    schema: str | None = None,
    line_column: str | None = None,
    max_failures: int | None = None,
    fail_fast: bool = False,
    systematic_failures: int = SYSTEMATIC_FAILURES,
    progress: bool = True,
    metrics_port: int | None = None,
    abandon_on_interrupt: bool = False,
) -> RunSummary:
    """Run ``function`` over the records of ``input_path`` into ``output_path``.

    The arguments are those of ``batchpilot run``. With ``abandon_on_interrupt``
    (the console command), Ctrl-C ends the process at once, abandoning the chunks
    still running as ``kill -9`` would (``--resume`` reruns them); otherwise a
    KeyboardInterrupt waits for them, closes the run and propagates.

    Returns:
        The summary; ``stopped`` says why when the run stopped early (nothing of
        it past the last checkpoint is kept).

    Raises:
        CliError, RecordsFormatError: Bad function, input, output or job state.
    """
    started = time.perf_counter()
    if address is not None and executor not in CLUSTER_EXECUTORS:
        raise CliError(f"--address needs --executor {' or '.join(CLUSTER_EXECUTORS)}")
    if executor is not None:
        _require_installed(executor)
    fn = load_function(function)
    plan = _prepare(
        function, input_path, output_path, job=job, resume=resume, retry_failed=retry_failed,
        if_exists=if_exists, table=table, per_item=per_item, schema=schema, line_column=line_column,
    )  # fmt: skip
    if executor is None:
        executor = "asyncio" if inspect.iscoroutinefunction(fn) else "threads"
    job_file, target = plan.job, plan.target
    signalled = threading.Event()
    try:
        with _noting_sigint(signalled):
            outcome = _execute(
                plan, guard(_as_batch_function(fn, per_item), systematic_failures),
                function=function, workers=workers, executor=executor, address=address,
                batch_size=batch_size, line_column=line_column, fail_fast=fail_fast,
                rules=StopRules(systematic_failures, max_failures), progress=progress,
                metrics_port=metrics_port, abandon_on_interrupt=abandon_on_interrupt,
            )  # fmt: skip
    except (CliError, RecordsFormatError):
        (job_file.discard if plan.fresh else job_file.close)()
        raise
    except (SystemExit, KeyboardInterrupt) as exc:
        (job_file.close if job_file.committed else job_file.discard)()
        if isinstance(exc, KeyboardInterrupt) and signalled.is_set():
            raise  # a real Ctrl-C
        raise StoppedByFunction(_stopped_by(function, exc, job_file)) from exc
    except BaseException:
        (job_file.close if job_file.committed else job_file.discard)()
        raise
    summary = RunSummary(resumed=plan.start.items, retried=plan.retry is not None)
    if outcome.stopped is not None:
        (job_file.close if job_file.committed else job_file.discard)()
        summary.stopped = outcome.stopped
        if job_file.path.exists():
            summary.stopped += f"; --resume continues from the checkpoint {job_file.path}"
        return summary
    if plan.retry is not None:
        if_exists = "append"
    try:
        finish(target, job_file.parts, outcome.checkpoint.segments,
               job_file.settings.get("columns"), if_exists)  # fmt: skip
    except (RecordsFormatError, OSError) as exc:
        job_file.close()
        problem = exc if isinstance(exc, RecordsFormatError) else f"cannot write {target}: {exc}"
        kept = f"; the results are kept in {job_file.path}" if plan.resumable else ""
        raise RecordsFormatError(f"{problem}{kept}") from None
    summary.items, summary.failed = outcome.checkpoint.items, outcome.checkpoint.failed
    if target.kind != "stdout":
        summary.first_failure = _place_errors(job_file.parts / "errors.jsonl", target.path)
    job_file.discard()
    summary.seconds = time.perf_counter() - started
    return summary


def _stopped_by(function: str, error: BaseException, job_file: JobFile) -> str:
    """The error for a SystemExit or KeyboardInterrupt raised by FUNC itself."""
    if isinstance(error, SystemExit):
        what = f"SystemExit({error.code!r}) (it called sys.exit)"
    else:
        what = "KeyboardInterrupt itself (not a Ctrl-C)"
    kept = (
        f"; --resume continues from the checkpoint {job_file.path}"
        if job_file.path.exists()
        else "; nothing was kept"
    )
    return f"{function} raised {what}: the run was interrupted{kept}"


@contextlib.contextmanager
def _noting_sigint(signalled: threading.Event) -> Iterator[None]:
    """While active, a real Ctrl-C sets ``signalled`` before raising KeyboardInterrupt.

    That tells it from a KeyboardInterrupt raised by FUNC. Off the main thread
    no handler is installed: signals reach only the main thread, so there every
    KeyboardInterrupt comes from FUNC.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def note(signum: int, frame: object) -> None:
        signalled.set()
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, note)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _execute(
    plan: _Plan,
    batch_fn: Callable[..., Any],
    *,
    function: str,
    workers: int | None,
    executor: str,
    address: str | None,
    batch_size: int | Literal["auto"],
    line_column: str | None,
    fail_fast: bool,
    rules: StopRules,
    progress: bool,
    metrics_port: int | None,
    abandon_on_interrupt: bool,
) -> Outcome:
    """Run the engine over the records after the plan's start and consume the results."""
    from tqdm import tqdm

    from ..bulk import map_batches

    source, target, job_file, start = plan.source, plan.target, plan.job, plan.start
    positions: deque[tuple[int, int]] = deque()

    def records() -> Iterator[dict[str, Any]]:
        remember, wanted = positions.append, plan.retry
        for line, offset, record in source.located(start.position):
            if wanted is None or line in wanted:
                remember((line, offset))
                yield record

    def commit(checkpoint: Checkpoint) -> None:
        if plan.resumable:
            job_file.update_settings(columns=segment.columns)
            job_file.commit(checkpoint)

    number = max(start.segments, default=0) + 1
    if target.kind != "stdout":
        job_file.parts.mkdir(exist_ok=True)
    segment = open_segment(target, job_file.parts, number, job_file.settings.get("columns"))
    errors = ErrorLog(
        None if target.kind == "stdout" else job_file.parts / "errors.jsonl", start.errors
    )
    remaining = None if plan.total is None else plan.total - start.items
    name = "stdout" if target.kind == "stdout" else target.path.name
    with _metrics_exporter(metrics_port) as listeners, contextlib.ExitStack() as stack:
        stack.callback(errors.close)
        stack.callback(segment.close)
        runs_on: Any = executor if address is None else _connect(executor, address, workers)
        try:
            run = map_batches(
                batch_fn, records(), batch_size=batch_size, executor=runs_on,
                workers=workers, ordered=True, fail_fast=fail_fast, listeners=listeners,
                name=name,
            )  # fmt: skip
        except (TypeError, ValueError) as exc:  # options the engine rejects before any work
            if address is not None:
                runs_on.shutdown()
            raise CliError(f"{function}: {exc}") from None
        stack.enter_context(run)
        # delay: no bar for the first half second, so an early error stays a single line.
        bar = tqdm(
            run, total=plan.total, initial=start.items, disable=not progress, unit="item",
            file=sys.stderr, delay=0.5,
        )  # fmt: skip
        stack.enter_context(bar)
        if abandon_on_interrupt:
            stack.enter_context(_exit_on_sigint(progress))
        try:
            return consume(
                _failing_fast(bar) if fail_fast else bar, positions, start=start,
                segment=segment, number=number, errors=errors, rules=rules,
                remaining=remaining, line_column=line_column,
                next_size=lambda: run.batch_size, commit=commit,
            )  # fmt: skip
        except _FailedFast as stop:
            error = stop.__cause__
            return Outcome(
                start, f"--fail-fast: a call of FUNC raised {type(error).__name__}: {error}"
            )


def _require_installed(executor: str) -> None:
    """Refuse ``--executor dask|ray`` before any work when its extra is not installed.

    Raises:
        CliError: A module it needs is not installed.
    """
    from ..bulk.executors import resolve_executor

    try:
        resolve_executor(executor)
    except ImportError as exc:
        raise CliError(
            f"--executor {executor} needs {exc.name}, which is not installed: "
            f"pip install {exc.name}"
        ) from None


def _connect(executor: str, address: str, workers: int | None) -> Any:
    """The executor of a run on the existing ``executor`` cluster at ``address``.

    Raises:
        CliError: The cluster cannot be reached.
    """
    from ..bulk.executors import DaskExecutor, RayExecutor

    try:
        if executor == "dask":
            return DaskExecutor(address=address)
        return RayExecutor(workers, address=address)
    except Exception as exc:  # each client raises its own types for an unreachable cluster
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CliError(
            f"cannot connect to the {executor} cluster at {address}: {message}"
        ) from None


class _FailedFast(Exception):
    """The batch function raised under ``--fail-fast`` (the error is the cause)."""


def _failing_fast(results: Iterator[Any]) -> Iterator[Any]:
    try:
        yield from results
    except RecordsFormatError:
        raise
    except Exception as exc:
        raise _FailedFast from exc


def _place_errors(log: Path, output: Path) -> tuple[int, str] | None:
    """Move the failures list next to the output (or remove a stale one); the first one."""
    target = errors_path(output)
    if not log.exists() or log.stat().st_size == 0:
        target.unlink(missing_ok=True)
        return None
    os.replace(log, target)
    with target.open(encoding="utf-8") as file:
        first = json.loads(file.readline())
    return int(first["line"]), str(first["error"])


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
            "--metrics-port needs prometheus-client: pip install prometheus-client"
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
def _exit_on_sigint(progress: bool) -> Iterator[None]:
    """While active, Ctrl-C ends the process at once.

    Waiting for running chunks (a KeyboardInterrupt unwinding through the engine,
    then Python joining its worker threads at exit) could take as long as a chunk;
    the checkpoint makes an immediate exit as safe as ``kill -9``.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop_now(signum: int, frame: object) -> None:
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
