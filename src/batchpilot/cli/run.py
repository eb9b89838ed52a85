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
``--address`` runs the chunks on an existing Dask or Ray cluster.

This module holds the command line (its arguments, its final lines and exit
code); `runner.run_job` runs the job, with the settings of `run_options.RunOptions`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .common import (
    EXIT_FAILED_ITEMS,
    EXIT_OK,
    auto_or_positive_int,
    fail,
    non_empty,
    port_number,
    positive_int,
)
from .job import errors_path
from .outputs import IF_EXISTS, OUTPUT_FORMATS
from .partitioned import BATCH_FORMATS, PART_FORMATS, is_partitioned, run_partitioned
from .records_io import INPUT_FORMATS, STDIO
from .run_options import EXECUTORS, SYSTEMATIC_FAILURES, RunOptions
from .runner import RunSummary, run_with

__all__ = ["EXIT_STOPPED", "add_command"]

#: Exit code of a run stopped early (systematic failure, --max-failures, --fail-fast).
EXIT_STOPPED = 3


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
    _add_data_arguments(run)
    _add_partitioned_arguments(run)
    _add_job_arguments(run)
    _add_engine_arguments(run)
    run.set_defaults(handler=_run_command)


def _add_data_arguments(run: argparse.ArgumentParser) -> None:
    """FUNC, the input and the output."""
    run.add_argument("function", metavar="MODULE:FUNC", help="the function, e.g. mypkg.model:score")
    run.add_argument(
        "--input",
        "-i",
        required=True,
        type=non_empty,
        nargs="+",
        action="extend",
        metavar="FILE",
        help=f"input file ({', '.join(sorted(INPUT_FORMATS))}; text formats may end in .gz "
        f"or .zst), or {STDIO} for JSON Lines on standard input; a folder, a glob, a URL "
        "(s3://, file://, memory://...) or several files (-i A B, or -i A -i B) make a "
        "partitioned run (docs/cli.md, 'Partitioned inputs')",
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


def _add_partitioned_arguments(run: argparse.ArgumentParser) -> None:
    """The options of a partitioned run (a folder, glob, URL or several input files)."""
    run.add_argument(
        "--batch-format",
        choices=BATCH_FORMATS,
        default=None,
        help="what FUNC takes and returns in a partitioned run (given: the run is "
        "partitioned): records (a list of dicts, the default), pyarrow (a Table), pandas "
        "(a DataFrame) or numpy (a dict of arrays)",
    )
    run.add_argument(
        "--output-format",
        choices=PART_FORMATS,
        default=None,
        help="part files of a partitioned run's output folder (default: parquet for Parquet "
        "input, else jsonl)",
    )
    run.add_argument(
        "--key",
        default=None,
        type=non_empty,
        metavar="COLUMN",
        help="a partitioned run into a database (-o sqlite:///... or postgresql://...): "
        "the unique key column of --table, so a redone partition inserts each row once",
    )
    run.add_argument(
        "--storage-option",
        action="append",
        type=_storage_option,
        default=None,
        metavar="KEY=VALUE",
        help="an fsspec option for the input and output URLs (repeatable), e.g. "
        "endpoint_url=http://127.0.0.1:9000; a VALUE that is JSON (true, 3) is decoded",
    )


def _storage_option(text: str) -> tuple[str, object]:
    key, equals, value = text.partition("=")
    if not key or not equals:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value


def _add_job_arguments(run: argparse.ArgumentParser) -> None:
    """The job: resuming, retrying, stopping early."""
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


def _add_engine_arguments(run: argparse.ArgumentParser) -> None:
    """How the chunks run, and what the run shows."""
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


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def _run_command(args: argparse.Namespace) -> int:
    options = RunOptions.from_arguments(args)
    summary = (run_partitioned if is_partitioned(options) else run_with)(options)
    if summary.stopped is not None:
        return fail(f"stopped early: {summary.stopped}", EXIT_STOPPED)
    shown = "standard output" if args.output == STDIO else args.output
    print(f"batchpilot: {_describe(summary)} -> {shown}", file=sys.stderr)
    if summary.first_failure is not None:
        line, error = summary.first_failure
        listed = summary.failures_listed or errors_path(Path(args.output))
        where = "on standard error" if args.output == STDIO else f"in {listed}"
        at = f"{summary.failure_file}:{line}" if summary.failure_file else f"line {line}"
        print(
            f"batchpilot: {summary.failed} failed, listed {where} (first: {at}: {error})",
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
