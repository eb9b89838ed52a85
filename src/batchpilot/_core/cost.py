"""Batch cost: what a batch costs, and which waiting items form the next batch.

Pure policy, shared by every engine (no threads, no clock):

- `CostBudget` holds the limits: at most ``max_batch_size`` items and at most
  ``max_batch_cost``. A batch costs the sum of its items' costs, or, with
  ``padded=True``, its largest item's cost times its size (every row is padded to
  the longest, as a transformer batch is).
- `BatchMeter` grows one batch, item by item, and says why it closed. The first
  item always joins: an item over budget on its own runs alone. It never waits
  forever and never fails for its size (TEI#723 hung on exactly this).
- `group_by_cost` (bulk) cuts a window of known items into batches, sorted by cost
  so that items of like length share a batch; once a padded batch's fixed time is
  measured, where the window's total time is least (`fastest_cuts`).
- `pick_batch` (online) chooses the next batch among waiting items: the oldest
  always goes, joined by the waiting items closest to it in cost. When everything
  waiting fits, everything goes, so light load pays nothing for the grouping.
  Once a padded batch's fixed time is measured (its ``overhead`` in cost units),
  a batch that must leave items waiting is the run of like costs around the oldest
  that does the most real work per second (`fastest_run`): few waiting items of
  scattered lengths make small, tight batches, not one big padded one.
"""

from __future__ import annotations

import enum
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .validate import check_flag, check_number, positive_int

__all__ = [
    "BatchMeter",
    "BatchTrace",
    "CloseReason",
    "CostBudget",
    "fastest_cuts",
    "fastest_run",
    "group_by_cost",
    "padded_fraction",
    "pick_batch",
]


class CloseReason(str, enum.Enum):
    """Why a batch stopped growing: every batch record carries one."""

    COUNT = "count"  # it reached max_batch_size items
    BUDGET = "budget"  # the next item would have taken it past max_batch_cost
    IDLE_WORKER = "idle_worker"  # a worker was free and took what was waiting
    MAX_WAIT = "max_wait"  # its oldest item had waited max_wait
    DEADLINE = "deadline"  # an item's deadline was near
    SHUTDOWN = "shutdown"  # the engine was closing and flushed what it held
    INPUT_END = "input_end"  # a bulk job's input (or its regrouping window) ran out


@dataclass(frozen=True, slots=True)
class BatchTrace:
    """What one batch did, where an engine runs batches inside a larger unit (a bulk
    chunk): why it closed, its size, real and padded cost, the out-of-memory errors it
    met (each one a split, or an item failing alone), its seconds in the batch function
    (its halves' too) and the exception type names of its items that failed alone."""

    reason: str
    size: int
    cost: float
    padded_cost: float
    oom_splits: int
    duration: float
    errors: tuple[str, ...] = ()


def padded_fraction(cost: float, padded_cost: float) -> float:
    """The share of ``padded_cost`` that was padding: ``1 - cost / padded_cost`` (0 for 0)."""
    return 1.0 - cost / padded_cost if padded_cost > 0 else 0.0


@dataclass(frozen=True)
class CostBudget:
    """The limits of one batch, in items and in cost units (e.g. tokens)."""

    max_batch_size: int
    max_batch_cost: float = math.inf
    padded: bool = False

    def __post_init__(self) -> None:
        positive_int("max_batch_size", self.max_batch_size)
        check_number("max_batch_cost", self.max_batch_cost, minimum=0, strict=True, allow_inf=True)
        check_flag("padded", self.padded)

    @property
    def bounded(self) -> bool:
        """Whether a cost budget is set (otherwise only the count limits a batch)."""
        return not math.isinf(self.max_batch_cost)

    def cost_of(self, costs: Sequence[float]) -> float:
        """The cost of a batch of items with these costs (padded or summed)."""
        if not costs:
            return 0.0
        return max(costs) * len(costs) if self.padded else float(sum(costs))

    def meter(self, cap: float | None = None) -> BatchMeter:
        """A new, empty batch under this budget, or under ``cap`` if it is lower."""
        limit = self.max_batch_cost if cap is None else min(cap, self.max_batch_cost)
        return BatchMeter(self.max_batch_size, limit, self.padded)


class BatchMeter:
    """One batch as it grows: its count, largest item and total cost."""

    __slots__ = ("count", "largest", "limit", "max_size", "padded", "total")

    def __init__(self, max_size: int, limit: float, padded: bool) -> None:
        self.max_size = max_size  # the most items the batch may hold
        self.limit = limit  # the most it may cost
        self.padded = padded  # whether its cost is largest x count, not the sum
        self.count = 0  # items in it so far
        self.largest = 0.0  # the largest item's cost so far
        self.total = 0.0  # the sum of its items' costs so far

    @property
    def cost(self) -> float:
        """Its cost under the budget's rule."""
        return self.padded_cost if self.padded else self.total

    @property
    def padded_cost(self) -> float:
        """What it costs padded to its largest item, whatever the rule."""
        return self.largest * self.count

    def refusal(self, cost: float) -> CloseReason | None:
        """Why an item of ``cost`` may not join, or None if it may."""
        if self.count == 0:
            return None
        if self.count >= self.max_size:
            return CloseReason.COUNT
        grown = max(self.largest, cost) * (self.count + 1) if self.padded else self.total + cost
        return CloseReason.BUDGET if grown > self.limit else None

    def add(self, cost: float) -> None:
        """Put an item of ``cost`` in the batch (after `refusal` said None)."""
        self.count += 1
        self.total += cost
        self.largest = max(self.largest, cost)

    def offer(self, cost: float) -> CloseReason | None:
        """Add the item if it may join; else return why the batch is closed."""
        reason = self.refusal(cost)
        if reason is None:
            self.add(cost)
        return reason


