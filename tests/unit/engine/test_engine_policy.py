"""The engine's measured decisions as pure functions: wait budget and placement."""

from __future__ import annotations

import pytest

from batchpilot._engine.policy import PlacementProbe, wait_budget

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
    assert probe.inline and probe.cpu_share is None  # optimistic before any measurement
    probe.observe(wall=0.002, cpu=0.00001)  # slept 2 ms
    assert not probe.inline


def test_probe_ignores_an_outlier_preemption_or_gc_pause() -> None:
    probe = PlacementProbe(window=5)
    for _ in range(4):
        probe.observe(wall=0.0001, cpu=0.0001)
    probe.observe(wall=0.050, cpu=0.001)  # preempted for 50 ms
    assert probe.inline
    assert probe.cpu_share == 1.0 and probe.duration == 0.0001


def test_probe_sends_long_cpu_bound_functions_to_a_thread() -> None:
    probe = PlacementProbe(max_inline_duration=0.005)
    probe.observe(wall=0.050, cpu=0.050)
    assert not probe.inline
    probe.observe(wall=0.0, cpu=0.0)  # ignored
    assert probe.duration == 0.050
    assert "inline=False" in repr(probe)


def test_probe_measures_again_every_so_often_while_on_a_thread() -> None:
    probe = PlacementProbe(reprobe_every=4)
    assert [probe.run_inline() for _ in range(2)] == [True, True]
    probe.observe(wall=0.003, cpu=0.0)
    assert [probe.run_inline() for _ in range(8)] == [False, False, False, True] * 2
    for _ in range(9):  # the function changed: now short and CPU-bound
        probe.observe(wall=0.0001, cpu=0.0001)
    assert probe.run_inline() and probe.inline


@pytest.mark.parametrize(
    "options",
    [
        {"min_cpu_share": 0},
        {"max_inline_duration": 0},
        {"window": 0},
        {"reprobe_every": 0},
        {"sample_every": 0},
    ],
)
def test_probe_refuses_bad_settings(options: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        PlacementProbe(**options)  # type: ignore[arg-type]


def test_probe_samples_every_batch_until_its_window_is_full_then_some() -> None:
    probe = PlacementProbe(window=3, sample_every=4)
    assert all(probe.wants_sample() for _ in range(5))  # window not full yet
    for _ in range(3):
        probe.observe(wall=0.0001, cpu=0.0001)
    assert [probe.wants_sample() for _ in range(8)] == [False, False, False, True] * 2


def test_a_started_sample_is_observed_once_it_ends() -> None:
    probe = PlacementProbe(window=1, sample_every=2, max_inline_duration=2.0)
    probe.observe(wall=1.0, cpu=1.0)  # the window is full: one batch in two is measured

    skipped = probe.start_sample()
    probe.end_sample(skipped)
    assert skipped is None and probe.duration == 1.0

    sample = probe.start_sample()
    assert sample is not None
    sum(range(10_000))  # the "batch"
    probe.end_sample(sample)
    assert probe.duration is not None and 0 < probe.duration < 1.0


def test_a_guarded_probe_runs_nothing_inline_before_a_thread_showed_it_short() -> None:
    probe = PlacementProbe(guarded=True, window=2, max_inline_duration=0.005)
    assert not probe.inline and not probe.run_inline()  # never timed: a worker thread
    probe._thread_wall = 1.2  # a 1.2 s batch on a worker thread
    assert not any(probe.run_inline() for _ in range(200))  # never probed on the loop
    probe._thread_wall = 0.0001  # a short one
    assert probe.run_inline()  # now measured inline
    probe.observe(wall=0.0001, cpu=0.0001)
    probe.observe(wall=0.0001, cpu=0.0001)
    assert probe.inline


def test_a_guarded_probe_times_thread_batches_only_until_it_decides_inline() -> None:
    probe = PlacementProbe(guarded=True, window=1)
    sample = probe.start_sample(inline=False)
    assert sample is not None
    probe.end_sample(sample)
    assert probe.run_inline()
    probe.observe(wall=0.0001, cpu=0.0001)
    assert probe.inline and probe.start_sample(inline=False) is None
    assert PlacementProbe().start_sample(inline=False) is None  # unguarded: never
