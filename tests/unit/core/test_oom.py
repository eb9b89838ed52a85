"""Out-of-memory handling is pure: exact caps after scripted errors and successes."""

from __future__ import annotations

import math

import pytest

from batchpilot._core.oom import OutOfMemoryBackoff, is_out_of_memory, split_by_cost


def test_memory_errors_and_torch_out_of_memory_are_recognised() -> None:
    torch = pytest.importorskip("torch")
    assert is_out_of_memory(MemoryError())
    assert is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory"))
    assert is_out_of_memory(torch.cuda.OutOfMemoryError("CUDA out of memory"))
    assert not is_out_of_memory(RuntimeError("out of patience"))
    assert not is_out_of_memory(ValueError())


def test_split_by_cost_balances_padded_cost_and_keeps_long_items_together() -> None:
    left, right = split_by_cost([2, 50, 3, 48, 2, 2], padded=True)
    assert sorted(left + right) == list(range(6))
    assert set(right) == {1, 3}  # 50 x 2 = 100 against 3 x 4 = 12 (vs 48 x 3 = 144)


def test_split_by_cost_balances_summed_cost() -> None:
    left, right = split_by_cost([5, 5, 5, 5], padded=False)
    assert (len(left), len(right)) == (2, 2)


def test_a_single_item_cannot_be_split() -> None:
    with pytest.raises(ValueError, match="cannot be split"):
        split_by_cost([7], padded=True)


def test_backoff_halves_below_the_failure_then_grows_back_to_just_under_it() -> None:
    backoff = OutOfMemoryBackoff(4000, patience=2, growth=2.0)
    backoff.on_out_of_memory(4000)
    assert (backoff.cap, backoff.splits) == (2000, 1)
    backoff.on_success()
    assert backoff.cap == 2000  # one success is not enough
    backoff.on_success()
    assert backoff.cap == pytest.approx(4000 * 0.999)  # grows, but not to what failed
    backoff.on_success()
    backoff.on_success()
    assert backoff.too_much == 8000  # a probe: 4000 may have been a passing shortage
    assert backoff.cap == 4000  # capped by the user's budget


def test_backoff_without_a_budget_learns_one_from_the_first_error() -> None:
    backoff = OutOfMemoryBackoff()
    backoff.on_success()
    assert math.isinf(backoff.cap)
    backoff.on_out_of_memory(300)
    backoff.on_out_of_memory(150)
    assert backoff.cap == 75
    assert backoff.too_much == 150


def test_backoff_never_drops_below_its_floor() -> None:
    backoff = OutOfMemoryBackoff(100, floor=10)
    for _ in range(10):
        backoff.on_out_of_memory(backoff.cap)
    assert backoff.cap == 10
