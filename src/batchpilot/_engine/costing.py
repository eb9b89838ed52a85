"""Batches by cost in the online engine: each item's cost, the next batch, out of memory.

With ``cost=`` every request carries its item's cost, and a free slot takes its batch
through `CostPolicy.take`: among the first ``sort_window`` waiting items (or as many
as a batch may hold) `batchpilot._core.cost.pick_batch` keeps the oldest and adds the
waiting items closest to it in cost while the budget allows (``max_batch_size``
items, ``max_batch_cost`` and the out-of-memory cap). The others stay queued, in
order: the oldest always goes, so grouping never holds an item back past its turn,
and when everything waiting fits (light load) everything goes, as without a cost.
When not everything fits and batches are padded, the cost cap's measured fixed time
per batch (`CostCap.overhead`) makes the batch the run of like costs around the
oldest that does the most real work per second (`batchpilot._core.cost.fastest_run`).

A padded batch is handed over sorted by cost, so that bisecting it (after an error)
splits it into a short and a long half. The cost cap is a `CostCap`, the same as in
bulk runs: a call that raises an out-of-memory error lowers it (`OutOfMemoryBackoff`)
and empties torch's CUDA cache; the engine's isolation then splits the batch until
each half fits, and an item out of memory alone fails alone. Successes raise the cap
again slowly. A ``controller`` sizes batches in cost units: it observes each finished
batch's (padded) cost and its ``next_size()`` caps the next batch's cost, while the
engine's count controller is ``Fixed(max_batch_size)`` (`count_controller`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .._core.cost import CloseReason, CostBudget, pick_batch
from .._core.costcap import CostCap
from .._core.sizing import Fixed, SizeController
from .options import EngineOptions
from .queue import BoundedPriorityQueue
from .requests import Request
from .slots import TakeBatch, Taken, take_by_budget, take_by_count

__all__ = [
    "CostPolicy",
    "batch_costs",
    "count_controller",
    "has_costs",
    "item_cost",
    "take_policy",
]


class CostPolicy:
    """The cost rules of one engine (built only when its options give ``cost``)."""

    def __init__(self, options: EngineOptions) -> None:
        assert options.cost is not None
        self._cost = options.cost  # an item's cost
        self._max_batch_cost = float(options.max_batch_cost)  # the budget of one batch
        self._padded = options.padded  # a batch costs its largest item times its size
        self._window = options.sort_window  # waiting items that may be regrouped
        # The cost cap: the budget, out-of-memory backoff and the controller (cost units).
        self._cap = CostCap(self._max_batch_cost, options.controller, options.is_oom)

    @property
    def splits(self) -> int:
        """Calls that ran out of memory (each one a split, or an item failing alone)."""
        return self._cap.splits

    @property
    def cap(self) -> float:
        """The cost a batch may have now: the budget, or lower after out of memory or
        as the controller learnt."""
        return self._cap.cap

    @property
    def overhead(self) -> float | None:
        """A batch's measured fixed time in cost units (`CostCap.overhead`), or None."""
        return self._cap.overhead

    def cost_of(self, item: Any) -> float:
        """``item``'s cost, checked."""
        return _checked("cost", self._cost(item))

    def take(self, queue: BoundedPriorityQueue[Request], size: int) -> Taken:
        """The next batch of at most ``size`` items within the budget (a `TakeBatch`)."""
        budget = CostBudget(size, self._max_batch_cost, self._padded)
        cap, overhead = self._cap.cap, self._cap.overhead
        closed: list[CloseReason | None] = [None]  # why pick_batch stopped (None: all fit)

        def pick(waiting: list[Request]) -> list[int]:
            positions, closed[0] = pick_batch(
                [r.cost for r in waiting], budget, self._window, cap=cap, overhead=overhead
            )
            return positions

        batch, expired = queue.take_picked(max(self._window, size), pick)
        if self._padded:
            batch.sort(key=_cost)
        reason = closed[0]
        if reason is None:  # everything it looked at fit
            reason = CloseReason.COUNT if len(batch) >= size else CloseReason.IDLE_WORKER
        return batch, expired, reason

    def observe(self, batch: list[Request], error: BaseException | None) -> bool:
        """A call on ``batch`` returned (``error`` None) or raised ``error``; returns
        whether that was out of memory (the batch is split, or its one item fails)."""
        cost = 0.0 if error is None else self._measure(*batch_costs(batch))
        return self._cap.on_call(cost, error)

    def observe_batch(self, cost: float, padded_cost: float, duration: float, ok: bool) -> None:
        """A batch finished: the controller learns from its cost (padded cost when padded)."""
        self._cap.on_batch(self._measure(cost, padded_cost), duration, ok)

    def _measure(self, cost: float, padded_cost: float) -> float:
        return padded_cost if self._padded else cost


def batch_costs(batch: list[Request]) -> tuple[float, float]:
    """A batch's real cost (the sum of its items' costs) and its padded cost (its
    largest item's cost times its size); its requests carry their costs."""
    costs = [request.cost for request in batch]
    return float(sum(costs)), (max(costs) * len(costs) if costs else 0.0)


def count_controller(options: EngineOptions) -> SizeController:
    """The controller of a batch's item count: the user's, or with ``cost=`` (whose
    controller sizes the cost cap, `CostPolicy`) and by default ``Fixed(max_batch_size)``."""
    if options.controller is not None and options.cost is None:
        return options.controller
    return Fixed(options.max_batch_size)


def has_costs(options: EngineOptions) -> bool:
    """Whether each request carries its item's cost (``Request.cost``)."""
    return (
        options.cost is not None
        or options.batch_size_fn is not None
        or options.max_batch_bytes is not None
    )


def item_cost(options: EngineOptions, costing: CostPolicy | None) -> Callable[[Any], float] | None:
    """An item's cost against its batch's limits (``cost``, ``batch_size_fn``, or 1 per
    item under ``max_batch_bytes``), or None when batches only count items."""
    if not has_costs(options):
        return None
    if costing is not None:
        return costing.cost_of
    size_fn = options.batch_size_fn
    if size_fn is not None:
        return lambda item: _checked("batch_size_fn", size_fn(item))
    return _one


def take_policy(options: EngineOptions, costing: CostPolicy | None) -> TakeBatch:
    """How a free slot picks its batch: by cost, by a summed budget, or by count."""
    if costing is not None:
        return costing.take
    if options.batch_size_fn is None and options.max_batch_bytes is None:
        return take_by_count
    return take_by_budget(options.max_batch_bytes)


def _checked(name: str, value: Any) -> float:
    cost = float(value)
    if not cost >= 0:
        raise ValueError(f"{name} must return a cost >= 0, got {cost}")
    return cost


def _one(item: Any) -> float:
    return 1.0


def _cost(request: Request) -> float:
    return request.cost
