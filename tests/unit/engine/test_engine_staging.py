"""Staging: while the worker runs a batch, the next full batch is taken and collated on
the event loop, so the worker calls the batch function again without delay.

Deterministic: the running batch is held on a threading.Event; the loop's dispatch
callback runs when the test yields the loop once (``asyncio.sleep(0)``).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from batchpilot import ClosedError
from batchpilot._core.collate import ListCollator
from batchpilot._engine.engine import Engine

pytestmark = [pytest.mark.timeout(10), pytest.mark.asyncio]


class ThreadNotingCollator(ListCollator):
    """The list collator, noting which thread collated each batch."""

    def __init__(self) -> None:
        self.threads: list[threading.Thread] = []

    def collate(self, items: Sequence[Any]) -> tuple[Any, Any]:
        self.threads.append(threading.current_thread())
        return super().collate(items)


class HeldDevice:
    """Doubles items; the first batch waits until ``release`` is set."""

    def __init__(self) -> None:
        self.batches: list[list[Any]] = []
        self.started = threading.Event()
        self.release = threading.Event()

    def __call__(self, batch: list[Any]) -> list[Any]:
        self.batches.append(list(batch))
        self.started.set()
        assert self.release.wait(5)
        return [x * 2 for x in batch]


@pytest.fixture
def device() -> Iterator[HeldDevice]:
    held = HeldDevice()
    yield held
    held.release.set()


async def busy_engine(
    device: HeldDevice, collator: ThreadNotingCollator
) -> tuple[Engine, list[asyncio.Future[Any]]]:
    """An engine (batches of 2, on a worker) whose first batch [1, 2] is running."""
    engine = Engine(device, placement="thread", max_batch_size=2, max_wait=0.0, collate=collator)
    first = [engine.afuture(1), engine.afuture(2)]
    assert await asyncio.to_thread(device.started.wait, 5)
    return engine, first


async def test_the_next_full_batch_is_collated_on_the_loop_while_the_worker_runs(
    device: HeldDevice,
) -> None:
    collator = ThreadNotingCollator()
    engine, first = await busy_engine(device, collator)
    second = [engine.afuture(3), engine.afuture(4)]
    await asyncio.sleep(0)  # the dispatch callback runs: the batch [3, 4] is staged
    assert collator.threads[1] is threading.current_thread()
    assert engine.queue_size == 0
    assert device.batches == [[1, 2]]
    device.release.set()
    assert await asyncio.gather(*first, *second) == [2, 4, 6, 8]
    assert device.batches == [[1, 2], [3, 4]]
    await engine.aclose(1.0)


async def test_a_partial_batch_waits_in_the_queue_for_the_worker(device: HeldDevice) -> None:
    collator = ThreadNotingCollator()
    engine, first = await busy_engine(device, collator)
    second = engine.afuture(3)
    await asyncio.sleep(0)
    assert len(collator.threads) == 1
    assert engine.queue_size == 1
    device.release.set()
    assert await asyncio.gather(*first, second) == [2, 4, 6]
    assert collator.threads[1] is not threading.current_thread()
    await engine.aclose(1.0)


async def test_close_runs_a_staged_batch_instead_of_failing_it(device: HeldDevice) -> None:
    engine, first = await busy_engine(device, ThreadNotingCollator())
    second = [engine.afuture(3), engine.afuture(4)]
    await asyncio.sleep(0)
    closing = asyncio.ensure_future(engine.aclose(5.0))
    await asyncio.sleep(0)
    device.release.set()
    await closing
    assert await asyncio.gather(*first, *second) == [2, 4, 6, 8]


async def paused_with_a_staged_batch(
    device: HeldDevice,
) -> tuple[Engine, list[asyncio.Future[Any]]]:
    """An engine paused after its first batch [1, 2] finished, with [3, 4] staged."""
    engine, first = await busy_engine(device, ThreadNotingCollator())
    second = [engine.afuture(3), engine.afuture(4)]
    await asyncio.sleep(0)
    engine.pause()
    device.release.set()
    assert await asyncio.gather(*first) == [2, 4]
    return engine, second


async def test_a_staged_batch_waits_for_resume(device: HeldDevice) -> None:
    engine, second = await paused_with_a_staged_batch(device)
    assert not any(future.done() for future in second)
    engine.resume()
    assert await asyncio.gather(*second) == [6, 8]
    await engine.aclose(1.0)


async def test_closing_while_paused_fails_a_staged_batch(device: HeldDevice) -> None:
    engine, second = await paused_with_a_staged_batch(device)
    await engine.aclose(1.0)
    for future in second:
        with pytest.raises(ClosedError):
            await future
