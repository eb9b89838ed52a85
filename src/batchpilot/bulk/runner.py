"""Run one chunk of a bulk job: the code that executes on a worker.

A chunk is a list of items and the input index of its first item. The batch
function is called once on the whole chunk; only if that raises are the items
isolated with the core's `run_isolated`/`arun_isolated` (retry, then bisect), so
the happy path costs one call and no per-item Python work. Failing items are
replaced in the result list by an `ItemFailure` carrying the item's input index,
the item and its exception.

The isolation runs after the handler of the whole-chunk call's exception has
ended, so an item's own exception does not chain to that one (``__context__``,
"During handling of the above exception..."). Such a chain would keep the
whole-chunk exception, and whatever it holds (often the whole chunk), alive as
long as the item's `ItemFailure` is kept. No local names that exception either:
its traceback holds this frame, and the pair would be a cycle that only the
garbage collector frees, with the chunk's items and results in it.

A chunk function that runs several batches of its own (`CostGroupedBatches`, with
``cost=``) returns its results as `TracedResults`, which also say how each of those
batches went (`BatchTrace`); the chunk's result carries the traces of every call
that returned (a call that raised is isolated and its items run again). Such a
function may return `FailedAlone` for an item that failed on its own (out of memory
alone): the chunk makes it that item's `ItemFailure`, as isolation would, without
running the others again (with ``fail_fast`` it raises).

Everything here is importable by name and picklable, because process, Dask and
Ray executors ship `run_chunk` to other processes.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from .._core.clock import SYSTEM_CLOCK, Clock
from .._core.cost import BatchTrace
from .._core.isolation import Outcome, arun_isolated, run_isolated
from .._core.replay import replay_first
from .._core.retry import RetryPolicy
from ..errors import BatchFailedError
from .models import take_setups

__all__ = [
    "ChunkResult",
    "FailedAlone",
    "ItemFailure",
    "TracedResults",
    "arun_chunk",
    "checked_results",
    "run_chunk",
]

T = TypeVar("T")


@dataclass(frozen=True)
class ItemFailure(Generic[T]):
    """Stands in the result stream for an item whose batch function call failed.

    Attributes:
        index: position of the item in the input (0-based).
        item: the input item itself.
        error: the exception its own (isolated) call raised.
    """

    index: int
    item: T
    error: BaseException

    def __repr__(self) -> str:
        return f"ItemFailure(index={self.index}, item={self.item!r}, error={self.error!r})"


@dataclass(frozen=True)
class FailedAlone:
    """A chunk function's result for an item that failed on its own; the chunk turns it
    into the item's `ItemFailure`."""

    error: BaseException


class TracedResults(list[Any]):
    """A chunk function's results, with a `BatchTrace` per batch it ran (``batches``)."""

    def __init__(self, values: list[Any], batches: Sequence[BatchTrace]) -> None:
        super().__init__(values)
        self.batches = tuple(batches)


def _traces(result: Any) -> tuple[BatchTrace, ...]:
    return result.batches if isinstance(result, TracedResults) else ()


def _traced_chunk(
    items: list[Any], start: int, values: list[Any], duration: float, fail_fast: bool
) -> ChunkResult:
    """A chunk whose one call returned ``values`` (a plain list again, for job files)."""
    if not isinstance(values, TracedResults):
        return ChunkResult(start, values, duration, setups=take_setups())
    alone = [value.error for value in values if isinstance(value, FailedAlone)]
    if not alone:
        return ChunkResult(
            start, list(values), duration, batches=values.batches, setups=take_setups()
        )
    if fail_fast:
        raise alone[0]
    outcomes = [Outcome(True, value) for value in values]
    return _finish(items, start, outcomes, duration, list(values.batches))


