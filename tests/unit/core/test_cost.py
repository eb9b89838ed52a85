"""The cost policy is pure: given costs and a budget, exact batches and reasons."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from batchpilot._core.cost import (
    CloseReason,
    CostBudget,
    fastest_run,
    group_by_cost,
    pick_batch,
)
from batchpilot.errors import ConfigError


def test_padded_batch_costs_its_largest_item_times_its_size() -> None:
    assert CostBudget(8, 100, padded=True).cost_of([3, 10, 4]) == 30
    assert CostBudget(8, 100, padded=False).cost_of([3, 10, 4]) == 17
    assert CostBudget(8).cost_of([]) == 0


@pytest.mark.parametrize(
    ("field", "kwargs"),
    [
        ("max_batch_size", {"max_batch_size": 0}),
        ("max_batch_cost", {"max_batch_size": 1, "max_batch_cost": 0}),
        ("max_batch_cost", {"max_batch_size": 1, "max_batch_cost": math.nan}),
        ("padded", {"max_batch_size": 1, "padded": 1}),
    ],
)
def test_a_bad_budget_names_its_field(field: str, kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError, match=field):
        CostBudget(**kwargs)  # type: ignore[arg-type]


def test_meter_says_why_an_item_is_refused() -> None:
    meter = CostBudget(3, 20, padded=True).meter()
    assert meter.offer(5) is None
    assert meter.offer(6) is None  # 6 x 2 = 12
    assert meter.offer(7) is CloseReason.BUDGET  # 7 x 3 = 21 > 20
    assert meter.offer(1) is None  # 6 x 3 = 18: a short item still fits
    assert meter.offer(1) is CloseReason.COUNT
    assert (meter.count, meter.cost, meter.total, meter.padded_cost) == (3, 18, 12, 18)


def test_an_item_over_budget_runs_alone_and_never_waits() -> None:
    budget = CostBudget(8, 10)
    assert group_by_cost([50, 2, 3], budget, regroup=False) == [
        ([0], CloseReason.BUDGET),
        ([1, 2], CloseReason.INPUT_END),
    ]
    assert pick_batch([50, 2, 3], budget, window=8) == ([0], CloseReason.BUDGET)


def test_a_cap_lowers_the_budget_but_never_raises_it() -> None:
    budget = CostBudget(8, 10)
    assert budget.meter(cap=4).limit == 4
    assert budget.meter(cap=40).limit == 10


def test_group_by_cost_puts_like_lengths_together() -> None:
    costs = [30, 2, 31, 3, 29, 2]
    budget = CostBudget(8, 64, padded=True)
    fifo = group_by_cost(costs, budget, regroup=False)
    sorted_ = group_by_cost(costs, budget)
    assert [b for b, _ in sorted_] == [[1, 5, 3], [4, 0], [2]]
    budget_, end = CloseReason.BUDGET, CloseReason.INPUT_END
    assert [r for _, r in sorted_] == [budget_, budget_, end]
    padded = sum(budget.cost_of([costs[p] for p in b]) for b, _ in sorted_)
    padded_fifo = sum(budget.cost_of([costs[p] for p in b]) for b, _ in fifo)
    assert padded < padded_fifo


def test_pick_batch_takes_everything_waiting_when_it_fits() -> None:
    assert pick_batch([5, 40, 3], CostBudget(8, 1000, padded=True), window=64) == ([0, 1, 2], None)
    assert pick_batch([], CostBudget(8), window=4) == ([], None)


def test_pick_batch_keeps_the_oldest_and_its_nearest_in_cost() -> None:
    costs = [10, 100, 11, 98, 9, 12]
    chosen, reason = pick_batch(costs, CostBudget(8, 48, padded=True), window=8)
    assert chosen == [0, 2, 4, 5]  # 12 x 4 = 48; the long ones wait for each other
    assert reason is CloseReason.BUDGET


def test_pick_batch_window_one_is_first_in_first_out() -> None:
    costs = [10, 100, 11]
    assert pick_batch(costs, CostBudget(8, 200, padded=True), window=1) == (
        [0, 1],
        CloseReason.BUDGET,
    )


def test_pick_batch_reaches_past_the_window_in_arrival_order() -> None:
    assert pick_batch([4, 9, 1, 1], CostBudget(3, 100), window=2) == ([0, 1, 2], CloseReason.COUNT)


def test_pick_batch_summed_budget_still_takes_a_cheaper_item_after_a_refusal() -> None:
    # oldest 10; cheaper neighbours 8 (refused: 10 + 8 > 15), then 1 (fits).
    assert pick_batch([10, 8, 1], CostBudget(8, 15), window=8) == ([0, 2], CloseReason.BUDGET)


costs_lists = st.lists(st.integers(min_value=1, max_value=600), min_size=1, max_size=60)


@given(costs_lists, st.integers(1, 16), st.integers(1, 2000), st.booleans(), st.booleans())
def test_group_by_cost_places_every_item_once_within_budget(
    costs: list[int], size: int, limit: int, padded: bool, regroup: bool
) -> None:
    budget = CostBudget(size, limit, padded=padded)
    batches = group_by_cost(costs, budget, regroup=regroup)
    assert sorted(p for b, _ in batches for p in b) == list(range(len(costs)))
    for positions, _ in batches:
        assert 1 <= len(positions) <= size
        assert len(positions) == 1 or budget.cost_of([costs[p] for p in positions]) <= limit


@given(costs_lists, st.integers(1, 16), st.integers(1, 2000), st.booleans(), st.integers(0, 80))
def test_pick_batch_always_serves_the_oldest_within_budget(
    costs: list[int], size: int, limit: int, padded: bool, window: int
) -> None:
    budget = CostBudget(size, limit, padded=padded)
    chosen, reason = pick_batch(costs, budget, window)
    assert chosen[0] == 0 and chosen == sorted(set(chosen))
    assert len(chosen) <= size
    assert len(chosen) == 1 or budget.cost_of([costs[p] for p in chosen]) <= limit
    assert (reason is None) == (len(chosen) == len(costs))


# -- measured fixed time: the fastest batch, the fastest cuts ---------------------------


def test_a_small_fixed_time_makes_a_tight_batch_around_the_oldest() -> None:
    costs = [50, 10, 12, 48, 52, 11, 200]  # the oldest costs 50
    budget = CostBudget(64, 1000, padded=True)
    # 102 real / (5 + 2 x 52) beats 98 / (5 + 2 x 50) and 150 / (5 + 3 x 52)
    assert pick_batch(costs, budget, window=64, overhead=5) == ([0, 4], CloseReason.BUDGET)
    # without a measured fixed time: the neighbours in cost, up to the budget
    assert pick_batch(costs, budget, window=64) == ([0, 1, 2, 3, 4, 5], CloseReason.BUDGET)


def test_a_big_fixed_time_makes_the_batch_with_the_most_work_that_fits() -> None:
    costs = [50, 10, 12, 48, 52, 11, 200]
    budget = CostBudget(64, 1000, padded=True)
    # the time is all fixed: the most real work that fits, 5 items up to 200 (362 tokens)
    assert pick_batch(costs, budget, window=64, overhead=1e6) == (
        [0, 2, 3, 4, 6],
        CloseReason.BUDGET,
    )


def test_a_measured_fixed_time_changes_nothing_when_everything_fits_or_costs_are_summed() -> None:
    costs = [5, 40, 3]
    assert pick_batch(costs, CostBudget(8, 1000, padded=True), window=64, overhead=0) == (
        [0, 1, 2],
        None,
    )
    summed = CostBudget(8, 60)
    assert pick_batch([50, 10, 12, 48], summed, window=8, overhead=0) == pick_batch(
        [50, 10, 12, 48], summed, window=8
    )


def test_the_fastest_batch_respects_the_count_and_runs_an_item_over_budget_alone() -> None:
    assert pick_batch([9, 9, 9, 9, 1], CostBudget(3, 100, padded=True), window=8, overhead=1) == (
        [0, 1, 2],
        CloseReason.COUNT,
    )
    assert pick_batch([500, 5, 5], CostBudget(8, 100, padded=True), window=8, overhead=0) == (
        [0],
        CloseReason.BUDGET,
    )


@pytest.mark.parametrize("overhead", [0.0, 3.0, 40.0, 1000.0])
def test_the_fastest_batch_is_the_best_run_around_the_oldest(overhead: float) -> None:
    rng = random.Random(7)
    for _ in range(200):
        costs = [float(rng.choice([1, 2, 5, 8, 9, 20, 30])) for _ in range(rng.randint(2, 12))]
        budget = CostBudget(rng.randint(1, 6), 60, padded=True)
        chosen, _ = fastest_run(costs, budget.meter(), overhead)
        assert 0 in chosen
        ascending = sorted(costs)
        anchor = sorted(range(len(costs)), key=costs.__getitem__).index(0)
        best = max(
            (sum(ascending[f : t + 1]) / (overhead + (t - f + 1) * ascending[t]), t - f + 1)
            for f in range(anchor + 1)
            for t in range(anchor, len(costs))
            if t - f + 1 <= budget.max_batch_size
            and (t == f or (t - f + 1) * ascending[t] <= budget.max_batch_cost)
        )
        largest = max(costs[p] for p in chosen)
        got = sum(costs[p] for p in chosen) / (overhead + len(chosen) * largest)
        assert (got, len(chosen)) == (pytest.approx(best[0]), best[1])


def _least_time(ascending: list[float], limit: float, max_size: int, overhead: float) -> float:
    """The least total time over every way to cut ``ascending`` into contiguous batches."""
    best = float("inf")
    count = len(ascending)
    for mask in range(1 << max(count - 1, 0)):
        time, begin, ok = 0.0, 0, True
        for end in range(1, count + 1):
            if end == count or mask >> (end - 1) & 1:
                size, largest = end - begin, ascending[end - 1]
                ok = ok and size <= max_size and (size == 1 or size * largest <= limit)
                time += overhead + size * largest
                begin = end
        if ok:
            best = min(best, time)
    return best


@pytest.mark.parametrize("overhead", [0.0, 3.0, 40.0, 1000.0])
def test_fastest_cuts_take_the_least_time_of_every_cutting(overhead: float) -> None:
    rng = random.Random(21)
    for _ in range(40):
        costs = [float(rng.choice([1, 2, 5, 8, 9, 20, 30])) for _ in range(rng.randint(1, 9))]
        budget = CostBudget(4, 60, padded=True)
        batches = group_by_cost(costs, budget, overhead=overhead)
        assert sorted(p for positions, _ in batches for p in positions) == list(range(len(costs)))
        for positions, _ in batches:
            assert len(positions) <= 4
            assert len(positions) == 1 or max(costs[p] for p in positions) * len(positions) <= 60
        took = sum(overhead + len(b) * max(costs[p] for p in b) for b, _ in batches)
        assert took == pytest.approx(_least_time(sorted(costs), 60, 4, overhead))


def test_fastest_cuts_cut_where_lengths_jump_unless_a_batch_costs_much() -> None:
    costs = [100, 10, 10, 100, 10]
    budget = CostBudget(64, 1000, padded=True)
    assert group_by_cost(costs, budget, overhead=5) == [
        ([1, 2, 4], CloseReason.BUDGET),
        ([0, 3], CloseReason.INPUT_END),
    ]
    assert group_by_cost(costs, budget, overhead=1000) == [([1, 2, 4, 0, 3], CloseReason.INPUT_END)]
    # first in, first out, or summed costs: cut as before, whatever the fixed time
    assert group_by_cost(costs, budget, regroup=False, overhead=5) == group_by_cost(
        costs, budget, regroup=False
    )
