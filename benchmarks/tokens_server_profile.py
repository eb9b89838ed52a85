"""Where a token-batching server's time goes at 64 closed-loop clients.

Run from the repository root (after ``tokens_vs_peers.py`` has made nothing: this
builds its own copy of the issue's random-weight encoder)::

    .venv/bin/python benchmarks/tokens_server_profile.py
    .venv/bin/python benchmarks/tokens_server_profile.py --max-wait 0.02   # any serve flag

It starts ``batchpilot serve --embeddings DIR --max-batch-tokens 4096`` (plus the
flags given) on 127.0.0.1, warms it with closed-loop windows, then measures one
window of 64 closed-loop clients (the same client as ``tokens_vs_peers.py``) and
prints req/s and p99, the server's CPU seconds (and its busiest threads') against
the client's, and the batcher's statistics over that window: batches by close
reason, mean size, padded fraction and the measured fixed time per batch.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
import tokens_vs_peers as bench

from batchpilot.random_encoder import save_random_encoder, synthetic_texts


def cpu_seconds(process: psutil.Process) -> tuple[float, dict[int, float]]:
    """The process's CPU seconds, and each of its threads' by thread id."""
    times = process.cpu_times()
    threads = {t.id: t.user_time + t.system_time for t in process.threads()}
    return times.user + times.system, threads


def batcher(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url + "/stats", timeout=10) as answer:
        return dict(json.load(answer)["batcher"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=12.0, help="the measured window")
    args, serve_flags = parser.parse_known_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="tokens-profile-"))
    model_dir = save_random_encoder(workdir / bench.MODEL_NAME)
    texts = synthetic_texts(1000, median=40, sigma=0.9, seed=21)
    order = np.random.default_rng(21).permutation(len(texts))
    payloads = [bench.body(texts[i]) for i in order]
    port = bench.free_port()
    command = [
        *bench.server_command("bp-tokens", model_dir, port, workdir),
        *serve_flags,
    ]
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)
    url = f"http://{bench.HOST}:{port}"
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(url + "/ready", timeout=1).close()
                break
            except OSError:
                time.sleep(0.2)
        target = url + "/v1/embeddings"
        for _ in range(4):
            asyncio.run(bench.closed_loop(target, payloads, bench.CLOSED_CLIENTS, 3.0))
        process, client = psutil.Process(server.pid), psutil.Process()
        before, client_before, stats_before = (
            cpu_seconds(process),
            cpu_seconds(client),
            batcher(url),
        )
        latencies, _, rps = asyncio.run(
            bench.closed_loop(target, payloads, bench.CLOSED_CLIENTS, args.seconds)
        )
        after, client_after, stats = cpu_seconds(process), cpu_seconds(client), batcher(url)
    finally:
        server.terminate()
        server.wait()
    batches = stats["batches"] - stats_before["batches"]
    items = stats["items"] - stats_before["items"]
    cost = stats["cost"] - stats_before["cost"]
    padded = stats["padded_cost"] - stats_before["padded_cost"]
    reasons = {
        reason: count - stats_before["close_reasons"].get(reason, 0)
        for reason, count in stats["close_reasons"].items()
    }
    busiest = sorted((t - before[1].get(i, 0.0) for i, t in after[1].items()), reverse=True)
    threads = ", ".join(f"{t:.1f}" for t in busiest[:3])
    print(f"{rps:.1f} req/s, p99 {np.percentile(latencies, 99) * 1e3:.0f} ms over {args.seconds} s")
    print(
        f"CPU s: server {after[0] - before[0]:.1f} (busiest threads {threads}), "
        f"client {client_after[0] - client_before[0]:.1f}"
    )
    print(
        f"batches {batches}, mean {items / max(batches, 1):.1f} texts, padded "
        f"{1 - cost / padded if padded else 0:.0%}, close reasons {reasons}, "
        f"fixed time per batch {stats.get('batch_overhead')} tokens"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
