"""Controllers are pure: scripted observations give exact size sequences."""

from __future__ import annotations

import pytest

from batchpilot import AIMD, Fixed, LinearCostModel, SizeController, TargetLatency
from batchpilot.testing import FakeClock


def drive(controller: SizeController, durations: list[float], clock: FakeClock) -> list[int]:
    """Run full batches whose duration comes from a FakeClock; return sizes used."""
    sizes = []
    for duration in durations:
        size = controller.next_size()
        sizes.append(size)
        start = clock.now()
        clock.advance(duration)
        controller.observe(size, clock.now() - start, ok=True)
    return sizes


def test_fixed_never_changes() -> None:
    controller = Fixed(8)
    assert drive(controller, [0.1, 10.0, 0.0], FakeClock()) == [8, 8, 8]
    controller.observe(8, 1.0, ok=False)
    assert controller.next_size() == 8


def test_aimd_grows_additively_and_halves_on_slow_batches() -> None:
    controller = AIMD(initial=4, min_size=1, max_size=16, increase=2, latency_target=0.1)
    sizes = drive(controller, [0.05, 0.05, 0.2, 0.05, 0.2, 0.2], FakeClock())
    assert sizes == [4, 6, 8, 4, 6, 3]
    assert controller.next_size() == 1


def test_aimd_halves_on_failure_and_ignores_partial_batches() -> None:
    controller = AIMD(initial=10, min_size=2, max_size=16)
    controller.observe(3, 0.01)  # a partial batch says nothing about a larger size
    assert controller.next_size() == 10
    controller.observe(10, 0.01, ok=False)
    assert controller.next_size() == 5
    for _ in range(5):
        controller.observe(controller.next_size(), 0.01)
    assert controller.next_size() == 10
    for _ in range(10):
        controller.observe(1, 0.01, ok=False)
    assert controller.next_size() == 2


def test_aimd_is_capped_at_max() -> None:
    controller = AIMD(initial=15, max_size=16, increase=4)
    assert drive(controller, [0.0, 0.0, 0.0], FakeClock()) == [15, 16, 16]


def test_cost_model_fits_exact_line() -> None:
    model = LinearCostModel(window=8)
    assert model.fit() is None
    model.add(10, 0.002 + 10 * 0.001)
    assert model.fit() is None  # one size says nothing about the slope
    model.add(20, 0.002 + 20 * 0.001)
    fixed, per_item = model.fit() or (0, 0)
    assert fixed == pytest.approx(0.002)
    assert per_item == pytest.approx(0.001)
    assert model.predict(50) == pytest.approx(0.052)


def test_cost_model_clamps_noise_to_non_negative() -> None:
    model = LinearCostModel()
    model.add(10, 0.5)
    model.add(20, 0.1)
    fixed, per_item = model.fit() or (-1, -1)
    assert per_item == 0.0
    assert fixed == pytest.approx(0.3)


def test_target_latency_converges_on_the_fitted_size() -> None:
    # duration = 10 ms + 1 ms per item; target 50 ms -> 40 items is ideal.
    controller = TargetLatency(0.050, min_size=1, max_size=100, initial=4)
    clock = FakeClock()
    sizes = []
    for _ in range(6):
        size = controller.next_size()
        sizes.append(size)
        clock.advance(0.010 + 0.001 * size)
        controller.observe(size, 0.010 + 0.001 * size)
    # growth is capped at 2x per step until the fit lands on 40.
    assert sizes == [4, 8, 16, 32, 40, 40]


def test_target_latency_shrinks_at_once_and_halves_on_failure() -> None:
    controller = TargetLatency(0.1, min_size=1, max_size=64, initial=64)
    controller.observe(64, 0.4)  # 4x too slow, proportional guess: 16
    assert controller.next_size() == 16
    controller.observe(16, 0.0, ok=False)
    assert controller.next_size() == 8


def test_target_latency_zero_duration_grows_by_cap() -> None:
    controller = TargetLatency(0.1, max_size=64, initial=3)
    controller.observe(3, 0.0)
    assert controller.next_size() == 6


@pytest.mark.parametrize(
    "make",
    [
        lambda: AIMD(initial=0),
        lambda: AIMD(initial=5, min_size=6, max_size=10),
        lambda: AIMD(min_size=10, max_size=5, initial=7),
        lambda: AIMD(decrease=1.5),
        lambda: AIMD(increase=0),
        lambda: AIMD(latency_target=-1),
        lambda: TargetLatency(0.0),
        lambda: TargetLatency(1.0, max_growth=1.0),
        lambda: Fixed(0),
        lambda: LinearCostModel(window=1),
    ],
)
def test_invalid_parameters_raise_value_error(make) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError):
        make()


def test_set_size_and_bounds_clamp() -> None:
    controller = AIMD(initial=8, min_size=2, max_size=32)
    controller.set_size(100)
    assert controller.next_size() == 32
    controller.set_bounds(2, 10)
    assert controller.next_size() == 10
    with pytest.raises(ValueError):
        controller.set_size(0)
    assert "size=10" in repr(controller)
