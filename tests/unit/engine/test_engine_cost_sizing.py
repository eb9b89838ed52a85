"""Adaptive sizing in cost units, online and in bulk (issue 21, Deliver 2).

With ``cost=`` a size controller learns the cost cap, not an item count: the model
here takes ``padded cost / 1024`` seconds (exact in binary, on a `FakeClock`), so
``TargetLatency(0.5)`` must settle on a cap of 512 padded tokens, whether that is
32 short items or 4 long ones. Items are queued while the engine is paused, so
what waits when the slot frees is known.
"""

from __future__ import annotations

import pytest

from batchpilot._core.events import BatchRecord
from batchpilot._core.sizing import TargetLatency
from batchpilot._engine.engine import Engine
from batchpilot.bulk import ItemFailure, map_batches
from batchpilot.testing import FakeClock

pytestmark = pytest.mark.timeout(30)

SECONDS_PER_TOKEN = 2.0**-10
TARGET = 0.5  # seconds: 512 padded tokens


class Timed:
    """Items are token counts; a batch takes its padded cost in model seconds."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.batches: list[list[int]] = []

    def __call__(self, batch: list[int]) -> list[int]:
        self.batches.append(list(batch))
        self.clock.advance(max(batch) * len(batch) * SECONDS_PER_TOKEN)
        return [2 * x for x in batch]


def learner() -> TargetLatency:
    return TargetLatency(TARGET, min_size=16, max_size=100_000, initial=64)


@pytest.mark.parametrize(("length", "per_batch"), [(16, 32), (128, 4)])
def test_target_latency_learns_the_cost_cap_online(
    engines: list[Engine], length: int, per_batch: int
) -> None:
    clock = FakeClock()
    fn = Timed(clock)
    engine = Engine(
        fn,
        collate="list",
        max_wait=0.0,
        cost=float,
        padded=True,
        max_batch_cost=100_000,
        max_batch_size=64,
        controller=learner(),
        clock=clock,
    )
    engines.append(engine)
    engine.pause()
    futures = [engine.submit(length) for _ in range(400)]
    engine.resume()
    assert [f.result(timeout=10) for f in futures] == [2 * length] * 400
    assert engine.statistics().cost_cap == 512
    assert len(fn.batches[-2]) == per_batch  # the last may be the remainder
    assert all(max(b) * len(b) <= 512 for b in fn.batches[-5:-1])
    assert engine.current_batch_size == 64  # max_batch_size still bounds the count


def test_max_batch_size_still_bounds_the_count_online(engines: list[Engine]) -> None:
    clock = FakeClock()
    fn = Timed(clock)
    engine = Engine(
        fn, collate="list", max_wait=0.0, cost=float, padded=True, max_batch_size=10,
        controller=learner(), clock=clock,
    )  # fmt: skip
    engines.append(engine)
    engine.pause()
    futures = [engine.submit(16) for _ in range(200)]
    engine.resume()
    [f.result(timeout=10) for f in futures]
    assert max(len(b) for b in fn.batches) == 10


@pytest.mark.parametrize(("length", "per_batch"), [(16, 32), (128, 4)])
def test_target_latency_learns_the_cost_cap_in_bulk(length: int, per_batch: int) -> None:
    clock = FakeClock()
    fn = Timed(clock)
    records: list[BatchRecord] = []
    results = map_batches(
        fn,
        [length] * 256,
        cost=float,
        padded=True,
        batch_size=learner(),  # with cost=, a controller sizes the cost cap
        sort_window=64,
        executor="serial",
        clock=clock,
        listeners=[records.append],
    )
    assert list(results) == [2 * length] * 256
    # The first window is cut at the initial cap (64); the last at the learnt 512.
    assert {len(b) for b in fn.batches[-64 // per_batch :]} == {per_batch}
    assert {r.padded_cost for r in records[-64 // per_batch :]} == {512}


class Limited:
    """Raises MemoryError above 50 padded tokens; counts them."""

    def __init__(self) -> None:
        self.ooms = 0

    def __call__(self, batch: list[int]) -> list[int]:
        if max(batch) * len(batch) > 50:
            self.ooms += 1
            raise MemoryError(f"{max(batch) * len(batch)} padded tokens")
        return [2 * x for x in batch]


def test_an_item_out_of_memory_alone_counts_as_a_split_online_and_in_bulk(
    engines: list[Engine],
) -> None:
    items = [5, 60, 6, 7]  # 60 alone is over 50: it fails alone
    counted: dict[str, tuple[int, int, int, int]] = {}

    online, records = Limited(), []
    engine = Engine(
        online, collate="list", max_wait=0.0, cost=float, padded=True,
        listeners=[records.append],
    )  # fmt: skip
    engines.append(engine)
    engine.pause()
    futures = [engine.submit(item) for item in items]
    engine.resume()
    errors = [f.exception(timeout=10) for f in futures]
    assert [type(e) for e in errors] == [type(None), MemoryError, type(None), type(None)]
    engine.close()
    stats = engine.statistics()
    counted["online"] = (
        online.ooms,
        stats.oom_splits,
        sum(r.oom_splits for r in records),
        sum(r.failed for r in records),
    )

    bulk, records = Limited(), []
    job = map_batches(
        bulk, items, cost=float, padded=True, executor="serial", listeners=[records.append]
    )
    results = list(job)
    assert isinstance(results[1], ItemFailure) and isinstance(results[1].error, MemoryError)
    counted["bulk"] = (
        bulk.ooms,
        job.statistics().oom_splits,
        sum(r.oom_splits for r in records),
        sum(r.failed for r in records),
    )
    # Every MemoryError the function raised is one split, the lone item's included.
    for ooms, splits, in_records, failed in counted.values():
        assert ooms == splits == in_records and failed == 1


def test_bulk_does_not_run_a_window_again_for_an_item_out_of_memory_alone() -> None:
    answered: list[int] = []  # the items of every call that returned

    def limited(batch: list[int]) -> list[int]:
        if max(batch) * len(batch) > 50:
            raise MemoryError("too big")
        answered.extend(batch)
        return batch

    items = [1, 2, 3, 60, 4, 5]
    results = list(
        map_batches(limited, items, cost=float, padded=True, batch_size=2, executor="serial")
    )
    assert [r for r in results if not isinstance(r, ItemFailure)] == [1, 2, 3, 4, 5]
    assert sorted(answered) == [1, 2, 3, 4, 5]  # each computed once, not again in isolation


# -- a measured fixed time per batch: tight batches of like cost ----------------------

FIXED_TOKENS = 32  # the model's fixed time per batch, in tokens' worth


class Overheaded(Timed):
    """A batch takes its padded cost plus a fixed 32 tokens' worth of model seconds."""

    def __call__(self, batch: list[int]) -> list[int]:
        self.clock.advance(FIXED_TOKENS * SECONDS_PER_TOKEN)
        return super().__call__(batch)


