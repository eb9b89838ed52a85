"""`BulkRun.statistics()`: one frozen snapshot in the shared vocabulary; ``stats()`` its view.

Issue 24 item 8.
"""

from __future__ import annotations

import dataclasses

import pytest

from batchpilot._core.statistics import Statistics
from batchpilot.bulk import BulkStatistics, map_batches
from batchpilot.testing import FakeClock

pytestmark = pytest.mark.timeout(30)

DOCUMENTED_STATS_KEYS = {  # docs/bulk.md and BulkRun.stats()
    "items_processed",
    "items_succeeded",
    "items_failed",
    "items_resumed",
    "chunks_processed",
    "chunks_quarantined",
    "elapsed_seconds",
    "items_per_second",
    "error_rate",
    "error_types",
    "current_batch_size",
    "batch_size_history",
    "in_flight_chunks",
    "finished",
}


def no_fives(xs: list[int]) -> list[int]:
    if 5 in xs:
        raise ValueError("five")
    return [x * 2 for x in xs]


def test_statistics_is_a_frozen_snapshot_with_the_shared_fields_first() -> None:
    clock = FakeClock()
    run = map_batches(no_fives, range(10), batch_size=4, executor="serial", name="s", clock=clock)
    list(run)
    clock.advance(2.0)
    snapshot = run.statistics()
    assert isinstance(snapshot, BulkStatistics) and isinstance(snapshot, Statistics)
    shared = [f.name for f in dataclasses.fields(Statistics)]
    assert [f.name for f in dataclasses.fields(snapshot)][: len(shared)] == shared
    assert snapshot == BulkStatistics(
        name="s",
        batches=3,
        items=10,
        succeeded=9,
        failed=1,
        current_batch_size=4,
        queue_depth=0,
        rate=5.0,
        resumed=0,
        quarantined_chunks=0,
        elapsed=2.0,
        total=10,
        error_types={"ValueError": 1},
        batch_size_history=(4, 4, 2),
        in_flight_chunks=0,
        finished=True,
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        snapshot.items = 0  # type: ignore[misc]


def test_stats_is_a_view_of_statistics_with_every_documented_key() -> None:
    clock = FakeClock()
    run = map_batches(no_fives, range(10), batch_size=4, executor="serial", clock=clock)
    assert run.stats() == run.statistics().as_stats()  # before the first chunk too
    list(run)
    stats = run.stats()
    assert set(stats) == DOCUMENTED_STATS_KEYS
    assert stats == run.statistics().as_stats()
    assert stats["error_rate"] == 0.1 and stats["batch_size_history"] == [4, 4, 2]
    assert stats["items_succeeded"] == 9 and stats["chunks_processed"] == 3


def test_a_snapshot_does_not_change_as_the_run_goes_on() -> None:
    run = map_batches(no_fives, range(10), batch_size=4, executor="serial")
    next(run)
    before = run.statistics()
    list(run)
    assert (before.items, before.batches, before.finished) == (4, 1, False)
    assert before.batch_size_history == (4,)
    assert run.statistics().items == 10