def group_by_cost(
    costs: Sequence[float],
    budget: CostBudget,
    *,
    regroup: bool = True,
    cap: float | None = None,
    overhead: float | None = None,
) -> list[tuple[list[int], CloseReason]]:
    """Cut a window of items into batches: positions into ``costs``, and why each closed.

    With ``regroup`` the items are taken in order of cost (stable, so equal costs
    keep their order), which puts items of like length together; without it, in
    their own order. Every position appears in exactly one batch. Regrouped padded
    batches with a measured ``overhead`` (a batch's fixed time in cost units) are
    cut where the window's total time is least (`fastest_cuts`); otherwise each
    batch takes items while they fit.
    """
    order = sorted(range(len(costs)), key=costs.__getitem__) if regroup else range(len(costs))
    if regroup and budget.padded and overhead is not None:
        return fastest_cuts([costs[p] for p in order], budget.meter(cap), overhead, list(order))
    batches: list[tuple[list[int], CloseReason]] = []
    current: list[int] = []
    meter = budget.meter(cap)
    for position in order:
        reason = meter.offer(costs[position])
        if reason is not None:
            batches.append((current, reason))
            current, meter = [], budget.meter(cap)
            meter.add(costs[position])
        current.append(position)
    if current:
        batches.append((current, CloseReason.INPUT_END))
    return batches


def fastest_cuts(
    ascending: Sequence[float], meter: BatchMeter, overhead: float, positions: list[int]
) -> list[tuple[list[int], CloseReason]]:
    """Cut items sorted by cost (``ascending``, at ``positions``) into padded batches
    that fit ``meter`` and take the least time in all.

    A batch's time is modelled as ``overhead + largest cost x size`` (cost units), so
    a big fixed time makes few big batches and a small one cuts where lengths jump,
    wasting little on padding. Exact, by dynamic programming over the cut points.
    """
    count = len(ascending)
    least = np.full(count + 1, np.inf)  # least time of the first k items
    least[0] = 0.0
    start = np.zeros(count + 1, dtype=np.int64)  # where the last batch of those k starts
    for end in range(1, count + 1):
        largest = ascending[end - 1]
        first = max(0, end - _most_items(meter, largest))
        times = least[first:end] + overhead + (end - np.arange(first, end)) * largest
        best = int(np.argmin(times))  # ties: the bigger batch
        least[end], start[end] = times[best], first + best
    batches: list[tuple[list[int], CloseReason]] = []
    end = count
    while end > 0:
        begin = int(start[end])
        size, most = end - begin, _most_items(meter, ascending[end - 1])
        if size >= meter.max_size:
            reason = CloseReason.COUNT
        elif end == count and size < most:
            reason = CloseReason.INPUT_END
        else:  # full, or cut where the time is least: the measured budget
            reason = CloseReason.BUDGET
        batches.append((positions[begin:end], reason))
        end = begin
    batches.reverse()
    return batches


def pick_batch(
    costs: Sequence[float],
    budget: CostBudget,
    window: int,
    *,
    cap: float | None = None,
    overhead: float | None = None,
) -> tuple[list[int], CloseReason | None]:
    """Choose the next batch among waiting items, given their costs oldest first.

    Returns the chosen positions (ascending, so in arrival order) and why the batch
    closed (None when it took everything waiting). The oldest item always goes.
    Within the first ``window`` waiting items the batch grows outward from the
    oldest in cost order, taking next whichever neighbour is closer in cost to it,
    so that little is padded. Items past the window join in arrival order while
    they fit; with ``window <= 1`` the batch is the longest prefix that fits, first
    in, first out.

    ``overhead`` is a padded batch's measured fixed time in cost units (None: not
    known). With it, a batch that cannot take everything waiting is `fastest_run`
    within the window instead.
    """
    if not costs:
        return [], None
    meter = budget.meter(cap)
    if window <= 1:
        return _fifo_prefix(costs, meter)
    if overhead is not None and budget.padded and _fifo_prefix(costs, meter)[1] is not None:
        return fastest_run(costs[:window], budget.meter(cap), overhead)  # not all fit
    return _grow_around_oldest(costs, budget.meter(cap), window)


