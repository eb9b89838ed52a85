"""Benchmark: the seed-001 `BatchProcessor` and what its layer costs over the bare engine.

Run from the repository root::

    .venv/bin/python benchmarks/seed001_processor.py            # median of 5
    .venv/bin/python benchmarks/seed001_processor.py --quick    # median of 3, fewer items

Three loads with a trivial numpy function (``batch * 2`` on arrays of 10 floats),
seed defaults otherwise (``batch_timeout=0.1``, ``max_workers=4``):

* one caller, one item at a time: round-trip p50 (the seed's ``batch_timeout`` is
  an upper bound on waiting, so this must be far below 100 ms);
* 32 threads calling ``enqueue_predict(x).result()`` in a loop: items per second;
* a burst: 10,000 items submitted, then all results collected (the seed's
  ``benchmark_latency`` shape): items per second.

Each is run on `BatchProcessor` and on the bare `Engine` with the same settings,
so the difference is the seed layer (statistics, health, call tracking).
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import numpy as np

from batchpilot._core.retry import RetryPolicy
from batchpilot._engine.engine import Engine
from batchpilot.online import BatchProcessor, BatchProcessorConfig

Submit = Callable[[Any], Future[Any]]


def double(batch: np.ndarray) -> np.ndarray:
    return batch * 2


def processor_submit() -> tuple[Submit, Callable[[], None]]:
    processor: BatchProcessor[Any, Any] = BatchProcessor(BatchProcessorConfig())
    processor.start(double)
    return processor.enqueue_predict, processor.stop


def engine_submit() -> tuple[Submit, Callable[[], None]]:
    config = BatchProcessorConfig()
    engine = Engine(
        double,
        max_batch_size=config.max_batch_size,
        max_wait=config.batch_timeout,
        max_concurrent_batches=config.max_workers,
        max_queue_size=config.max_queue_size,
        retry=RetryPolicy(config.max_retries, config.retry_delay),
        item_timeout=config.item_timeout,
    )
    return engine.submit, engine.close


def one_caller(submit: Submit, count: int) -> float:
    """p50 round trip in milliseconds."""
    item = np.random.rand(10)
    times = []
    for _ in range(count):
        start = time.perf_counter()
        submit(item).result()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def threads(submit: Submit, count: int, clients: int = 32) -> float:
    """Items per second with ``clients`` closed-loop threads."""
    item = np.random.rand(10)
    per_client = count // clients
    barrier = threading.Barrier(clients + 1)

    def client() -> None:
        barrier.wait()
        for _ in range(per_client):
            submit(item).result()

    workers = [threading.Thread(target=client) for _ in range(clients)]
    for worker in workers:
        worker.start()
    barrier.wait()
    start = time.perf_counter()
    for worker in workers:
        worker.join()
    return per_client * clients / (time.perf_counter() - start)


def burst(submit: Submit, count: int) -> float:
    """Items per second for ``count`` items submitted at once, then collected."""
    item = np.random.rand(10)
    start = time.perf_counter()
    futures = [submit(item) for _ in range(count)]
    for future in futures:
        future.result()
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer items and repeats")
    args = parser.parse_args()
    repeats, scale = (3, 1) if args.quick else (5, 4)
    loads: list[tuple[str, Callable[[Submit], float], str]] = [
        ("1 caller, p50 round trip", lambda s: one_caller(s, 500 * scale), "ms"),
        ("32 threads, closed loop", lambda s: threads(s, 5_000 * scale), "items/s"),
        ("burst of 10,000 (seed shape)", lambda s: burst(s, 10_000), "items/s"),
    ]
    print(f"{'load':32} {'BatchProcessor':>16} {'bare Engine':>16}  unit (median of {repeats})")
    for name, run, unit in loads:
        medians = []
        for make in (processor_submit, engine_submit):
            results = []
            for _ in range(repeats):
                submit, close = make()
                try:
                    results.append(run(submit))
                finally:
                    close()
            medians.append(statistics.median(results))
        print(f"{name:32} {medians[0]:>16.3f} {medians[1]:>16.3f}  {unit}")


if __name__ == "__main__":
    main()
