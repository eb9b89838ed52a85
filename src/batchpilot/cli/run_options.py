"""`RunOptions`: every setting of ``batchpilot run``, with its default, checked once.

`run_job` takes the fields as its parameters (`takes_options` gives it their
signature) and the command builds one from its arguments (`RunOptions.from_arguments`),
so the list of settings is written here only.
"""

from __future__ import annotations

import argparse
import functools
import inspect
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, fields
from pathlib import Path
from typing import Literal, ParamSpec, TypeVar

from .common import CliError

__all__ = ["CLUSTER_EXECUTORS", "EXECUTORS", "SYSTEMATIC_FAILURES", "RunOptions", "takes_options"]

EXECUTORS = ("threads", "processes", "asyncio", "dask", "ray")
#: The executors that --address can attach to an existing cluster.
CLUSTER_EXECUTORS = ("dask", "ray")
#: Stop when the first this many records all fail with one exception type.
SYSTEMATIC_FAILURES = 10

P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True)
class RunOptions:
    """The settings of one run: those of ``batchpilot run`` (see ``docs/cli.md``).

    Raises:
        CliError: ``address`` without a cluster ``executor``.
    """

    function: str  # MODULE:FUNC
    #: the records (``-``: standard input); a folder, a glob or a URL: a partitioned run
    input_path: str | os.PathLike[str]
    output_path: str | os.PathLike[str]  # the results (``-``: standard output)
    _: KW_ONLY
    per_item: bool = False  # FUNC takes one record instead of a list
    resume: bool = False  # continue an interrupted run from its job file
    retry_failed: bool = False  # run FUNC again over the records the failures list names
    job: Path | None = None  # the job file (default: OUTPUT.job.sqlite)
    if_exists: str = "fail"  # fail, append or replace an existing output
    workers: int | None = None  # parallel workers (None: CPU count)
    executor: str | None = None  # one of EXECUTORS (None: asyncio for async FUNC, else threads)
    address: str | None = None  # an existing Dask or Ray cluster
    batch_size: int | Literal["auto"] = "auto"  # records per call of FUNC
    table: str = "results"  # table of an SQLite output or Parquet dataset
    schema: str | None = None  # CSV/TSV column types, NAME:TYPE,...
    line_column: str | None = None  # output column for each record's input line
    max_failures: int | None = None  # stop once more than this many records failed
    fail_fast: bool = False  # stop at the first failing call of FUNC
    systematic_failures: int = SYSTEMATIC_FAILURES  # stop when the first N fail alike (0: never)
    progress: bool = True  # show a progress bar
    metrics_port: int | None = None  # serve Prometheus metrics on this port
    more_inputs: Sequence[str | os.PathLike[str]] = ()  # further inputs: a partitioned run
    batch_format: str | None = None  # partitioned: what FUNC takes (None: records)
    output_format: str | None = None  # partitioned: parquet or jsonl part files
    key: str | None = None  # partitioned into a database: the table's key column
    storage_options: Mapping[str, object] | None = None  # fsspec options of URLs
    abandon_on_interrupt: bool = False  # Ctrl-C ends the process at once (the console command)

    def __post_init__(self) -> None:
        if self.address is not None and self.executor not in CLUSTER_EXECUTORS:
            raise CliError(f"--address needs --executor {' or '.join(CLUSTER_EXECUTORS)}")

    @classmethod
    def from_arguments(cls, args: argparse.Namespace) -> RunOptions:
        """The options of a parsed ``batchpilot run`` command line."""
        renamed = {
            "input_path": args.input[0],
            "more_inputs": tuple(args.input[1:]),
            "storage_options": dict(args.storage_option) if args.storage_option else None,
            "output_path": args.output,
            "progress": not args.no_progress,
            "abandon_on_interrupt": args.console,
        }
        return cls(**{
            field.name: renamed[field.name] if field.name in renamed else getattr(args, field.name)
            for field in fields(cls)
        })  # fmt: skip


def takes_options(
    options: Callable[P, RunOptions],
) -> Callable[[Callable[[RunOptions], R]], Callable[P, R]]:
    """Turn ``f(options)`` into a function of the `RunOptions` fields.

    Type checkers check each argument, and ``inspect.signature`` and ``help`` show
    them; a mistake raises the `TypeError` a plain signature would.
    """

    def declare(function: Callable[[RunOptions], R]) -> Callable[P, R]:
        @functools.wraps(function)
        def call(*args: P.args, **kwargs: P.kwargs) -> R:
            return function(options(*args, **kwargs))

        returns = inspect.signature(function).return_annotation
        call.__signature__ = inspect.signature(options).replace(  # type: ignore[attr-defined]
            return_annotation=returns
        )
        return call

    return declare
