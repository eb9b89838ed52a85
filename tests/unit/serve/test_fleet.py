"""Merging the snapshots of ``serve --workers N``: exact sums from hand-made snapshots."""

from __future__ import annotations

import pytest

pytest.importorskip("prometheus_client")

from prometheus_client import generate_latest

from batchpilot.serve.fleet import Fleet, all_set_up, merge_metrics, merge_stats


def _series(t, requests, p50, p99, batches, mean_batch_size, queue_depth):
    return {
        "t": t, "requests": requests, "errors": [0] * len(t), "p50_ms": p50, "p99_ms": p99,
        "batches": batches, "mean_batch_size": mean_batch_size, "queue_depth": queue_depth,
    }  # fmt: skip


def _batcher(batches, items, current, mean_duration):
    return {
        "name": "m", "queue_size": 1, "active_batches": 0, "current_batch_size": current,
        "batches": batches, "items": items, "succeeded": items, "failed": 0, "expired": 0,
        "cancelled": 0, "failed_batches": 0, "waits": 0, "mean_batch_size": items / batches,
        "mean_batch_duration": mean_duration,
    }  # fmt: skip


def _snapshot(pid, responses, batcher, series, setup_done=True):
    stats = {
        "model": "m", "ready": setup_done, "timeout": None, "responses": responses,
        "rejected": 1, "timed_out": 0, "in_flight": 2, "batcher": batcher, "series": series,
    }  # fmt: skip
    metrics = [
        ["batchpilot_http_responses", "counter", "Responses.",
         [["batchpilot_http_responses_total", {"code": code}, float(n)]
          for code, n in responses.items()]],
    ]  # fmt: skip
    return {
        "worker": 0, "pid": pid, "setup_done": setup_done, "ready": setup_done,
        "draining": False, "stats": stats, "metrics": metrics,
    }  # fmt: skip


def test_stats_add_up_and_series_align_on_each_workers_latest_second():
    a = _snapshot(
        10, {"200": 5, "503": 1}, _batcher(4, 8, 16, 0.1),
        _series(
            [1.0, 2.0, 3.0], [1, 2, 3], [10, 20, 30], [11, 21, 31], [1, 1, 2], [2, 2, 1], [0, 1, 2]
        ),
    )  # fmt: skip
    b = _snapshot(
        11, {"200": 7}, _batcher(1, 4, 32, 0.3),
        _series([2.5, 3.5], [0, 1], [0, 40], [0, 41], [0, 1], [0, 4], [5, 5]),
    )  # fmt: skip
    merged = merge_stats([a, b], ready=True)
    assert merged["responses"] == {"200": 12, "503": 1}
    assert (merged["rejected"], merged["in_flight"]) == (2, 4)
    assert merged["batcher"]["batches"] == 5 and merged["batcher"]["items"] == 12
    assert merged["batcher"]["mean_batch_size"] == 12 / 5
    assert merged["batcher"]["mean_batch_duration"] == pytest.approx((4 * 0.1 + 0.3) / 5)
    assert merged["batcher"]["current_batch_size"] is None  # differs between workers
    assert merged["batcher"]["name"] == "m"
    series = merged["series"]
    assert series["t"] == [1.0, 2.5, 3.5]
    assert series["requests"] == [1, 2, 4]
    assert series["p50_ms"] == [10, 20, (30 * 3 + 40 * 1) / 4]
    assert series["p99_ms"] == [11, 21, 41]
    assert series["mean_batch_size"] == [2, 2, (2 * 1 + 1 * 4) / 3]
    assert series["queue_depth"] == [0, 6, 7]
    assert [w["pid"] for w in merged["workers"]] == [10, 11]


def test_a_worker_that_has_published_nothing_is_not_ready():
    a = _snapshot(10, {}, _batcher(1, 1, 1, 0.1), _series([1.0], [0], [0], [0], [0], [0], [0]))
    assert all_set_up([a, None]) is False
    assert all_set_up([a, {**a, "setup_done": False}]) is False
    assert all_set_up([a, a]) is True
    merged = merge_stats([a, None], ready=False)
    assert merged["setup_done"] is False
    assert merged["workers"][1] == {"worker": 1, "pid": None, "setup_done": False, "ready": False}


def test_metrics_sum_per_sample():
    empty = _series([], [], [], [], [], [], [])
    a = _snapshot(10, {"200": 5}, _batcher(1, 1, 1, 0.1), empty)
    b = _snapshot(11, {"200": 7, "500": 1}, _batcher(1, 1, 1, 0.1), empty)
    text = generate_latest(merge_metrics([a, None, b])).decode()
    assert 'batchpilot_http_responses_total{code="200"} 12.0' in text
    assert 'batchpilot_http_responses_total{code="500"} 1.0' in text


def test_a_worker_reads_what_its_peers_published(tmp_path):
    first, second = Fleet(tmp_path, 0, 2), Fleet(tmp_path, 1, 2)
    one = _snapshot(10, {"200": 1}, _batcher(1, 1, 1, 0.1), _series([], [], [], [], [], [], []))
    assert first.snapshots(one) == [one, None]
    two = {**one, "pid": 11}
    assert second.snapshots(two) == [one, two]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["worker-0.json", "worker-1.json"]


def test_batches_by_close_reason_costs_and_oom_splits_add_up_across_workers():
    def batcher(reasons, cost, padded, splits):
        return {
            **_batcher(2, 8, 16, 0.1), "close_reasons": reasons, "cost": cost,
            "padded_cost": padded, "padded_fraction": 1 - cost / padded, "oom_splits": splits,
            "cost_cap": 100.0,
        }  # fmt: skip

    series = _series([1.0], [1], [10], [11], [1], [2], [0])
    a = _snapshot(10, {"200": 1}, batcher({"count": 1, "budget": 1}, 30.0, 40.0, 1), series)
    b = _snapshot(11, {"200": 1}, batcher({"budget": 2}, 10.0, 40.0, 2), series)
    merged = merge_stats([a, b], ready=True)["batcher"]
    assert merged["close_reasons"] == {"count": 1, "budget": 3}
    assert (merged["cost"], merged["padded_cost"], merged["oom_splits"]) == (40.0, 80.0, 3)
    assert merged["padded_fraction"] == pytest.approx(0.5)
    assert merged["cost_cap"] == 100.0
