"""Benchmark: out-of-memory backoff (issue 21's target), with the issue's encoder and texts.

Run from the repository root::

    .venv/bin/python benchmarks/oom_backoff.py            # 1,000 texts, 5 rounds
    .venv/bin/python benchmarks/oom_backoff.py --quick    # 200 texts, 1 round

The batch function is the random-weight BERT encoder of ``tokens_vs_peers.py``
behind a memory limit the engine is not told: a batch whose padded cost (its size
times its longest text, in tokens) is above ``--limit`` (4,096) raises
``MemoryError`` before the model runs, as a GPU would. Two runs of the same policy
(sorted by length within 256 texts, padded budget), interleaved over the rounds:

* ``told``: ``max_batch_cost`` is the limit;
* ``4x``: ``max_batch_cost`` is 4 times the limit, so the engine has to find the
  limit from the errors (split the batch by cost, lower the cap, raise it again
  slowly after successes).

Every text's vector is checked against a plain loop's, and no text may fail. The
target: ``4x`` runs at >= 70 % of ``told``'s items/s.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

import batchpilot
from batchpilot.random_encoder import save_random_encoder, synthetic_texts
from batchpilot.serve.embeddings import Embedder

WINDOW = 256


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--texts", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--limit", type=int, default=4096, help="padded tokens a batch may have")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.texts, args.rounds = 200, 1
    embedder = Embedder(save_random_encoder(Path(tempfile.mkdtemp()) / "encoder"))
    embedder.setup()
    items = embedder.tokenize(synthetic_texts(args.texts, median=40, sigma=0.9, seed=0))
    expected = np.stack([embedder.predict([item])[0] for item in items])
    calls = {"oom": 0, "ok": 0}

    def limited(batch: list[Any]) -> list[Any]:
        if len(batch) * max(len(ids) for ids in batch) > args.limit:
            calls["oom"] += 1
            raise MemoryError(f"simulated: {len(batch)} texts padded past {args.limit} tokens")
        calls["ok"] += 1
        return list(embedder.predict(batch))

    def run(budget: int) -> dict[str, float]:
        calls.update(oom=0, ok=0)
        start = time.perf_counter()
        out = list(
            batchpilot.map_batches(
                limited,
                items,
                executor="serial",
                batch_size=WINDOW,
                cost=len,
                max_batch_cost=budget,
                padded=True,
                sort_window=WINDOW,
            )
        )
        seconds = time.perf_counter() - start
        failed = [value for value in out if isinstance(value, batchpilot.ItemFailure)]
        if failed or not np.allclose(np.stack(out), expected, atol=1e-4):
            raise AssertionError(f"budget {budget}: {len(failed)} failed or vectors differ")
        return {"items_per_s": len(items) / seconds, "oom": calls["oom"], "batches": calls["ok"]}

    run(args.limit)  # warm-up: torch's first batches of each shape are slow
    cells: dict[str, list[dict[str, float]]] = {"told": [], "4x": []}
    for round_ in range(args.rounds):
        for name, budget in (("told", args.limit), ("4x", 4 * args.limit)):
            cell = run(budget)
            cells[name].append(cell)
            print(
                f"round {round_ + 1} {name:<5} {cell['items_per_s']:6.1f} items/s  "
                f"{cell['oom']:.0f} out-of-memory errors, {cell['batches']:.0f} batches",
                flush=True,
            )
    told = statistics.median(c["items_per_s"] for c in cells["told"])
    found = statistics.median(c["items_per_s"] for c in cells["4x"])
    print(f"\n## {len(items)} texts, limit {args.limit} padded tokens, median of {args.rounds}\n")
    print("| run | max_batch_cost | items/s | out-of-memory errors | vs told |")
    print("|---|---:|---:|---:|---:|")
    for name, budget, rate in (("told", args.limit, told), ("4x", 4 * args.limit, found)):
        errors = statistics.median(c["oom"] for c in cells[name])
        print(f"| {name} | {budget} | {rate:.1f} | {errors:.0f} | {rate / told:.2f}x |")
    print(f"\ntarget: 4x >= 0.70x of told: {'yes' if found >= 0.7 * told else 'NO'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