def test_once_the_fixed_time_is_measured_online_batches_hold_like_lengths(
    engines: list[Engine],
) -> None:
    clock = FakeClock()
    fn = Overheaded(clock)
    engine = Engine(
        fn, collate="list", max_wait=0.0, cost=float, padded=True, max_batch_cost=4096,
        max_batch_size=64, sort_window=256, clock=clock,
    )  # fmt: skip
    engines.append(engine)

    def run(lengths: list[int]) -> None:
        engine.pause()
        futures = [engine.submit(n) for n in lengths]
        engine.resume()
        assert [f.result(timeout=10) for f in futures] == [2 * n for n in lengths]

    for shorts in range(1, 9):  # light load: everything waiting fits, and goes together
        run([100] + [20] * shorts)
    assert all(sorted(b) == [20] * (len(b) - 1) + [100] for b in fn.batches)
    statistics = engine.statistics()
    assert statistics.batch_overhead == pytest.approx(FIXED_TOKENS)  # from 8 padded costs
    before = len(fn.batches)
    run(([100] + [20] * 9) * 24)  # more than a batch may hold: like lengths together
    assert all(min(b) == max(b) for b in fn.batches[before:])
    # a batch cut short by the measured time closes for its (measured) budget
    assert set(engine.statistics().close_reasons) == {"idle_worker", "budget", "count"}
    assert sum(map(len, fn.batches[before:])) == 240  # none lost, none twice


def test_once_the_fixed_time_is_measured_bulk_windows_are_cut_where_lengths_jump() -> None:
    clock = FakeClock()
    fn = Overheaded(clock)
    longs = [60 + 10 * (window % 4) for window in range(16)]
    lengths = [n for long in longs for n in [long] * 3 + [8] * 30]  # windows of 33 items
    records: list[BatchRecord] = []
    results = map_batches(
        fn, lengths, cost=float, padded=True, max_batch_cost=4096, batch_size=64,
        sort_window=33, executor="serial", clock=clock, listeners=[records.append],
    )  # fmt: skip
    assert list(results) == [2 * n for n in lengths]
    # the first 8 windows fit one batch each (33 x 90 <= 4096): short and long padded
    # together; once a batch's fixed time is measured, each is cut where lengths jump
    assert all(len(set(b)) == 2 for b in fn.batches[:8])
    assert all(len(set(b)) == 1 for b in fn.batches[8:])
    assert len(fn.batches) == 8 + 2 * 8
    assert sum(r.padded_cost for r in records[8:]) == sum(30 * 8 + 3 * n for n in longs[8:])
