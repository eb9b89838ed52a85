"""Benchmark: overhead of the seed-002/004 layers over the bulk engine.

Run from the repository root::

    .venv/bin/python benchmarks/seed_layers.py            # 200,000 items, median of 5
    .venv/bin/python benchmarks/seed_layers.py --quick    # 20,000 items, median of 3

Trivial work (``x * 2``) so the numbers show the layers' own cost: items per
second of a plain loop, of ``map_batches`` with fixed chunks of 1000, of
``batchpilot.adaptive`` (batch function) and of ``batchpilot.chunked`` (one call
per target, with and without JSON persistence).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

from batchpilot.adaptive import AdaptiveBatchProcessor
from batchpilot.bulk import map_batches
from batchpilot.chunked import BatchProcessor, ChunkConfig


def double(x: int) -> int:
    return x * 2


def double_batch(xs: list[int]) -> list[int]:
    return [x * 2 for x in xs]


def _chunked(count: int, mode: str, persist: bool) -> Callable[[], Any]:
    storage = tempfile.mkdtemp(prefix="batchpilot-bench-")
    config = ChunkConfig(chunk_size=1000, enable_result_persistence=persist, storage_dir=storage)
    return lambda: asyncio.run(BatchProcessor(config).process_targets(range(count), double, mode))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer items and repeats")
    args = parser.parse_args()
    count, repeats = (20_000, 3) if args.quick else (200_000, 5)
    runs: list[tuple[str, Callable[[], Any]]] = [
        ("plain loop [double(x) for x in items]", lambda: [double(x) for x in range(count)]),
        (
            "map_batches(double_batch, batch_size=1000, executor='serial')",
            lambda: list(
                map_batches(double_batch, range(count), batch_size=1000, executor="serial")
            ),
        ),
        (
            "AdaptiveBatchProcessor.process_items (batches of 1000)",
            lambda: AdaptiveBatchProcessor(
                double_batch, initial_batch_size=1000, max_batch_size=1000
            ).process_items(range(count)),
        ),
        (
            "AdaptiveBatchProcessor.process_items_parallel (2 workers)",
            lambda: AdaptiveBatchProcessor(
                double_batch, initial_batch_size=1000, max_batch_size=1000, max_workers=2
            ).process_items_parallel(range(count)),
        ),
        ("chunked SEQUENTIAL, no persistence", _chunked(count, "sequential", False)),
        ("chunked PARALLEL, no persistence", _chunked(count, "parallel", False)),
        ("chunked SEQUENTIAL, JSON persistence", _chunked(count, "sequential", True)),
    ]
    print(f"{count:,} items, median of {repeats}")
    print(f"| {'run':62s} | items/s |")
    print(f"|{'-' * 64}|---------|")
    for label, run in runs:
        times = []
        for _ in range(repeats):
            began = time.perf_counter()
            run()
            times.append(time.perf_counter() - began)
        rate = count / statistics.median(times)
        print(f"| {label:62s} | {rate / 1e6:5.2f} M |")


if __name__ == "__main__":
    main()
