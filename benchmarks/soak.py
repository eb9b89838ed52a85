"""Soak: the online engine, the bulk engine and the flush buffer, for minutes, with faults.

Run from the repository root::

    .venv/bin/python benchmarks/soak.py --quick          # about 30 s in all
    .venv/bin/python benchmarks/soak.py --minutes 3      # the time split over the engines
    .venv/bin/python benchmarks/soak.py --items 10000000 # each engine runs 10M items

Each engine runs in turn for its share of ``--minutes`` (or until it has handled
``--items`` items) against a batch function or sink that injects faults at random:
failing items (a permanent error for any batch holding one, so the engine must
isolate them; the error carries the batch it failed on, as a database error
carries its statement's parameters), failing batches (a transient error on a
random call, retried) and slow batches (a short sleep on a random call).

* online: `batchpilot.Batcher` (2 concurrent batches, one retry), items submitted
  from a thread in rounds; each future must complete exactly once, with the item's
  result or, for a failing item, its own error.
* bulk: `batchpilot.map_batches` over one lazy stream for the whole run (threads,
  one retry, ordered): the k-th output must be item k's result or `ItemFailure`.
  Results are consumed as the `BulkRun` iterator streams them and none is kept,
  so the RSS is the engine's own (a ``list(run)`` would hold 10M results).
* buffer: `batchpilot.buffer.BatchStateManager` with a dead letter handler, fed in
  rounds and flushed; each entry must be delivered or dead-lettered exactly once.

Each engine runs in a fresh Python process, so its RSS is its own. The table:
items handled, lost (no outcome, or the wrong one), duplicated (an outcome or a
delivery twice), items that failed (injected), and the process RSS (psutil, after
``gc.collect()``) at the start, after a warm-up and at the end, with the growth
from start and from the warm-up to the end, and that growth per million items.
The warm-up is the first round (20,000 items: threads and the soak's own
per-round bookkeeping are then in place) for online and buffer, and the first
1,000,000 items for bulk, whose automatic chunk size grows from 1 to tens of
thousands of items first: the chunks in flight, each with its items and
results, are its working set. The target is 0 lost, 0 duplicated and under
20 MB RSS growth over 10M items.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import functools
import gc
import json
import logging
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass

import psutil

from batchpilot import Batcher, ItemFailure, RetryPolicy, map_batches
from batchpilot.buffer import BatchProcessingConfig, BatchStateManager, BufferedEntry

FAIL_ITEM = 0.0005  # share of items that fail permanently
FAIL_BATCH = 0.002  # share of batch calls that fail transiently
SLOW_BATCH = 0.0005  # share of batch calls that sleep SLOW_SECONDS
SLOW_SECONDS = 0.002
ROUND = 20_000  # items per round (online, buffer)
BULK_WARM_UP = 1_000_000  # bulk items before the warm RSS (chunk sizes settled)
WAIT = 120.0  # seconds a round may take before its missing outcomes count as lost


class IntegrityError(Exception):
    """A permanent error by name (the buffer does not retry it)."""


class Transient(ConnectionError):
    """An injected failure of a whole batch call."""


@dataclass
class Tally:
    engine: str
    items: int = 0
    lost: int = 0
    duplicated: int = 0
    failed: int = 0
    rss_start: float = 0.0
    rss_warm: float = 0.0
    warm_items: int = 0  # items handled when rss_warm was taken
    rss_end: float = 0.0
    seconds: float = 0.0

    def warm(self, items: int) -> None:
        """Take the warm RSS, once, after ``items`` items."""
        if not self.warm_items:
            self.rss_warm, self.warm_items = rss_mb(), items


class Faults:
    """Decides which items fail and which calls fail or sleep (thread-safe, seeded)."""

    def __init__(self, seed: int) -> None:
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._bad_seed = seed

    def bad(self, number: int) -> bool:
        """Whether item ``number`` fails, the same answer every time it is asked."""
        return (number * 2654435761 + self._bad_seed) % 1_000_003 < FAIL_ITEM * 1_000_003

    def on_call(self) -> None:
        """Maybe sleep, maybe raise `Transient` (a whole batch fails)."""
        with self._lock:
            roll = self._random.random()
        if roll < SLOW_BATCH:
            time.sleep(SLOW_SECONDS)
        elif roll < SLOW_BATCH + FAIL_BATCH:
            raise Transient("injected batch failure")


def rss_mb() -> float:
    gc.collect()
    return psutil.Process().memory_info().rss / 2**20


def result_of(number: int) -> int:
    return 2 * number + 1


def make_batch_fn(faults: Faults, error: type[Exception]) -> Callable[[list[int]], list[int]]:
    def fn(numbers: list[int]) -> list[int]:
        faults.on_call()
        if any(faults.bad(n) for n in numbers):
            raise error("injected item failure", numbers)
        return [result_of(n) for n in numbers]

    return fn


# -- online ----------------------------------------------------------------------------


def _count(completions: bytearray, slot: int, _future: cf.Future[int]) -> None:
    completions[slot] += 1


def soak_online(until: float, limit: int, faults: Faults) -> Tally:
    tally = Tally("online (Batcher)", rss_start=rss_mb())
    batcher: Batcher[int, int] = Batcher(
        make_batch_fn(faults, ValueError),
        collate="list",
        max_batch_size=64,
        max_concurrent_batches=2,
        retry=RetryPolicy(1, 0.0),
        name="soak",
    )
    base = 0
    while time.monotonic() < until and tally.items < limit:
        size = min(ROUND, limit - tally.items)
        completions = bytearray(size)
        futures = []
        for slot in range(size):
            future = batcher.submit(base + slot)
            future.add_done_callback(functools.partial(_count, completions, slot))
            futures.append(future)
        cf.wait(futures, timeout=WAIT)
        for slot, future in enumerate(futures):
            number = base + slot
            if not future.done():
                tally.lost += 1
                continue
            error = future.exception()
            if error is None:
                tally.lost += future.result() != result_of(number)
            else:
                tally.failed += 1
                tally.lost += not (faults.bad(number) or isinstance(error, Transient))
        tally.duplicated += sum(count > 1 for count in completions)
        tally.lost += sum(count == 0 for count in completions)
        tally.items += size
        base += size
        tally.warm(tally.items)
    batcher.close()
    tally.rss_end = rss_mb()
    return tally


# -- bulk ------------------------------------------------------------------------------


def numbers_until(until: float, limit: int) -> Iterator[int]:
    for number in range(limit):
        if not number % 4096 and time.monotonic() >= until:
            return
        yield number


def soak_bulk(until: float, limit: int, faults: Faults) -> Tally:
    tally = Tally("bulk (map_batches)", rss_start=rss_mb())
    produced = 0

    def counted() -> Iterator[int]:
        nonlocal produced
        for number in numbers_until(until, limit):
            produced += 1
            yield number

    expected = 0
    run = map_batches(
        make_batch_fn(faults, ValueError), counted(), retry=RetryPolicy(1, 0.0), name="soak"
    )
    for output in run:
        if isinstance(output, ItemFailure):
            number = output.index
            tally.failed += 1
            if not (faults.bad(number) or isinstance(output.error, Transient)):
                tally.lost += 1
        else:
            number = (output - 1) // 2
        if expected == BULK_WARM_UP:
            tally.warm(expected)
        if number < expected:
            tally.duplicated += 1
        else:
            tally.lost += number - expected
            expected = number + 1
    tally.lost += produced - expected
    tally.items = produced
    tally.rss_end = rss_mb()
    return tally


# -- buffer ----------------------------------------------------------------------------


class Sink:
    """A flush callback that counts deliveries per entry of the current round."""

    def __init__(self, faults: Faults) -> None:
        self.faults = faults
        self.base = 0
        self.delivered = bytearray(ROUND)
        self.dead = bytearray(ROUND)
        self.strangers = 0

    def start_round(self, base: int) -> None:
        self.base = base
        self.delivered = bytearray(ROUND)
        self.dead = bytearray(ROUND)

    def __call__(self, entries: list[BufferedEntry]) -> None:
        self.faults.on_call()
        if any(self.faults.bad(item.entry) for item in entries):
            raise IntegrityError("injected item failure")
        self._count(self.delivered, entries)

    def dead_letter(self, entries: list[BufferedEntry], error: BaseException) -> None:
        self._count(self.dead, entries)

    def _count(self, counts: bytearray, entries: list[BufferedEntry]) -> None:
        for item in entries:
            slot = item.entry - self.base
            if 0 <= slot < ROUND:
                counts[slot] += 1
            else:
                self.strangers += 1


def soak_buffer(until: float, limit: int, faults: Faults) -> Tally:
    tally = Tally("buffer (BatchStateManager)", rss_start=rss_mb())
    sink = Sink(faults)
    manager = BatchStateManager(
        flush_config=BatchProcessingConfig(max_retries=3, retry_delay=0.0005),
        flush_callback=sink,
        on_dead_letter=sink.dead_letter,
        name="soak",
    )
    base = 0
    while time.monotonic() < until and tally.items < limit:
        size = min(ROUND, limit - tally.items)
        sink.start_round(base)
        for number in range(base, base + size):
            manager.queue_entry(number, "soak", str(number))
        drained = manager.flush(timeout=WAIT) or manager.wait_idle(timeout=WAIT)
        if not drained:
            print(f"buffer: round at {base} did not drain in {WAIT} s", file=sys.stderr)
        for slot in range(size):
            outcomes = sink.delivered[slot] + sink.dead[slot]
            tally.lost += outcomes == 0
            tally.duplicated += outcomes > 1
            tally.failed += sink.dead[slot] > 0
        tally.items += size
        base += size
        tally.warm(tally.items)
    left = manager.close()
    tally.lost += len(left)
    tally.duplicated += sink.strangers
    tally.rss_end = rss_mb()
    return tally


# -- main ------------------------------------------------------------------------------

ENGINES: dict[str, Callable[[float, int, Faults], Tally]] = {
    "online": soak_online,
    "bulk": soak_bulk,
    "buffer": soak_buffer,
}


def run_engine(name: str, seconds: float, limit: int, seed: int) -> Tally:
    """Soak one engine here, for ``seconds`` or ``limit`` items."""
    logging.getLogger("batchpilot").setLevel(logging.CRITICAL)  # injected failures log
    started = time.monotonic()
    tally = ENGINES[name](started + seconds, limit, Faults(seed))
    tally.seconds = time.monotonic() - started
    return tally


def run_in_child(name: str, seconds: float, limit: int, seed: int) -> Tally:
    """Soak one engine in a fresh interpreter (its RSS is then its own)."""
    command = [sys.executable, __file__, "--engine", name, "--seconds", repr(seconds)]
    command += ["--items", str(limit), "--seed", str(seed)]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return Tally(**json.loads(output.splitlines()[-1]))


def print_table(tallies: list[Tally]) -> None:
    print(
        "| engine | items | lost | duplicated | failed (injected) | seconds "
        "| RSS start (MB) | warm-up (items) | RSS warm | RSS end | growth from start "
        "| growth from warm | per 1M items after warm-up |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for t in tallies:
        row = f"| {t.engine} | {t.items:,} | {t.lost} | {t.duplicated} | {t.failed:,} "
        row += f"| {t.seconds:.0f} | {t.rss_start:.1f} "
        if t.warm_items and t.items > t.warm_items:
            growth = t.rss_end - t.rss_warm
            slope = growth / (t.items - t.warm_items) * 1e6
            row += f"| {t.warm_items:,} | {t.rss_warm:.1f} | {t.rss_end:.1f} "
            row += f"| {t.rss_end - t.rss_start:+.1f} | {growth:+.1f} | {slope:+.2f} |"
        else:  # too short a run to get past the warm-up
            row += f"| - | - | {t.rss_end:.1f} | {t.rss_end - t.rss_start:+.1f} | - | - |"
        print(row)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--minutes", type=float, default=None, help="total run time")
    parser.add_argument("--items", type=int, default=None, help="items per engine")
    parser.add_argument("--quick", action="store_true", help="about 30 s in all")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--engine", choices=list(ENGINES), help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.engine is not None:  # a child process: one engine, one JSON line
        tally = run_engine(args.engine, args.seconds, args.items, args.seed)
        print(json.dumps(asdict(tally)))
        return 0
    if args.quick:
        minutes = 0.5
    elif args.minutes is not None:
        minutes = args.minutes
    elif args.items is not None:
        minutes = float("inf")
    else:
        parser.error("give --minutes, --items or --quick")
    limit = args.items if args.items is not None else sys.maxsize
    share = minutes * 60 / len(ENGINES)
    tallies = [
        run_in_child(name, share, limit, args.seed + index) for index, name in enumerate(ENGINES)
    ]
    length = f"{minutes:g} min" if minutes != float("inf") else f"{limit:,} items per engine"
    print(
        f"soak: {length}, faults: {FAIL_ITEM:.2%} items, {FAIL_BATCH:.1%} calls fail, "
        f"{SLOW_BATCH:.2%} calls sleep {SLOW_SECONDS * 1000:g} ms"
    )
    print_table(tallies)
    return 0 if all(t.lost == 0 and t.duplicated == 0 for t in tallies) else 1


if __name__ == "__main__":
    sys.exit(main())
