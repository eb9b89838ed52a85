"""map_batches with cost=: each batch inside a chunk is reported with why it closed,
what it cost and its out-of-memory splits (issue 21 items 4, 5)."""

from __future__ import annotations

from typing import Any

import pytest

from batchpilot._core.events import BatchRecord
from batchpilot.bulk import ItemFailure, map_batches

pytestmark = pytest.mark.timeout(60)


def doubled(xs: list[int]) -> list[int]:
    return [2 * x for x in xs]


def run(fn: Any, items: list[int], **options: Any) -> tuple[list[Any], list[BatchRecord], Any]:
    records: list[BatchRecord] = []
    job = map_batches(
        fn, items, cost=float, executor="serial", listeners=[records.append], **options
    )
    return list(job), records, job.statistics()


def test_batches_close_for_count_budget_and_the_end_of_the_window() -> None:
    items = [1, 5, 1, 9, 1, 5, 2]  # one window, cut in order of cost
    results, records, statistics = run(
        doubled, items, batch_size=3, max_batch_cost=11, sort_window=8
    )
    assert results == [2 * x for x in items]
    got = [(r.size, r.close_reason, r.cost, r.padded_cost) for r in records]
    # Sorted by cost: 1 1 1 (count) | 2 5 (5 more would pass 11: budget) | 5 (9 would
    # pass 11: budget) | 9 (the window's last: input_end).
    assert got == [
        (3, "count", 3, 3),
        (2, "budget", 7, 10),
        (1, "budget", 5, 5),
        (1, "input_end", 9, 9),
    ]
    assert all(r.engine == "bulk" and r.succeeded == r.size for r in records)
    assert statistics.close_reasons == {"count": 1, "budget": 2, "input_end": 1}
    assert statistics.oom_splits == 0


def test_out_of_memory_splits_are_counted_in_records_and_statistics() -> None:
    def limited(xs: list[int]) -> list[int]:
        if max(xs) * len(xs) > 20:
            raise MemoryError("too many padded tokens")
        return doubled(xs)

    results, records, statistics = run(
        limited, [10, 10, 10, 10], max_batch_cost=100, padded=True, sort_window=8
    )
    assert results == [20] * 4
    assert [(r.size, r.close_reason, r.oom_splits) for r in records] == [(4, "input_end", 1)]
    assert (records[0].cost, records[0].padded_cost) == (40, 40)
    assert statistics.oom_splits == 1
    assert statistics.close_reasons == {"input_end": 1}
    assert statistics.as_stats().keys() == _seed_keys()  # the seed view is unchanged


def test_an_item_out_of_memory_alone_fails_within_its_batch_record() -> None:
    def limited(xs: list[int]) -> list[int]:
        if max(xs) * len(xs) > 50:
            raise MemoryError("too many padded tokens")
        return doubled(xs)

    results, records, statistics = run(
        limited, [5, 60, 6, 7], max_batch_cost=1000, padded=True, sort_window=8
    )
    assert isinstance(results[1], ItemFailure)
    assert [r for r in results if not isinstance(r, ItemFailure)] == [10, 12, 14]
    # One batch of 4 ran: split once (5 6 7 | 60), then 60 ran out of memory alone. It
    # fails in its batch's record, and its error counts as a split, as online.
    got = [(r.size, r.close_reason, r.failed, dict(r.error_types), r.oom_splits) for r in records]
    assert got == [(4, "input_end", 1, {"MemoryError": 1}, 2)]
    assert records[0].succeeded == 3
    assert statistics.failed == 1 and statistics.oom_splits == 2


def test_without_cost_a_chunk_is_one_record_costing_its_items() -> None:
    records: list[BatchRecord] = []
    assert list(
        map_batches(doubled, [1, 2, 3], batch_size=3, executor="serial", listeners=[records.append])
    ) == [2, 4, 6]
    assert [(r.size, r.close_reason, r.cost, r.padded_cost) for r in records] == [(3, "", 3, 3)]


def _seed_keys() -> set[str]:
    return {
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
