"""BatchStats as seed 001 documents it: window, percentiles, rates, cache."""

from __future__ import annotations

import threading

import pytest

from batchpilot import BatchStats


def test_window_keeps_the_last_samples_only() -> None:
    stats = BatchStats(window_size=3)
    for i in range(1, 6):
        stats.update(processing_time=0.1 * i, batch_size=i, queue_time=0.01)
    assert list(stats.batch_sizes) == [3, 4, 5]
    assert stats.total_processed == 15
    assert stats.batch_counts == 5
    result = stats.get_stats()
    assert result["avg_batch_size"] == pytest.approx(4.0)
    assert result["avg_processing_time"] == pytest.approx(0.4)
    assert result["throughput"] == pytest.approx(12 / 1.2)


def test_latency_percentiles_and_default_latency() -> None:
    stats = BatchStats(window_size=100)
    for i in range(100):
        stats.update(processing_time=0.0, batch_size=1, queue_time=0.0, latency=float(i + 1))
    result = stats.get_stats()
    assert result["p50_latency"] == pytest.approx(50.5)
    assert result["p95_latency"] == pytest.approx(95.05)
    assert result["p99_latency"] == pytest.approx(99.01)
    fresh = BatchStats(window_size=2)
    fresh.update(processing_time=0.2, batch_size=1, queue_time=0.3)
    assert fresh.get_stats()["avg_latency"] == pytest.approx(0.5)


def test_error_rate_is_a_fraction_of_attempted_items() -> None:
    stats = BatchStats(window_size=10)
    assert stats.get_stats()["error_rate"] == 0.0
    stats.update(processing_time=0.1, batch_size=4, queue_time=0.0)
    stats.record_error(count=2)  # 2 of the batch's 4 items failed
    assert stats.get_stats()["error_rate"] == pytest.approx(0.5)
    stats.record_error(count=10)  # items that never ran cannot push it past 1
    assert stats.error_counts == 12
    assert stats.get_stats()["error_rate"] == 1.0


def test_get_stats_is_a_cached_snapshot_invalidated_by_updates() -> None:
    stats = BatchStats(window_size=10)
    stats.update(processing_time=0.1, batch_size=2, queue_time=0.0, queue_length=7)
    first = stats.get_stats()
    first["throughput"] = -1.0  # a snapshot: mutating it changes nothing inside
    assert stats.get_stats()["throughput"] == pytest.approx(20.0)
    assert stats.get_stats()["avg_queue_length"] == 7.0
    stats.update(processing_time=0.1, batch_size=4, queue_time=0.0)
    assert stats.get_stats()["throughput"] == pytest.approx(30.0)


def test_concurrent_updates_are_not_lost() -> None:
    stats = BatchStats(window_size=10)
    barrier = threading.Barrier(4)

    def worker() -> None:
        barrier.wait()
        for _ in range(1000):
            stats.update(processing_time=0.001, batch_size=1, queue_time=0.0)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert stats.total_processed == 4000
    assert stats.batch_counts == 4000


def test_empty_stats_and_validation() -> None:
    result = BatchStats(window_size=5).get_stats()
    assert result["throughput"] == 0.0
    assert result["p99_latency"] == 0.0
    with pytest.raises(ValueError):
        BatchStats(window_size=0)
