"""map_batches with cost=: windows regrouped under a budget, out of memory split and backed off."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from batchpilot._core.cost import CostBudget
from batchpilot._core.oom import is_out_of_memory
from batchpilot.bulk import ItemFailure, map_batches
from batchpilot.bulk.grouping import CostGroupedBatches
from batchpilot.errors import ConfigError

pytestmark = pytest.mark.timeout(60)


class Padded:
    """Items are token counts; records each batch's (count, padded cost); doubles items.

    Runs out of memory (`MemoryError`) above ``memory`` padded tokens.
    """

    def __init__(self, memory: float = float("inf")) -> None:
        self.memory = memory
        self.batches: list[list[int]] = []
        self.ooms = 0

    def __call__(self, xs: list[int]) -> list[int]:
        if max(xs) * len(xs) > self.memory:
            self.ooms += 1
            raise MemoryError(f"{max(xs) * len(xs)} padded tokens")
        self.batches.append(list(xs))
        return [2 * x for x in xs]

    @property
    def padded(self) -> int:
        return sum(max(b) * len(b) for b in self.batches)


LENGTHS = [((i * 37) % 97) + 3 for i in range(300)]  # ragged, deterministic, 3..99


def run(fn: Padded, **options: object) -> list[object]:
    return list(map_batches(fn, LENGTHS, cost=float, executor="serial", **options))  # type: ignore[arg-type]


def test_results_come_in_input_order_and_every_batch_is_within_budget() -> None:
    fn = Padded()
    assert run(fn, max_batch_cost=1000, padded=True, batch_size=32) == [2 * x for x in LENGTHS]
    assert all(len(b) <= 32 and max(b) * len(b) <= 1000 for b in fn.batches)
    assert sorted(x for b in fn.batches for x in b) == sorted(LENGTHS)


def test_sorting_within_the_window_pads_far_less_than_first_in_first_out() -> None:
    fifo, grouped = Padded(), Padded()
    run(fifo, max_batch_cost=1000, padded=True, sort_window=0)
    run(grouped, max_batch_cost=1000, padded=True, sort_window=300)
    real = sum(LENGTHS)
    assert grouped.padded < 1.1 * real < fifo.padded
    assert len(grouped.batches) < len(fifo.batches)


def test_a_summed_budget_bounds_the_sum() -> None:
    fn = Padded()
    run(fn, max_batch_cost=500, padded=False)
    assert all(sum(b) <= 500 for b in fn.batches)


def test_an_item_over_budget_runs_alone_and_succeeds() -> None:
    fn = Padded()
    assert list(
        map_batches(fn, [5, 500, 6], cost=float, max_batch_cost=100, executor="serial")
    ) == [
        10,
        1000,
        12,
    ]
    assert [500] in fn.batches


def test_out_of_memory_splits_the_batch_and_every_item_gets_its_own_result() -> None:
    fn = Padded(memory=1000)
    assert run(fn, max_batch_cost=4000, padded=True) == [2 * x for x in LENGTHS]
    assert fn.ooms >= 1
    assert all(max(b) * len(b) <= 1000 for b in fn.batches)
    # The cap learnt: later windows mostly fit the first time.
    assert fn.ooms < len(fn.batches) / 2


def test_an_item_out_of_memory_alone_fails_alone() -> None:
    results = list(
        map_batches(Padded(memory=50), [5, 60, 6, 7], cost=float, padded=True, executor="serial")
    )
    assert results[0] == 10 and results[2:] == [12, 14]
    failure = results[1]
    assert isinstance(failure, ItemFailure) and isinstance(failure.error, MemoryError)
    assert failure.index == 1


def test_a_user_predicate_says_what_out_of_memory_is() -> None:
    class Tight(Padded):
        def __call__(self, xs: list[int]) -> list[int]:
            if max(xs) * len(xs) > 500:
                raise RuntimeError("device allocation failed")
            return super().__call__(xs)

    fn = Tight()
    oom = lambda error: "allocation failed" in str(error)  # noqa: E731
    assert run(fn, max_batch_cost=5000, padded=True, is_oom=oom) == [2 * x for x in LENGTHS]


def test_a_job_file_resumes_regrouped_windows_without_running_them_again(tmp_path: Path) -> None:
    job = str(tmp_path / "job.sqlite")
    first = Padded()
    with map_batches(
        first,
        LENGTHS,
        cost=float,
        max_batch_cost=800,
        padded=True,
        sort_window=50,
        job=job,
        executor="serial",
    ) as partial:
        head = [next(partial) for _ in range(120)]
    again = Padded()
    rest = list(
        map_batches(
            again,
            LENGTHS,
            cost=float,
            max_batch_cost=800,
            padded=True,
            sort_window=50,
            job=job,
            executor="serial",
        )
    )
    assert head == [2 * x for x in LENGTHS[:120]] and rest == [2 * x for x in LENGTHS]
    ran_again = sum(len(b) for b in again.batches)
    assert ran_again == len(LENGTHS) - 150  # windows 0..149 were stored whole


def test_the_grouped_function_pickles_for_process_workers() -> None:
    budget = CostBudget(8, 100, padded=True)
    grouped = CostGroupedBatches(Padded(), float, budget, regroup=True, is_oom=is_out_of_memory)
    clone = pickle.loads(pickle.dumps(grouped))
    assert clone([3, 1, 2]) == [6, 2, 4]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"cost": 3}, "cost must be a function"),
        ({"cost": len, "batch_size": 2.5}, "batch_size bounds the items"),
        ({"cost": len, "sort_window": -1}, "sort_window"),
        ({"cost": len, "max_batch_cost": 0}, "max_batch_cost"),
        ({"cost": len, "padded": "yes"}, "padded"),
    ],
)
def test_bad_cost_options_are_clear_errors(options: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        map_batches(Padded(), [[1]], **options)  # type: ignore[arg-type]


def test_an_async_function_with_cost_is_refused_clearly() -> None:
    async def fn(xs: list[int]) -> list[int]:
        return xs

    with pytest.raises(ConfigError, match="async def is not supported"):
        map_batches(fn, [1], cost=float, executor="asyncio")
