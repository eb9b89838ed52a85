"""Driver CPU seconds per chunk that batchpilot's Dask executor spends submitting a chunk.

A chunk of 10,000 dicts goes to a real `LocalCluster` of 2 worker processes, through
`DaskExecutor.submit` (what `map_batches(executor=client)` does per chunk), and the
driver's CPU time (all its threads: the client's event loop serializes in its own)
is measured from submit to result, median of ``--rounds``.

    python benchmarks/dask_submit_cost.py [--rows 10000] [--chunks 20] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import time


def count(items: list[dict]) -> int:
    return len(items)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--chunks", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    from dask.distributed import Client, LocalCluster

    from batchpilot.bulk.executors import DaskExecutor

    chunk = [{"id": i, "x": i * 0.5, "name": f"n{i}", "tags": {"a": i}} for i in range(args.rows)]
    with (
        LocalCluster(
            n_workers=2, processes=True, threads_per_worker=1, dashboard_address=":0"
        ) as cluster,
        Client(cluster) as client,
    ):
        executor = DaskExecutor(client)
        executor.submit(count, chunk).result()  # warm up
        per_chunk = []
        for _ in range(args.rounds):
            began = time.process_time()
            futures = [executor.submit(count, chunk) for _ in range(args.chunks)]
            assert all(f.result() == args.rows for f in futures)
            per_chunk.append((time.process_time() - began) / args.chunks)
        print(
            f"driver CPU per chunk of {args.rows} dicts: median "
            f"{statistics.median(per_chunk) * 1e3:.1f} ms "
            f"(rounds: {', '.join(f'{s * 1e3:.1f}' for s in per_chunk)})"
        )


if __name__ == "__main__":
    main()
