#!/usr/bin/env python3
"""The floor of the async p50 at C clients: what a batcher with no features at all gets.

    python benchmarks/async_latency_floor.py            # matmul, C=32 (issue 4's p50 cell)
    python benchmarks/async_latency_floor.py --workload trivial --clients 32

In a closed loop every client waits for one round: its batch's function call plus
the Python work of every client in that round (resubmit, await, wake up). So p50 is
about C x (function time per row + per-item overhead), whatever the batcher. This
script measures, in one run, on the peers harness's workloads and client loop:

* ``fn(C rows)``: the batch function alone on C stacked rows (median of 200 calls);
* ``minimal``: an in-loop batcher with nothing but a list, one ``call_soon`` per
  loop iteration and ``np.array`` (no queue bound, no errors, no stats): the
  lowest p50 any asyncio batcher can reach here;
* ``batchpilot``: ``batchpilot.Batcher`` with the harness settings.

If ``minimal`` is above a p50 target, no batcher can meet it on this machine.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as the harness does, before numpy

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from batchpilot import Batcher

ROUNDS = 5


def workloads() -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    """The harness's ``trivial`` and ``matmul`` workloads (same shapes, same seed)."""
    rng = np.random.default_rng(12345)
    w1 = (rng.standard_normal((64, 1024)) / np.sqrt(64)).astype(np.float32)
    w2 = (rng.standard_normal((1024, 64)) / np.sqrt(1024)).astype(np.float32)
    return {
        "trivial": lambda x: x * 2,
        "matmul": lambda x: np.tanh(x @ w1) @ w2,
    }


class MinimalBatcher:
    """The least an asyncio batcher can do: collect one loop iteration, call, resolve."""

    def __init__(self, fn: Callable[[np.ndarray], np.ndarray], max_batch_size: int) -> None:
        self.fn = fn
        self.max_batch_size = max_batch_size
        self.items: list[Any] = []
        self.futures: list[asyncio.Future[Any]] = []
        self.pending = False

    def __call__(self, item: Any) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self.items.append(item)
        self.futures.append(future)
        if not self.pending:
            self.pending = True
            loop.call_soon(self.run)
        return future

    def run(self) -> None:
        self.pending = False
        items, futures = self.items, self.futures
        self.items, self.futures = [], []
        for start in range(0, len(items), self.max_batch_size):
            stop = start + self.max_batch_size
            rows = self.fn(np.array(items[start:stop]))
            for future, row in zip(futures[start:stop], rows, strict=True):
                future.set_result(row)


async def closed_loop(
    submit: Callable[[Any], Any], xs: np.ndarray, clients: int, n: int
) -> list[float]:
    """``clients`` tasks, each awaiting ``submit(x)`` for the next item; latencies in s."""
    latencies: list[float] = []
    next_index = 0

    async def client() -> None:
        nonlocal next_index
        while next_index < n:
            x = xs[next_index % len(xs)]
            next_index += 1
            started = time.perf_counter()
            await submit(x)
            latencies.append(time.perf_counter() - started)

    await asyncio.gather(*(client() for _ in range(clients)))
    return latencies


async def p50_of(
    kind: str, fn: Callable[[np.ndarray], np.ndarray], xs: np.ndarray, clients: int, n: int
) -> float:
    if kind == "minimal":
        submit: Any = MinimalBatcher(fn, 64)
        await closed_loop(submit, xs, clients, n // 5)  # warm-up
        return statistics.median(await closed_loop(submit, xs, clients, n))
    batcher = Batcher(fn, max_batch_size=64, max_wait=0.005)
    await closed_loop(batcher, xs, clients, n // 5)
    p50 = statistics.median(await closed_loop(batcher, xs, clients, n))
    await batcher.aclose(1.0)
    return p50


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", choices=["trivial", "matmul"], default="matmul")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--items", type=int, default=60_000)
    args = parser.parse_args()
    fn = workloads()[args.workload]
    xs = np.random.default_rng(1).standard_normal((4096, 64)).astype(np.float32)
    batch = xs[: args.clients]
    calls = []
    for _ in range(200):
        started = time.perf_counter()
        fn(batch)
        calls.append(time.perf_counter() - started)
    fn_ms = statistics.median(calls) * 1e3
    rows: dict[str, list[float]] = {"minimal": [], "batchpilot": []}
    for _ in range(ROUNDS):  # interleaved, so both see the same machine
        for kind, p50s in rows.items():
            p50s.append(asyncio.run(p50_of(kind, fn, xs, args.clients, args.items)) * 1e3)
    print(f"{args.workload}, C={args.clients}, {ROUNDS} interleaved rounds of {args.items} items")
    print(
        f"fn({args.clients} rows) alone: median {fn_ms:.3f} ms "
        f"({fn_ms / args.clients * 1e3:.1f} us per row)"
    )
    print("| batcher | p50 ms, median of rounds | min | max |")
    print("|---|---:|---:|---:|")
    for kind, p50s in rows.items():
        print(f"| {kind} | {statistics.median(p50s):.3f} | {min(p50s):.3f} | {max(p50s):.3f} |")


if __name__ == "__main__":
    main()