def fastest_run(
    costs: Sequence[float], meter: BatchMeter, overhead: float
) -> tuple[list[int], CloseReason]:
    """The padded batch, among ``costs`` (oldest first), that does the most real work
    per second, and why it closed.

    A padded batch's time is modelled as ``overhead + padded cost`` (in cost units,
    measured: `batchpilot._core.costcap.CostCap.overhead`), so its rate of real work
    is ``sum of costs / (overhead + largest cost x size)``. The candidates are the
    runs of consecutive items in cost order that hold the oldest and fit ``meter``:
    for each largest cost, the run reaches down to cheaper items only while each one
    raises that rate. A big fixed time favours big batches, as without it; a small
    one favours tight batches of like cost, which waste little on padding.
    """
    order = sorted(range(len(costs)), key=costs.__getitem__)
    ascending = [costs[p] for p in order]
    sums = list(itertools.accumulate(ascending, initial=0.0))  # sums[k]: the k cheapest
    anchor = order.index(0)
    best: tuple[float, int, int, int] | None = None  # (rate, size, first, last) in ``order``
    for last in range(anchor, len(order)):
        largest = ascending[last]
        most = _most_items(meter, largest)
        if last - anchor + 1 > most:
            break  # dearer ends allow even fewer items
        first = _reach_down(ascending, sums, anchor, last, max(0, last - most + 1), overhead)
        size = last - first + 1
        time = overhead + size * largest
        rate = (sums[last + 1] - sums[first]) / time if time > 0 else math.inf
        if best is None or (rate, size) > best[:2]:
            best = (rate, size, first, last)
    assert best is not None  # the oldest alone is always a candidate
    _, size, first, last = best
    # The budget closed it: the user's, or the one the measured time sets, as when a
    # controller lowers the cost cap.
    reason = CloseReason.COUNT if size >= meter.max_size else CloseReason.BUDGET
    return sorted(order[first : last + 1]), reason


def _reach_down(
    ascending: Sequence[float],
    sums: Sequence[float],
    anchor: int,
    last: int,
    lowest: int,
    overhead: float,
) -> int:
    """Where the fastest run from ``last`` down past ``anchor`` starts (not below
    ``lowest``): cheaper items join while each keeps the rate of real work.

    Once one cheaper item would lower the rate, every item below it would too (the
    rate stays above its cost ratio), so the start is found by bisection.
    """
    largest = ascending[last]

    def joins(first: int) -> bool:  # whether item first - 1 keeps the run's rate
        work = sums[last + 1] - sums[first]
        return ascending[first - 1] * (overhead + (last - first + 1) * largest) >= work * largest

    low, high = lowest + 1, anchor + 1  # the lowest ``first`` that lets its item join
    while low < high:
        middle = (low + high) // 2
        if joins(middle):
            high = middle
        else:
            low = middle + 1
    return low - 1 if low <= anchor else anchor


def _most_items(meter: BatchMeter, largest: float) -> int:
    """How many items a padded batch whose largest item costs ``largest`` may hold."""
    if largest <= 0 or math.isinf(meter.limit):
        return meter.max_size
    return max(1, min(meter.max_size, int(meter.limit // largest)))


def _grow_around_oldest(
    costs: Sequence[float], meter: BatchMeter, window: int
) -> tuple[list[int], CloseReason | None]:
    candidates = sorted(range(min(window, len(costs))), key=costs.__getitem__)
    anchor = candidates.index(0)
    meter.add(costs[0])
    chosen = [0]
    below, above = anchor - 1, anchor + 1
    reason: CloseReason | None = None
    while below >= 0 or above < len(candidates):
        side = _closer_side(costs, candidates, costs[0], below, above)
        position = candidates[below if side < 0 else above]
        refused = meter.offer(costs[position])
        if refused is None:
            chosen.append(position)
        reason = reason or refused
        if refused is CloseReason.COUNT:
            break
        # A refused dearer item closes its side; so does a cheaper one when padded
        # (its cost does not matter there), but a cheaper one still may fit a sum.
        closes_side = refused is not None and (side > 0 or meter.padded)
        if side < 0:
            below = -1 if closes_side else below - 1
        else:
            above = len(candidates) if closes_side else above + 1
    if reason is None:
        rest, reason = _fifo_prefix(costs[len(candidates) :], meter)
        chosen.extend(len(candidates) + position for position in rest)
    return sorted(chosen), reason


def _fifo_prefix(costs: Sequence[float], meter: BatchMeter) -> tuple[list[int], CloseReason | None]:
    for position, cost in enumerate(costs):
        reason = meter.offer(cost)
        if reason is not None:
            return list(range(position)), reason
    return list(range(len(costs))), None


def _closer_side(
    costs: Sequence[float], candidates: list[int], target: float, below: int, above: int
) -> int:
    """-1 to take the cheaper neighbour next, +1 the dearer one (ties go cheaper)."""
    if below < 0:
        return 1
    if above >= len(candidates):
        return -1
    cheaper = target - costs[candidates[below]]
    dearer = costs[candidates[above]] - target
    return -1 if cheaper <= dearer else 1
