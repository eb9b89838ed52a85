"""`run_job`: one ``batchpilot run`` from its options to its `RunSummary`.

It checks and plans the run (`plan`), runs it (`execute`), and then either
moves the committed rows into the output and the failures list beside it, or
keeps the job file for ``--resume``. A ``SystemExit`` or ``KeyboardInterrupt``
raised by FUNC stops the run as an error (`StoppedByFunction`), never as a success.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from .._core.callables import is_async_callable
from ..bulk.models import ModelBatch
from .common import CliError, StoppedByFunction
from .consume import Outcome
from .early_stop import guard
from .execute import execute
from .executors import require_installed
from .functions import as_batch_function, load_function
from .job import JobFile, errors_path
from .outputs import finish
from .plan import Plan, prepare
from .records_io import RecordsFormatError
from .run_options import RunOptions, takes_options
from .signals import noting_sigint

__all__ = ["RunSummary", "run_job", "run_with"]


@dataclass
class RunSummary:
    """What a run did, for the final line and for callers of `run_job`."""

    items: int = 0  # records done (this run and the runs it resumed)
    failed: int = 0  # records that failed, listed in the failures list
    resumed: int = 0  # records done before this run, by the runs it resumed
    seconds: float = 0.0  # how long this run took
    first_failure: tuple[int, str] | None = None  # (input line, error) of the first failure
    failure_file: str | None = None  # the input file of the first failure (partitioned runs)
    failures_listed: str | None = None  # where the failures are listed (None: the default)
    stopped: str | None = None  # why the run stopped early (None: it ran to the end)
    retried: bool = False  # whether it ran the failures of the last run again

    @property
    def rate(self) -> float:
        """Items per second over the whole run."""
        return self.items / self.seconds if self.seconds > 0 else 0.0


@takes_options(RunOptions)
def run_job(options: RunOptions) -> RunSummary:
    """Run ``function`` over the records of ``input_path`` into ``output_path``.

    The arguments are those of ``batchpilot run`` (the fields of `RunOptions`). With
    ``abandon_on_interrupt`` (the console command), Ctrl-C ends the process at
    once, abandoning the chunks still running as ``kill -9`` would (``--resume``
    reruns them); otherwise a KeyboardInterrupt waits for them, closes the run and
    propagates.

    Returns:
        The summary; ``stopped`` says why when the run stopped early (nothing of
        it past the last checkpoint is kept).

    Raises:
        CliError, RecordsFormatError: Bad function, input, output or job state.
    """
    return run_with(options)


def run_with(options: RunOptions) -> RunSummary:
    """`run_job` with its arguments checked into ``options``."""
    started = time.perf_counter()
    if options.executor is not None:
        require_installed(options.executor)
    fn = load_function(options.function)
    unguarded = as_batch_function(fn, options.per_item)
    plan = prepare(options)
    executor = options.executor
    if executor is None:
        executor = "asyncio" if is_async_callable(unguarded) else "threads"
    job_file, target = plan.job, plan.target
    signalled = threading.Event()
    try:
        with noting_sigint(signalled):
            batch_fn = guard(unguarded, options.systematic_failures)
            model = isinstance(unguarded, ModelBatch)
            outcome = execute(plan, batch_fn, options, executor, model)
    except (CliError, RecordsFormatError):
        (job_file.discard if plan.fresh else job_file.close)()
        raise
    except (SystemExit, KeyboardInterrupt) as exc:
        _keep_if_committed(job_file)
        if isinstance(exc, KeyboardInterrupt) and signalled.is_set():
            raise  # a real Ctrl-C
        raise StoppedByFunction(_stopped_by(options.function, exc, job_file)) from exc
    except BaseException:
        _keep_if_committed(job_file)
        raise
    summary = RunSummary(resumed=plan.start.items, retried=plan.retry is not None)
    if outcome.stopped is not None:
        _keep_if_committed(job_file)
        summary.stopped = outcome.stopped
        if job_file.path.exists():
            summary.stopped += f"; --resume continues from the checkpoint {job_file.path}"
        return summary
    _finish(plan, outcome, "append" if plan.retry is not None else options.if_exists)
    summary.items, summary.failed = outcome.checkpoint.items, outcome.checkpoint.failed
    if target.kind != "stdout":
        summary.first_failure = _place_errors(job_file.parts / "errors.jsonl", target.path)
    job_file.discard()
    summary.seconds = time.perf_counter() - started
    return summary


def _keep_if_committed(job_file: JobFile) -> None:
    """Close a job that committed (for ``--resume``); discard one that never did."""
    (job_file.close if job_file.committed else job_file.discard)()


def _finish(plan: Plan, outcome: Outcome, if_exists: str) -> None:
    """Move the committed rows into the output; on failure keep them in the job file.

    Raises:
        RecordsFormatError: The output cannot take them (saying where they are kept).
    """
    job_file, target = plan.job, plan.target
    try:
        finish(target, job_file.parts, outcome.checkpoint.segments,
               job_file.settings.get("columns"), if_exists)  # fmt: skip
    except (RecordsFormatError, OSError) as exc:
        job_file.close()
        problem = exc if isinstance(exc, RecordsFormatError) else f"cannot write {target}: {exc}"
        kept = f"; the results are kept in {job_file.path}" if plan.resumable else ""
        raise RecordsFormatError(f"{problem}{kept}") from None


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
