"""Why each online batch closed, and what it cost (issue 21 item 5).

Deterministic: items are queued while the engine is paused (or while its only slot is
held), so what waits when a slot frees is known; listeners collect the batch records.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from typing import Any

import pytest

from batchpilot._core.cost import CloseReason
from batchpilot._core.events import BatchRecord
from batchpilot._engine.engine import Engine
from batchpilot._engine.state import Lifecycle

from .parts import future_request, new_slots, new_state

pytestmark = pytest.mark.timeout(10)


def doubled(batch: list[Any]) -> list[Any]:
    return [2 * x for x in batch]


def make(engines: list[Engine], fn: Any = doubled, **options: Any) -> tuple[Engine, list[Any]]:
    records: list[BatchRecord] = []
    options = {"collate": "list", "max_wait": 0.0, "listeners": [records.append], **options}
    engine = Engine(fn, **options)
    engines.append(engine)
    return engine, records


def queued(engine: Engine, items: list[Any]) -> list[Any]:
    engine.pause()
    futures = [engine.submit(item) for item in items]
    engine.resume()
    return [future.result(timeout=5) for future in futures]


def reasons(records: list[BatchRecord]) -> list[tuple[int, str]]:
    return [(record.size, record.close_reason) for record in records]


def test_a_batch_of_exactly_max_batch_size_closes_for_count(engines: list[Engine]) -> None:
    engine, records = make(engines, max_batch_size=4)
    queued(engine, [1, 2, 3, 4])
    assert reasons(records) == [(4, "count")]
    # Without a cost function a batch costs its item count, padded or not.
    assert (records[0].cost, records[0].padded_cost, records[0].oom_splits) == (4, 4, 0)
    statistics = engine.statistics()
    assert statistics.close_reasons == {"count": 1}
    assert (statistics.cost, statistics.padded_cost, statistics.padded_fraction) == (4, 4, 0)
    assert statistics.cost_cap is None and statistics.oom_splits == 0


def test_more_waiting_than_the_budget_allows_closes_for_budget(engines: list[Engine]) -> None:
    engine, records = make(engines, cost=float, max_batch_cost=10, max_batch_size=8)
    queued(engine, [4, 4, 4])
    assert reasons(records) == [(2, "budget"), (1, "idle_worker")]
    assert [(r.cost, r.padded_cost) for r in records] == [(8, 8), (4, 4)]
    assert engine.statistics().close_reasons == {"budget": 1, "idle_worker": 1}


def test_a_summed_batch_size_fn_budget_closes_for_budget(engines: list[Engine]) -> None:
    engine, records = make(engines, batch_size_fn=float, max_batch_size=10)
    queued(engine, [6, 6])
    assert reasons(records) == [(1, "budget"), (1, "idle_worker")]


def test_one_item_on_an_idle_engine_closes_for_idle_worker(engines: list[Engine]) -> None:
    engine, records = make(engines, max_batch_size=8, max_wait=60.0)
    assert engine.call(7) == 14
    assert reasons(records) == [(1, "idle_worker")]


def test_an_asyncio_callers_inbox_batch_is_counted_by_reason(engines: list[Engine]) -> None:
    engine, _ = make(engines, max_batch_size=8, listeners=[])  # no listener: inbox path

    async def main() -> Any:
        return await engine.afuture(5)

    assert asyncio.run(main()) == 10
    assert engine.statistics().close_reasons == {"idle_worker": 1}


def test_padded_and_real_cost_come_from_the_items_costs(engines: list[Engine]) -> None:
    engine, records = make(engines, cost=float, max_batch_cost=100, padded=True, sort_window=8)
    queued(engine, [2, 8])
    assert reasons(records) == [(2, "idle_worker")]
    assert (records[0].cost, records[0].padded_cost) == (10, 16)
    statistics = engine.statistics()
    assert statistics.padded_fraction == pytest.approx(1 - 10 / 16)
    assert statistics.cost_cap == 100


def test_items_queued_at_close_go_out_in_batches_closed_for_shutdown(
    engines: list[Engine],
) -> None:
    started, release = threading.Event(), threading.Event()

    def held(batch: list[Any]) -> list[Any]:
        started.set()
        release.wait(5)
        return doubled(batch)

    engine, records = make(engines, held, max_batch_size=8)
    first = engine.submit(1)
    assert started.wait(5)
    rest = [engine.submit(x) for x in (2, 3)]  # wait: the only slot is busy
    closer = threading.Thread(target=engine.close, args=(5.0,))
    closer.start()
    deadline = time.monotonic() + 5  # a hang guard: close() begins at once
    while engine._state.lifecycle is Lifecycle.OPEN and time.monotonic() < deadline:
        time.sleep(0.001)
    release.set()
    closer.join(5)
    assert [first.result(0), *(f.result(0) for f in rest)] == [2, 4, 6]
    assert reasons(records) == [(1, "idle_worker"), (2, "shutdown")]


def test_an_out_of_memory_split_is_counted_in_the_record_and_statistics(
    engines: list[Engine],
) -> None:
    def limited(batch: list[int]) -> list[int]:
        if max(batch) * len(batch) > 20:
            raise MemoryError("too many padded tokens")
        return doubled(batch)

    engine, records = make(
        engines, limited, cost=float, max_batch_cost=100, padded=True, sort_window=8
    )
    assert queued(engine, [10, 10, 10, 10]) == [20] * 4
    # 40 padded tokens fail; the halves of 20 fit: one split.
    assert [(r.size, r.close_reason, r.oom_splits) for r in records] == [(4, "idle_worker", 1)]
    statistics = engine.statistics()
    assert statistics.oom_splits == 1
    assert statistics.cost_cap is not None and statistics.cost_cap <= 20  # halved below 40


# -- the parts: a claim says why its batch closed -----------------------------------------


def test_a_claim_after_a_deliberate_wait_closes_for_max_wait_unless_it_filled() -> None:
    state = new_state()
    slots = new_slots(state, size=2)
    state.queue.put(future_request("a"), 0)
    assert slots.acquire()
    batch = slots.claim(waited=True)
    reason = slots.record(size=1, duration=0.1, failed=0, ok=True, batch_id=id(batch))
    assert reason is CloseReason.MAX_WAIT

    for item in "bc":
        state.queue.put(future_request(item), 0)
    assert slots.acquire()
    batch = slots.claim(waited=True)
    reason = slots.record(size=2, duration=0.1, failed=0, ok=True, batch_id=id(batch))
    assert reason is CloseReason.COUNT
    assert state.tally.close_reasons == {"max_wait": 1, "count": 1}


def test_a_claim_while_closing_closes_for_shutdown() -> None:
    state = new_state()
    slots = new_slots(state, size=4)
    state.queue.put(future_request("a"), 0)
    assert slots.acquire()
    state.lifecycle = Lifecycle.CLOSING
    batch = slots.claim(waited=True)
    reason = slots.record(size=1, duration=0.1, failed=0, ok=True, batch_id=id(batch))
    assert reason is CloseReason.SHUTDOWN
    assert math.isclose(state.tally.cost, 1.0) and state.tally.padded_cost == 1.0