@dataclass
class ChunkResult:
    """What a worker sends back for one chunk.

    Attributes:
        start: input index of the chunk's first item.
        values: one entry per item: its result, or an `ItemFailure`.
        duration: seconds spent running the chunk, isolation included.
        failed: how many entries are `ItemFailure`.
        error_types: failed items counted by exception class name.
        batches: the batches the chunk function ran inside it whose results the
            chunk kept (`TracedResults`; empty for a plain batch function).
        setups: models this chunk's thread set up while running it (`take_setups`).
    """

    start: int
    values: list[Any]
    duration: float
    failed: int = 0
    error_types: dict[str, int] = field(default_factory=dict)
    batches: tuple[BatchTrace, ...] = ()
    setups: int = 0

    @property
    def size(self) -> int:
        """Number of items in the chunk."""
        return len(self.values)


def checked_results(result: Any, expected: int) -> list[Any]:
    """``result`` as a list of ``expected`` results, or `BatchFailedError` saying what came."""
    if not isinstance(result, Sequence) or isinstance(result, (str, bytes)):
        raise BatchFailedError(
            f"the batch function must return a list of {expected} results, "
            f"got {type(result).__name__}"
        )
    if len(result) != expected:
        raise BatchFailedError(
            f"the batch function returned {len(result)} results for {expected} items"
        )
    return result if isinstance(result, list) else list(result)


def _finish(
    items: list[Any],
    start: int,
    outcomes: list[Outcome],
    duration: float,
    traces: list[BatchTrace],
) -> ChunkResult:
    outcomes = [
        Outcome(False, value.error) if isinstance(value, FailedAlone) else Outcome(ok, value)
        for ok, value in outcomes
    ]
    values = [
        value if ok else ItemFailure(start + offset, items[offset], value)
        for offset, (ok, value) in enumerate(outcomes)
    ]
    errors = Counter(type(value).__name__ for ok, value in outcomes if not ok)
    failed = sum(errors.values())
    return ChunkResult(
        start, values, duration, failed, dict(errors), tuple(traces), setups=take_setups()
    )


def run_chunk(
    fn: Callable[[list[Any]], Sequence[Any]],
    items: list[Any],
    start: int,
    policy: RetryPolicy,
    fail_fast: bool,
    clock: Clock | None = None,
) -> ChunkResult:
    """Run ``fn`` on one chunk; isolate failing items unless ``fail_fast``.

    With ``fail_fast`` the first exception (or `BatchFailedError` for a wrong
    result count) propagates to the caller. ``clock`` times the chunk and sleeps
    between retries (default: the real clock of whatever process runs this).
    """
    clock = clock or SYSTEM_CLOCK
    began = clock.now()
    try:
        values = checked_results(fn(items), len(items))
    except Exception as error:
        if fail_fast:
            raise
        traces: list[BatchTrace] = []

        def call(low: int, high: int) -> list[Any]:
            result = checked_results(fn(items[low:high]), high - low)
            traces.extend(_traces(result))
            return result

        calls = replay_first(error, call)
    else:
        return _traced_chunk(items, start, values, clock.now() - began, fail_fast)
    # Outside the handler: see the module docstring on chained errors.
    outcomes = run_isolated(calls, len(items), policy, clock.sleep)
    return _finish(items, start, outcomes, clock.now() - began, traces)


async def arun_chunk(
    fn: Callable[[list[Any]], Awaitable[Sequence[Any]]],
    items: list[Any],
    start: int,
    policy: RetryPolicy,
    fail_fast: bool,
    clock: Clock | None = None,
) -> ChunkResult:
    """The asyncio twin of `run_chunk` for ``async def`` batch functions.

    ``clock`` only times the chunk: retry waits use `asyncio.sleep`.
    """
    clock = clock or SYSTEM_CLOCK
    began = clock.now()
    try:
        values = checked_results(await fn(items), len(items))
    except Exception as error:
        if fail_fast:
            raise
        traces: list[BatchTrace] = []

        async def call(low: int, high: int) -> list[Any]:
            result = checked_results(await fn(items[low:high]), high - low)
            traces.extend(_traces(result))
            return result

        calls = replay_first(error, call)
    else:
        return _traced_chunk(items, start, values, clock.now() - began, fail_fast)
    # Outside the handler: see the module docstring on chained errors.
    outcomes = await arun_isolated(calls, len(items), policy, asyncio.sleep)
    return _finish(items, start, outcomes, clock.now() - began, traces)
