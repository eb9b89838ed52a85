"""`execute`: a planned run on the bulk engine, its results consumed into the output."""

from __future__ import annotations

import contextlib
import sys
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from .common import CliError
from .consume import Destination, ErrorLog, Outcome, consume
from .early_stop import StopRules
from .executors import executor_for
from .job import Checkpoint
from .outputs import open_segment
from .plan import Plan
from .records_io import RecordsFormatError
from .run_metrics import metrics_exporter
from .run_options import RunOptions
from .signals import exit_on_sigint

__all__ = ["execute"]


def execute(
    plan: Plan, batch_fn: Callable[..., Any], options: RunOptions, executor: str, model: bool
) -> Outcome:
    """Run the engine over the records after the plan's start and consume the results.

    ``model``: ``batch_fn`` runs a model class (on Ray: an actor pool).
    """
    from tqdm import tqdm

    target, job_file, start = plan.target, plan.job, plan.start
    positions: deque[tuple[int, int]] = deque()

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
    with metrics_exporter(options.metrics_port) as listeners, contextlib.ExitStack() as stack:
        stack.callback(errors.close)
        stack.callback(segment.close)
        records = _Records(plan, positions)
        run = stack.enter_context(
            _start(plan, batch_fn, records, options, executor, listeners, model)
        )
        # delay: no bar for the first half second, so an early error stays a single line.
        bar = tqdm(
            run, total=plan.total, initial=start.items, disable=not options.progress,
            unit="item", file=sys.stderr, delay=0.5,
        )  # fmt: skip
        stack.enter_context(bar)
        if options.abandon_on_interrupt:
            stack.enter_context(exit_on_sigint(options.progress))
        try:
            return consume(
                _failing_fast(bar) if options.fail_fast else bar, positions, start=start,
                into=Destination(segment, number, errors, commit),
                rules=StopRules(options.systematic_failures, options.max_failures),
                left=lambda: bool(positions) or not records.ended,
                line_column=options.line_column,
                next_size=lambda: run.batch_size,
            )  # fmt: skip
        except _FailedFast as stop:
            error = stop.__cause__
            return Outcome(
                start, f"--fail-fast: a call of FUNC raised {type(error).__name__}: {error}"
            )


class _Records:
    """The records the run does, each one's (line, offset) noted in ``positions``.

    It reads one record ahead, so that ``ended`` is True as soon as the last record
    has been handed out: whether records are left is then known without a count
    of the input.
    """

    def __init__(self, plan: Plan, positions: deque[tuple[int, int]]) -> None:
        self.plan = plan
        self.positions = positions
        self.ended = False

    def __iter__(self) -> Iterator[dict[str, Any]]:
        remember, wanted = self.positions.append, self.plan.retry
        located = self.plan.source.located(self.plan.start.position)
        if wanted is not None:
            located = (entry for entry in located if entry[0] in wanted)
        current = next(located, None)
        while current is not None:
            following = next(located, None)
            self.ended = following is None
            line, offset, record = current
            remember((line, offset))
            yield record
            current = following


def _start(
    plan: Plan, batch_fn: Callable[..., Any], records: Iterable[dict[str, Any]],
    options: RunOptions, executor: str, listeners: list[Any], model: bool,
) -> Any:  # fmt: skip
    """The bulk engine's run over ``records`` (not yet entered).

    Raises:
        CliError: Options the engine rejects before any work.
    """
    from ..bulk import map_batches

    runs_on = executor_for(executor, options.address, options.workers, actors=model)
    name = "stdout" if plan.target.kind == "stdout" else plan.target.path.name
    try:
        return map_batches(
            batch_fn, records, batch_size=options.batch_size, executor=runs_on,
            workers=options.workers, ordered=True, fail_fast=options.fail_fast,
            listeners=listeners, name=name,
        )  # fmt: skip
    except (TypeError, ValueError) as exc:  # options the engine rejects before any work
        if not isinstance(runs_on, str):
            runs_on.shutdown()
        raise CliError(f"{options.function}: {exc}") from None


class _FailedFast(Exception):
    """The batch function raised under ``--fail-fast`` (the error is the cause)."""


def _failing_fast(results: Iterator[Any]) -> Iterator[Any]:
    try:
        yield from results
    except RecordsFormatError:
        raise
    except Exception as exc:
        raise _FailedFast from exc
