"""Batches by cost inside a bulk chunk: a window of items, regrouped, run batch by batch.

With ``cost=`` a bulk chunk is a window of the input (``sort_window`` items, so job
files, resume and input order work as they do for any chunk). `CostGroupedBatches`
is the chunk's batch function: it cuts the window into batches under the cost cap
(`batchpilot._core.cost.group_by_cost`, sorted by cost when regrouping), calls the
user's function once per batch, and puts each result back in its item's place. Its
results say how each batch went (`TracedResults`: why it closed, ``count``,
``budget`` or ``input_end`` for a window's last batch; its real and padded cost;
its out-of-memory splits), and the bulk run reports each batch from them.

The cost cap is a `CostCap`, the same as the online engine's: the budget, lowered by
out-of-memory errors and, with a size controller (``batch_size=TargetLatency(...)``),
what the controller learnt in cost units from each batch's (padded) cost and
seconds. A window is cut with the cap as it is when the window starts; once the
cap has measured a padded batch's fixed time (`CostCap.overhead`), a regrouped window
is cut where its total time is least (`batchpilot._core.cost.fastest_cuts`).

A batch that runs out of memory is split by cost and its halves run (recursively);
the cap drops below it and climbs back after successes. An item that runs out of
memory alone fails alone (`FailedAlone`, which the chunk turns into its
`ItemFailure`) and is counted like any other out-of-memory error; the window's other
batches run on. The object is picklable, so process, Dask and Ray workers each hold
their own cap.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from .._core.callables import is_async_callable
from .._core.clock import SYSTEM_CLOCK, Clock
from .._core.cost import BatchTrace, CostBudget, group_by_cost
from .._core.costcap import CostCap
from .._core.oom import OomPredicate, split_by_cost
from .._core.sizing import SizeController
from .._core.validate import check_int
from ..errors import ConfigError
from .runner import FailedAlone, TracedResults, checked_results

__all__ = ["DEFAULT_SORT_WINDOW", "CostGroupedBatches", "cost_budget", "cost_grouped"]

DEFAULT_SORT_WINDOW = 256
"""Items regrouped by cost together (one bulk chunk) unless ``sort_window`` says otherwise."""


class CostGroupedBatches:
    """A chunk's batch function that runs ``fn`` once per cost-bounded batch.

    ``controller`` sizes the cost cap in cost units (None: the budget alone);
    ``clock`` times each batch for it (None: the real clock of the process that runs
    the chunk).
    """

    def __init__(
        self,
        fn: Callable[[list[Any]], Sequence[Any]],
        cost: Callable[[Any], float],
        budget: CostBudget,
        *,
        regroup: bool,
        is_oom: OomPredicate | None,
        controller: SizeController | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.fn = fn  # the user's batch function
        self.cost = cost  # an item's cost
        self.budget = budget  # count and cost limits of one batch
        self.regroup = regroup  # whether a window is sorted by cost before cutting
        self.cap = CostCap(budget.max_batch_cost, controller, is_oom)  # the cost cap
        self.clock = clock  # times each batch for the controller

    def __call__(self, items: list[Any]) -> TracedResults:
        """Each item's result, with a `BatchTrace` per batch (why it closed, its costs)."""
        costs = [float(self.cost(item)) for item in items]
        results: list[Any] = [None] * len(items)
        clock = self.clock or SYSTEM_CLOCK
        traces = []
        grouped = group_by_cost(
            costs, self.budget, regroup=self.regroup, cap=self.cap.cap, overhead=self.cap.overhead
        )
        for positions, reason in grouped:
            began = clock.now()
            splits, errors = self._run(items, costs, positions, results)
            duration = clock.now() - began
            batch_costs = [costs[p] for p in positions]
            cost, padded_cost = sum(batch_costs), max(batch_costs) * len(batch_costs)
            self.cap.on_batch(padded_cost if self.budget.padded else cost, duration, not splits)
            traces.append(
                BatchTrace(
                    reason.value, len(positions), cost, padded_cost, splits, duration, errors
                )
            )
        return TracedResults(results, traces)

    def _run(
        self, items: list[Any], costs: list[float], positions: list[int], results: list[Any]
    ) -> tuple[int, tuple[str, ...]]:
        """Run the batch at ``positions`` (split while it runs out of memory); return
        how many times it ran out of memory and the error types of its items that
        failed alone."""
        batch_costs = [costs[p] for p in positions]
        try:
            values = self.fn([items[p] for p in positions])
        except Exception as error:
            if not self.cap.on_call(self.budget.cost_of(batch_costs), error):
                raise
            if len(positions) < 2:
                # This frame's entry would keep ``results`` (which holds the error) alive.
                results[positions[0]] = FailedAlone(error.with_traceback(_callee(error)))
                return 1, (type(error).__name__,)
            halves = split_by_cost(batch_costs, self.budget.padded)
        else:
            values = checked_results(values, len(positions))
            for position, value in zip(positions, values, strict=True):
                results[position] = value
            self.cap.on_call(0.0, None)
            return 0, ()
        # Outside the handler, so the halves' errors do not chain to this one.
        splits = 1
        errors: tuple[str, ...] = ()
        for half in halves:
            more, failed = self._run(items, costs, [positions[i] for i in half], results)
            splits, errors = splits + more, errors + failed
        return splits, errors


def _callee(error: BaseException) -> Any:
    """``error``'s traceback without its first entry (the frame that caught it)."""
    return None if error.__traceback__ is None else error.__traceback__.tb_next


def cost_budget(
    batch_size: Any, *, cost: Any, max_batch_cost: float, padded: bool, sort_window: int
) -> tuple[CostBudget, int, SizeController | None]:
    """The limits of one batch, the chunk size (in items) and the controller of the cost
    cap of a `map_batches` run with ``cost=``.

    ``batch_size`` bounds the items of one batch (an int; ``"auto"``: the window), or
    is a size controller, which then sizes the cost cap in cost units (and the window
    bounds the items). A chunk is ``sort_window`` items, regrouped by cost; with
    ``sort_window=0`` it is `DEFAULT_SORT_WINDOW` items cut first in, first out.
    """
    if not callable(cost):
        raise ConfigError(f"cost must be a function of one item, got {type(cost).__name__}")
    window = check_int("sort_window", sort_window, minimum=0) or DEFAULT_SORT_WINDOW
    controller = batch_size if isinstance(batch_size, SizeController) else None
    if batch_size == "auto" or controller is not None:
        batch_size = window
    elif isinstance(batch_size, bool) or not isinstance(batch_size, int):
        raise ConfigError(
            f"with cost=, batch_size bounds the items of one batch (an int or 'auto') or "
            f"is a size controller in cost units, got {batch_size!r}"
        )
    return CostBudget(batch_size, max_batch_cost, padded), window, controller


def cost_grouped(
    fn: Callable[[list[Any]], Sequence[Any]],
    cost: Callable[[Any], float],
    budget: CostBudget,
    *,
    regroup: bool,
    is_oom: OomPredicate | None,
    controller: SizeController | None = None,
    clock: Clock | None = None,
) -> CostGroupedBatches:
    """The chunk function of a `map_batches` run with ``cost=`` (see `cost_budget`)."""
    if is_async_callable(fn):
        raise ConfigError("cost= needs a plain batch function; async def is not supported yet")
    return CostGroupedBatches(
        fn, cost, budget, regroup=regroup, is_oom=is_oom, controller=controller, clock=clock
    )
