"""BatchTally: the engine's counters and its cost model, refitted every 16 batches."""

from __future__ import annotations

import pytest

from batchpilot._engine.stats import BatchTally


def test_finished_batches_add_up() -> None:
    tally = BatchTally()
    tally.add_batch(4, 0.5, 0, True)
    tally.add_batch(2, 1.5, 1, False)

    assert (tally.batches, tally.items, tally.succeeded, tally.failed) == (2, 6, 5, 1)
    assert tally.failed_batches == 1
    assert tally.mean_batch_size == 3.0
    assert tally.mean_batch_duration == pytest.approx(1.0)


def test_means_are_zero_before_the_first_batch() -> None:
    tally = BatchTally()
    assert (tally.mean_batch_size, tally.mean_batch_duration, tally.fit()) == (0.0, 0.0, None)


def test_the_fit_is_kept_until_sixteen_more_batches_finished() -> None:
    tally = BatchTally()
    for size in (1, 2, 3, 4):
        tally.add_batch(size, 0.010 + 0.001 * size, 0, True)  # fixed 10 ms, 1 ms per item
    fixed, per_item = tally.fit() or (None, None)
    assert fixed == pytest.approx(0.010) and per_item == pytest.approx(0.001)

    for _ in range(15):
        tally.add_batch(8, 0.100, 0, True)  # much slower now
    assert tally.fit() == pytest.approx((fixed, per_item))  # 15 batches: not refitted yet
    tally.add_batch(8, 0.100, 0, True)
    refitted = tally.fit()
    assert refitted is not None and refitted != pytest.approx((fixed, per_item))


def test_failed_batches_do_not_train_the_cost_model() -> None:
    tally = BatchTally()
    for size in (1, 2, 3, 4):
        tally.add_batch(size, 0.010 + 0.001 * size, 0, False)
    assert tally.fit() is None
