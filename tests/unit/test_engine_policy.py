"""The engine's measured decisions as pure functions: wait budget and placement."""

from __future__ import annotations

import pytest

from batchpilot._engine_policy import PlacementProbe, wait_budget

DEVICE = (0.002, 0.00002)  # 2 ms per batch + 0.02 ms per item


def test_waiting_pays_for_a_large_fixed_cost_up_to_max_wait() -> None:
    assert wait_budget(DEVICE, queued=1, expected=32, max_wait=0.005) == pytest.approx(0.005)
    assert wait_budget(DEVICE, queued=16, expected=32, max_wait=0.005) == pytest.approx(0.002)
    assert wait_budget(DEVICE, queued=31, expected=32, max_wait=0.005) == pytest.approx(0.002 / 31)


def test_no_wait_when_nothing_more_is_expected_or_nothing_is_known() -> None:
    assert wait_budget(DEVICE, queued=32, expected=32, max_wait=0.005) == 0.0
    assert wait_budget(DEVICE, queued=0, expected=32, max_wait=0.005) == 0.0
    assert wait_budget(None, queued=1, expected=32, max_wait=0.005) == 0.0
    assert wait_budget(DEVICE, queued=1, expected=32, max_wait=0.0) == 0.0
    assert wait_budget((0.0, 0.001), queued=1, expected=32, max_wait=0.005) == 0.0


def test_latency_target_bounds_wait_plus_batch() -> None:
    budget = wait_budget(DEVICE, queued=1, expected=32, max_wait=0.005, latency_target=0.004)
    assert budget == pytest.approx(0.004 - 0.00264)
    assert wait_budget(DEVICE, queued=1, expected=32, max_wait=0.005, latency_target=0.002) == 0


def test_probe_sends_waiting_functions_to_a_thread() -> None:
    probe = PlacementProbe()
    assert probe.inline  # optimistic before any measurement
    probe.observe(wall=0.002, cpu=0.00001)  # slept 2 ms
    assert not probe.inline


def test_probe_keeps_short_cpu_bound_functions_inline_despite_one_preemption() -> None:
    probe = PlacementProbe()
    probe.observe(wall=0.0001, cpu=0.0001)
    probe.observe(wall=0.001, cpu=0.0001)  # preempted once: share 0.1
    assert probe.inline
    assert probe.cpu_share == pytest.approx(1.0 + 0.2 * (0.1 - 1.0))


def test_probe_sends_long_cpu_bound_functions_to_a_thread() -> None:
    probe = PlacementProbe(max_inline_duration=0.005)
    probe.observe(wall=0.050, cpu=0.050)
    assert not probe.inline
    probe.observe(wall=0.0, cpu=0.0)  # ignored
    assert probe.duration == pytest.approx(0.050)
    assert "inline=False" in repr(probe)


@pytest.mark.parametrize(
    "options",
    [{"min_cpu_share": 0}, {"max_inline_duration": 0}, {"smoothing": 1.5}],
)
def test_probe_refuses_bad_settings(options: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        PlacementProbe(**options)
