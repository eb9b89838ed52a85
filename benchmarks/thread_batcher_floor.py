#!/usr/bin/env python3
"""The ceiling of the threaded scenario: an oracle batcher for 32 blocked threads.

    python benchmarks/thread_batcher_floor.py

The peers harness's threaded scenario has T = 32 threads each calling a blocking
``f(x)`` in a closed loop. An oracle batcher knows T: its worker sleeps until all
T items are in (one wake-up), stacks them, calls the function and releases one
pre-acquired lock per caller. It has no queue bound, priorities, errors or
statistics, so no real batcher serving these threads can do better. This script
runs it and ``batchpilot.Batcher`` interleaved, in the harness's client loop
(``perf_counter`` twice, a shared counter, latency and result stores per call),
on the ``trivial`` and ``fixed_cost`` workloads.

Divide by the ``batched`` (``batched.dynamically``) rate of the same machine from
``benchmarks/online_vs_peers.py`` to see the best ratio any batcher can reach.
"""

from __future__ import annotations

import itertools
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from batchpilot import Batcher

THREADS = 32
SECONDS = 2.0
ROUNDS = 3
_device = threading.Lock()


def fixed_cost(x: np.ndarray) -> np.ndarray:
    """The harness's simulated device: 2 ms + 0.02 ms per item, one call at a time."""
    with _device:
        time.sleep(0.002 + 0.00002 * len(x))
    return x + 1.0


WORKLOADS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "trivial": lambda x: x * 2,
    "fixed_cost": fixed_cost,
}


class OracleBatcher:
    """Waits for exactly ``threads`` items (or 5 ms), runs them, releases each caller."""

    def __init__(self, fn: Callable[[np.ndarray], np.ndarray], threads: int) -> None:
        self.fn = fn
        self.threads = threads
        self.pending: list[tuple[Any, list[Any]]] = []
        self.ready = threading.Condition()
        self.stopped = False
        self.worker = threading.Thread(target=self._run, daemon=True)
        self.worker.start()

    def __call__(self, x: Any) -> Any:
        slot: list[Any] = [threading.Lock(), None]
        slot[0].acquire()
        with self.ready:
            self.pending.append((x, slot))
            if len(self.pending) >= self.threads:
                self.ready.notify()
        slot[0].acquire()
        return slot[1]

    def _run(self) -> None:
        while not self.stopped:
            with self.ready:
                self.ready.wait_for(lambda: len(self.pending) >= self.threads, 0.005)
                batch, self.pending = self.pending, []
            if batch:
                rows = self.fn(np.array([x for x, _ in batch]))
                for (_, slot), row in zip(batch, rows, strict=True):
                    slot[1] = row
                    slot[0].release()

    def close(self) -> None:
        self.stopped = True
        self.worker.join(1.0)


def closed_loop(call: Callable[[Any], Any], xs: np.ndarray, seconds: float) -> float:
    """The harness's threaded client loop; returns items per second."""
    counter = itertools.count()
    deadline = time.perf_counter() + seconds
    latencies = [0.0] * 5_000_000
    results: list[Any] = [None] * 5_000_000

    def client() -> None:
        while time.perf_counter() < deadline:
            k = next(counter)
            x = xs[k % len(xs)]
            started = time.perf_counter()
            y = call(x)
            latencies[k] = time.perf_counter() - started
            results[k] = y

    threads = [threading.Thread(target=client) for _ in range(THREADS)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return next(counter) / (time.perf_counter() - started)


def rate(kind: str, fn: Callable[[np.ndarray], np.ndarray], xs: np.ndarray) -> float:
    batcher: Any = OracleBatcher(fn, THREADS) if kind == "oracle" else Batcher(fn)
    closed_loop(batcher, xs, 0.3)  # warm-up
    items_per_s = closed_loop(batcher, xs, SECONDS)
    batcher.close()
    return items_per_s


def main() -> None:
    xs = np.random.default_rng(0).standard_normal((4096, 64)).astype(np.float32)
    print(f"T={THREADS} threads, {ROUNDS} interleaved rounds of {SECONDS:.0f} s")
    print("| workload | batcher | items/s, median | min | max |")
    print("|---|---|---:|---:|---:|")
    for name, fn in WORKLOADS.items():
        rates: dict[str, list[float]] = {"oracle": [], "batchpilot": []}
        for _ in range(ROUNDS):
            for kind, values in rates.items():
                values.append(rate(kind, fn, xs))
        for kind, values in rates.items():
            print(
                f"| {name} | {kind} | {statistics.median(values):,.0f} | "
                f"{min(values):,.0f} | {max(values):,.0f} |"
            )


if __name__ == "__main__":
    main()
