"""Batches by cost inside a bulk chunk: a window of items, regrouped, run batch by batch.

With ``cost=`` a bulk chunk is a window of the input (``sort_window`` items, so job
files, resume and input order work as they do for any chunk). `CostGroupedBatches`
is the chunk's batch function: it cuts the window into batches under the budget
(`batchpilot._core.cost.group_by_cost`, sorted by cost when regrouping), calls the
user's function once per batch, and puts each result back in its item's place. Its
results say how each batch went (`TracedResults`: why it closed, ``count``,
``budget`` or ``input_end`` for a window's last batch; its real and padded cost;
its out-of-memory splits), and the bulk run reports each batch from them.

A batch that runs out of memory is split by cost and its halves run (recursively);
the cap drops below it and climbs back after successes (`OutOfMemoryBackoff`). An
item that runs out of memory alone raises, and the chunk's isolation then fails
that item alone. The object is picklable, so process, Dask and Ray workers each
hold their own cap.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from .._core.callables import is_async_callable
from .._core.cost import BatchTrace, CostBudget, group_by_cost
from .._core.oom import (
    OomPredicate,
    OutOfMemoryBackoff,
    is_out_of_memory,
    release_cached_memory,
    split_by_cost,
)
from .._core.validate import check_int
from ..errors import ConfigError
from .runner import TracedResults, checked_results

__all__ = ["DEFAULT_SORT_WINDOW", "CostGroupedBatches", "cost_budget", "cost_grouped"]

DEFAULT_SORT_WINDOW = 256
"""Items regrouped by cost together (one bulk chunk) unless ``sort_window`` says otherwise."""


class CostGroupedBatches:
    """A chunk's batch function that runs ``fn`` once per cost-bounded batch."""

    def __init__(
        self,
        fn: Callable[[list[Any]], Sequence[Any]],
        cost: Callable[[Any], float],
        budget: CostBudget,
        *,
        regroup: bool,
        is_oom: OomPredicate,
    ) -> None:
        self.fn = fn  # the user's batch function
        self.cost = cost  # an item's cost
        self.budget = budget  # count and cost limits of one batch
        self.regroup = regroup  # whether a window is sorted by cost before cutting
        self.is_oom = is_oom  # whether an exception means out of memory
        self.backoff = OutOfMemoryBackoff(budget.max_batch_cost)  # the cap after OOM errors
        self._lock = threading.Lock()  # the backoff is shared by a thread pool's workers

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def __call__(self, items: list[Any]) -> TracedResults:
        """Each item's result, with a `BatchTrace` per batch (why it closed, its costs)."""
        costs = [float(self.cost(item)) for item in items]
        results: list[Any] = [None] * len(items)
        with self._lock:
            cap = self.backoff.cap
        traces = []
        for positions, reason in group_by_cost(costs, self.budget, regroup=self.regroup, cap=cap):
            began = time.perf_counter()
            splits = self._run(items, costs, positions, results)
            batch_costs = [costs[p] for p in positions]
            traces.append(
                BatchTrace(
                    reason.value,
                    len(positions),
                    sum(batch_costs),
                    max(batch_costs) * len(batch_costs),
                    splits,
                    time.perf_counter() - began,
                )
            )
        return TracedResults(results, traces)

    def _run(
        self, items: list[Any], costs: list[float], positions: list[int], results: list[Any]
    ) -> int:
        """Run the batch at ``positions`` (split while it runs out of memory); return
        how many times it ran out of memory."""
        batch_costs = [costs[p] for p in positions]
        try:
            values = self.fn([items[p] for p in positions])
        except Exception as error:
            if len(positions) < 2 or not self.is_oom(error):
                raise
            with self._lock:
                self.backoff.on_out_of_memory(self.budget.cost_of(batch_costs))
            release_cached_memory()
            halves = split_by_cost(batch_costs, self.budget.padded)
        else:
            values = checked_results(values, len(positions))
            for position, value in zip(positions, values, strict=True):
                results[position] = value
            with self._lock:
                self.backoff.on_success()
            return 0
        # Outside the handler, so the halves' errors do not chain to this one.
        return 1 + sum(
            self._run(items, costs, [positions[i] for i in half], results) for half in halves
        )


def cost_budget(
    batch_size: Any, *, cost: Any, max_batch_cost: float, padded: bool, sort_window: int
) -> tuple[CostBudget, int]:
    """The limits of one batch and the chunk size (in items) of a `map_batches` run with ``cost=``.

    ``batch_size`` bounds the items of one batch (an int; ``"auto"``: the window).
    A chunk is ``sort_window`` items, regrouped by cost; with ``sort_window=0`` it
    is `DEFAULT_SORT_WINDOW` items cut first in, first out.
    """
    if not callable(cost):
        raise ConfigError(f"cost must be a function of one item, got {type(cost).__name__}")
    window = check_int("sort_window", sort_window, minimum=0) or DEFAULT_SORT_WINDOW
    if batch_size == "auto":
        batch_size = window
    elif isinstance(batch_size, bool) or not isinstance(batch_size, int):
        raise ConfigError(
            f"with cost=, batch_size bounds the items of one batch: an int or 'auto', "
            f"got {batch_size!r}"
        )
    return CostBudget(batch_size, max_batch_cost, padded), window


def cost_grouped(
    fn: Callable[[list[Any]], Sequence[Any]],
    cost: Callable[[Any], float],
    budget: CostBudget,
    *,
    regroup: bool,
    is_oom: OomPredicate | None,
) -> CostGroupedBatches:
    """The chunk function of a `map_batches` run with ``cost=`` (see `cost_budget`)."""
    if is_async_callable(fn):
        raise ConfigError("cost= needs a plain batch function; async def is not supported yet")
    return CostGroupedBatches(fn, cost, budget, regroup=regroup, is_oom=is_oom or is_out_of_memory)
