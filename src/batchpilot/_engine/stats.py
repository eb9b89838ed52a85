"""What an online engine has measured: counters, the fitted cost model, and its snapshot type.

`BatchTally` is the engine's running account (batches, items, outcomes, waits) and
its `LinearCostModel` of batch durations; `EngineStatistics` is the frozen snapshot
`Engine.statistics` returns (a `Statistics`, the vocabulary every engine shares).
The tally is not locked on its own: the engine updates and reads it under its lock,
together with the slot bookkeeping of the same step.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .._core.cost import CloseReason, padded_fraction
from .._core.sizing import LinearCostModel
from .._core.statistics import Statistics

__all__ = ["BatchTally", "EngineStatistics"]

_REFIT_EVERY = 16  # batches between refits of the cost model


@dataclass(frozen=True)
class EngineStatistics(Statistics):
    """A snapshot of an `Engine` (plain values, never live internals).

    The fields every engine shares come first (`Statistics`: name, batches, items,
    succeeded, failed, current_batch_size, queue_depth, rate); ``queue_depth`` and
    ``queue_size`` are the same number.

    Attributes:
        name: the engine's name.
        batches: batches finished.
        items: items in finished batches.
        succeeded: items that got a result.
        failed: items that got an exception from the batch function.
        current_batch_size: the size limit of the next batch.
        queue_depth: items waiting now (the shared name of ``queue_size``).
        rate: items finished per second since the engine started, by its clock.
        queue_size: items waiting now.
        active_batches: batches running now.
        max_batch_size: the hard cap on any batch.
        max_wait: upper bound of a deliberate wait, seconds.
        paused: no batch starts while paused.
        closed: ``close`` was called.
        placement: where plain-``def`` batches run now for asyncio callers:
            ``"inline"`` or ``"thread"``; ``"task"`` for ``async def`` functions.
        expired: items failed with `ItemTimeoutError` before a batch took them.
        cancelled: items whose caller cancelled before a batch took them.
        failed_batches: batches whose first attempt raised.
        waits: deliberate waits for resubmitting callers.
        mean_batch_size: items / batches.
        mean_batch_duration: mean seconds per batch (retries included).
        cost_fixed: fitted fixed seconds per batch, or None before a fit.
        cost_per_item: fitted seconds per item, or None before a fit.
        close_reasons: finished batches by why they closed (`CloseReason` values).
        cost: the summed real cost of finished batches (their items without ``cost=``).
        padded_cost: the summed padded cost (largest item's cost x size) of finished
            batches; ``1 - cost / padded_cost`` is the padded fraction.
        padded_fraction: the share of the padded cost that was padding (0 before any
            batch, and always without a cost function).
        oom_splits: out-of-memory errors batches met, each one a split.
        cost_cap: the cost a batch may have now (``max_batch_cost``, or lower after
            out-of-memory errors); None without ``cost=``.
        batch_overhead: a batch's measured fixed time in cost units, by which padded
            batches are picked once not everything waiting fits; None before it is
            measured, or without ``cost=``.
    """

    queue_size: int
    active_batches: int
    max_batch_size: int
    max_wait: float
    paused: bool
    closed: bool
    placement: str
    expired: int
    cancelled: int
    failed_batches: int
    waits: int
    mean_batch_size: float
    mean_batch_duration: float
    cost_fixed: float | None
    cost_per_item: float | None
    close_reasons: Mapping[str, int]
    cost: float
    padded_cost: float
    padded_fraction: float
    oom_splits: int
    cost_cap: float | None
    batch_overhead: float | None

    @classmethod
    def of(
        cls,
        tally: BatchTally,
        fit: tuple[float, float] | None,
        elapsed: float,
        *,
        name: str,
        current_batch_size: int,
        queue_size: int,
        active_batches: int,
        max_batch_size: int,
        max_wait: float,
        paused: bool,
        closed: bool,
        placement: str,
        cost_cap: float | None,
        batch_overhead: float | None,
    ) -> EngineStatistics:
        """The snapshot of ``tally`` (``fit``: its cost model; ``elapsed``: seconds since
        the engine started) and the engine's live state (``cost_cap`` and
        ``batch_overhead``: None without ``cost=``)."""
        return cls(
            name=name,
            batches=tally.batches,
            items=tally.items,
            succeeded=tally.succeeded,
            failed=tally.failed,
            current_batch_size=current_batch_size,
            queue_depth=queue_size,
            rate=tally.rate(elapsed),
            queue_size=queue_size,
            active_batches=active_batches,
            max_batch_size=max_batch_size,
            max_wait=max_wait,
            paused=paused,
            closed=closed,
            placement=placement,
            expired=tally.expired,
            cancelled=tally.cancelled,
            failed_batches=tally.failed_batches,
            waits=tally.waits,
            mean_batch_size=tally.mean_batch_size,
            mean_batch_duration=tally.mean_batch_duration,
            cost_fixed=None if fit is None else fit[0],
            cost_per_item=None if fit is None else fit[1],
            close_reasons=dict(tally.close_reasons),
            cost=tally.cost,
            padded_cost=tally.padded_cost,
            padded_fraction=padded_fraction(tally.cost, tally.padded_cost),
            oom_splits=tally.oom_splits,
            cost_cap=cost_cap,
            batch_overhead=batch_overhead,
        )


class BatchTally:
    """An engine's counters and cost model; the engine's lock guards every access.

    Attributes:
        batches: batches finished.
        items: items in finished batches.
        succeeded: items that got a result.
        failed: items that got an exception from the batch function.
        failed_batches: batches whose first attempt raised.
        busy_time: summed seconds of finished batches.
        expired: items that expired in the queue (counted by the engine).
        cancelled: items cancelled before a batch took them (counted by the engine).
        waits: deliberate waits for resubmitting callers (counted by the engine).
        close_reasons: finished batches by why they closed.
        cost: summed real cost of finished batches.
        padded_cost: summed padded cost of finished batches.
        oom_splits: out-of-memory errors finished batches met.
    """

    __slots__ = (
        "_fit",
        "_model",
        "_unfitted",
        "batches",
        "busy_time",
        "cancelled",
        "close_reasons",
        "cost",
        "expired",
        "failed",
        "failed_batches",
        "items",
        "oom_splits",
        "padded_cost",
        "succeeded",
        "waits",
    )

    def __init__(self, window: int = 64) -> None:
        self._model = LinearCostModel(window=window)
        self._fit: tuple[float, float] | None = None
        self._unfitted = 0
        self.batches = 0
        self.items = 0
        self.succeeded = 0
        self.failed = 0
        self.failed_batches = 0
        self.busy_time = 0.0
        self.expired = 0
        self.cancelled = 0
        self.waits = 0
        self.close_reasons: dict[str, int] = {}
        self.cost = 0.0
        self.padded_cost = 0.0
        self.oom_splits = 0

    def add_batch(
        self, size: int, duration: float, failed: int, ok: bool, delivered: bool = True
    ) -> None:
        """Count a finished batch of ``size`` items, ``failed`` of them failed; a batch
        whose first attempt succeeded (``ok``) also trains the cost model.

        ``delivered`` False: `close` already gave its items `ClosedError`, so they
        count as neither succeeded nor failed.
        """
        if ok:
            self._model.add(size, duration)
            self._unfitted += 1
        self.batches += 1
        if delivered:
            self.items += size
            self.succeeded += size - failed
            self.failed += failed
        self.failed_batches += not ok
        self.busy_time += duration

    def add_closing(
        self,
        reason: CloseReason,
        size: int,
        cost: float | None,
        padded_cost: float | None,
        oom_splits: int,
    ) -> None:
        """Count why a finished batch of ``size`` items closed, what it cost (None: its
        size) and the out-of-memory errors it met."""
        self.close_reasons[reason.value] = self.close_reasons.get(reason.value, 0) + 1
        self.cost += size if cost is None else cost
        self.padded_cost += size if padded_cost is None else padded_cost
        self.oom_splits += oom_splits

    def fit(self) -> tuple[float, float] | None:
        """The latest ``(fixed, per_item)`` fit, refitted every 16 batches
        (kept while the model cannot fit, e.g. all batches had the same size)."""
        if self._fit is None or self._unfitted >= _REFIT_EVERY:
            self._unfitted = 0
            fit = self._model.fit()
            if fit is not None:
                self._fit = fit
        return self._fit

    @property
    def mean_batch_size(self) -> float:
        """Items per finished batch (0 before the first)."""
        return self.items / self.batches if self.batches else 0.0

    def rate(self, elapsed: float) -> float:
        """Items finished per second over ``elapsed`` seconds (0 before any time passed)."""
        return self.items / elapsed if elapsed > 0 else 0.0

    @property
    def mean_batch_duration(self) -> float:
        """Seconds per finished batch (0 before the first)."""
        return self.busy_time / self.batches if self.batches else 0.0
