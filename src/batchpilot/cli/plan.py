"""`prepare`: a run checked before any work, and where it starts (a `Plan`).

Input, output, options and job state are checked first; then the run resumes
from its job file, or starts (with ``--retry-failed``, after reading the failures
list of the last run). The input is not read here beyond what metadata and the
column types need: malformed lines are found, and reported, as the run reaches them.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._core.csv_types import SchemaError, infer_types, parse_schema, resolve_types
from .common import CliError, same_file
from .job import Checkpoint, JobFile, errors_path, input_identity, job_files, job_path, parts_dir
from .outputs import Target, output_target, trim
from .records_io import STDIO, Position, RecordSource
from .run_options import RunOptions

__all__ = ["Plan", "prepare"]


@dataclass
class Plan:
    """A run checked and ready: input, target, job and where to start."""

    source: RecordSource  # the input, its column types resolved
    target: Target  # the output
    job: JobFile  # the job file, its lock held
    start: Checkpoint  # where the run starts: the last commit, or the beginning
    total: int | None  # records the run will have done at its end (None: unknown)
    resumable: bool  # whether the run commits, so that --resume can continue it
    fresh: bool  # whether the job starts here (not resumed)
    #: With --retry-failed, the input lines of the records to run again (else all).
    retry: frozenset[int] | None = None


def prepare(options: RunOptions) -> Plan:
    """Check input, output, options and job state before any work; resume or start.

    The job's lock is held from here to the end of the run (released by the
    job file's ``close`` or ``discard``, or here if a check fails).
    """
    source = RecordSource(options.input_path)
    target = output_target(options.output_path, options.table)
    stdio = source.is_stdin or target.kind == "stdout"
    _check_options(options, source, target, stdio)
    try:
        types = parse_schema(options.schema) if options.schema else {}
    except SchemaError as exc:
        raise CliError(str(exc)) from None
    job_file = options.job or job_path(target.path if target.kind != "stdout" else Path("stdout"))
    if job_file.is_dir():
        raise CliError(f"--job is a directory, not a file: {job_file}")
    if not job_file.parent.is_dir():
        raise CliError(f"folder of the job file not found: {job_file.parent}")
    if not stdio:
        _check_job_files(job_file, source, target)
    settings = {
        "function": options.function,
        "per_item": options.per_item,
        "line_column": options.line_column,
        "output": str(target),
        "table": options.table,
        "schema": options.schema,
        "input": None if source.is_stdin else input_identity(source.path),
        "input_path": str(source.path),
    }
    run_job_file = JobFile(job_file, settings)
    if not stdio:
        run_job_file.lock.acquire()
    try:
        if options.resume:
            return _resumed(source, target, run_job_file, options.if_exists)
        return _fresh(source, target, run_job_file, options, types, stdio)
    except BaseException:
        run_job_file.lock.release()
        raise


def _check_options(options: RunOptions, source: RecordSource, target: Target, stdio: bool) -> None:
    """Refuse options that do not fit this input and output."""
    if not stdio and same_file(target.path, source.path):
        raise CliError(f"--output must differ from --input ({source.path})")
    if stdio and (options.resume or options.job is not None):
        raise CliError(f"--resume and --job need a file for --input and --output, not {STDIO}")
    if stdio and options.retry_failed:
        raise CliError(f"--retry-failed needs a file for --input and --output, not {STDIO}")
    if options.resume and options.retry_failed:
        raise CliError("--retry-failed cannot be combined with --resume: resume the run first")
    if options.schema is not None and source.format not in ("csv", "tsv"):
        raise CliError("--schema applies to CSV and TSV inputs only")


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


def _resumed(source: RecordSource, target: Target, run_job_file: JobFile, if_exists: str) -> Plan:
    """The plan of a resumed run: from its job file's last commit."""
    job_file = run_job_file.path
    if not job_file.exists():
        if target.exists():
            raise CliError(f"nothing to resume: {target} is complete (no checkpoint {job_file})")
        raise CliError(f"nothing to resume: no checkpoint {job_file}")
    target.check(if_exists)
    start = run_job_file.load()
    source.types = dict(run_job_file.settings["types"])
    trim(target, run_job_file.parts, start.segments)
    total = run_job_file.settings["total"]
    return Plan(source, target, run_job_file, start, total, True, False)


def _fresh(
    source: RecordSource, target: Target, run_job_file: JobFile, options: RunOptions,
    types: dict[str, Any], stdio: bool,
) -> Plan:  # fmt: skip
    """The plan of a new run (or a retry of the failures)."""
    if run_job_file.path.exists() and target.kind != "stdout":
        raise CliError(
            f"{run_job_file.path} holds an interrupted run of this job: pass --resume to "
            "continue it, delete it to start over, or pass --job FILE to keep it and use "
            "another job file"
        )
    retry = _failed_lines(target) if options.retry_failed else None
    target.check("append" if retry is not None else options.if_exists)
    shutil.rmtree(run_job_file.parts, ignore_errors=True)  # left by a run never committed
    if source.format in ("csv", "tsv"):
        _resolve_types(source, types)
    total = source.total()
    if retry is not None:
        _check_retry_lines(source, retry, errors_path(target.path))
        total = len(retry)
    run_job_file.update_settings(types=source.types, total=total)
    resumable = not stdio and retry is None
    return Plan(source, target, run_job_file, Checkpoint(), total, resumable, True, retry)


def _resolve_types(source: RecordSource, types: dict[str, Any]) -> None:
    """Give a CSV/TSV ``source`` its column types: ``types`` (``--schema``), else inferred."""
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
