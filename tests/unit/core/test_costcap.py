"""`CostCap.overhead`: a padded batch's fixed time in cost units, measured from the
durations of finished batches (exact numbers: binary fractions of a second)."""

from __future__ import annotations

import math
import pickle

import pytest

from batchpilot._core.costcap import MIN_FIT_BATCHES, CostCap


def test_the_fixed_time_is_measured_in_cost_units_once_enough_batches_finished() -> None:
    cap = CostCap(math.inf)
    costs = [64.0, 128.0, 256.0, 512.0] * 2
    for cost in costs[:-1]:
        cap.on_batch(cost, (32 + cost) / 1024, ok=True)  # 32 tokens' worth fixed
    assert cap.overhead is None  # one batch short of MIN_FIT_BATCHES
    cap.on_batch(costs[-1], (32 + costs[-1]) / 1024, ok=True)
    assert len(costs) == MIN_FIT_BATCHES
    assert cap.overhead == pytest.approx(32.0)
    assert pickle.loads(pickle.dumps(cap)).overhead == pytest.approx(32.0)


def test_failed_batches_and_a_cost_that_adds_no_time_give_no_fixed_time() -> None:
    cap = CostCap(math.inf)
    for cost in [64.0, 128.0] * MIN_FIT_BATCHES:
        cap.on_batch(cost, 0.25, ok=True)  # as long whatever it costs
    assert cap.overhead is None
    failing = CostCap(math.inf)
    for cost in [64.0, 128.0] * MIN_FIT_BATCHES:
        failing.on_batch(cost, cost / 1024, ok=False)
    assert failing.overhead is None
