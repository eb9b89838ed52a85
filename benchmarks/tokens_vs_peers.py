"""Batches sized by token cost: batchpilot against count-based batching and peers (issue 21).

The model is a random-weight BERT encoder (hidden 256, 4 layers, 4 heads,
intermediate 1024, vocab 8000) with a locally trained WordPiece tokenizer, saved
by `batchpilot.random_encoder.save_random_encoder` into a temporary folder (never
from a hub). The texts come from ``synthetic_texts``: token counts lognormal,
median 40, sigma 0.9, clipped to 4-512, from a fixed seed.

**Offline** (the whole set available, in this process, ``Embedder`` running the
model): items/s and the padded fraction of each policy:

* ``fifo32``: first in, first out, 32 per batch, padded to the longest;
* ``one``: one item per call, no batching;
* ``fifo-budget``: first in, first out, padded cost (longest x size) <= 4096;
* ``sorted-budget``: sorted by length within 256 waiting items, padded cost <= 4096.

Each policy runs through ``batchpilot.map_batches`` (engine ``map_batches``) and
through a plain loop over the same policy (engine ``reference``: what the policy
alone gives, whatever map_batches does). The batch function records each batch's
real and padded token counts.

**Online** (each server its own process on 127.0.0.1, ``POST /v1/embeddings`` in
the OpenAI shape, one text per request, from an asyncio client):

* ``bp-tokens``: ``batchpilot serve --embeddings DIR --max-batch-tokens 4096``;
* ``bp-count``: the same counting items: ``--max-batch-tokens 0 --max-batch-size 32
  --sort-window 0``;
* ``rayserve``: Ray Serve, ``@serve.batch(batch_size_fn=padded cost,
  max_batch_size=4096, batch_wait_timeout_s=0.005)``;
* ``litserve``: LitServe counting items, ``max_batch_size=32, batch_timeout=0.005``;
* ``infinity``: ``infinity_emb v2 --model-id DIR --device cpu --engine torch``
  (its defaults otherwise: batch size 32, sorted by length).

Each server is warmed up first, by closed-loop windows until two in a row agree
within 10 % (torch's first batches are slow: a capacity measured cold was half the
warm one). Then the count-based capacity: ``bp-count`` at 64 closed-loop clients. Then, per
round: open-loop Poisson arrivals (fixed seed) at 35 %, 70 % and 120 % of that
capacity (achieved rate, p50, p99 from each request's scheduled arrival; requests
not answered by the end of a bounded drain count as missing), and a closed loop of
64 clients (throughput, p99). All contenders are started first and kept running;
while one is measured the others are stopped with SIGSTOP. Rounds interleave the
contenders; each cell is the median over rounds. A contender that fails to start
is skipped with its reason, and the rest still run.

The peers run in their own venvs under ``--venv-root`` (created by this script and
reused when present; torch pinned to the CPU wheel): infinity-emb (transformers
4.x), Ray Serve, LitServe, and one with matplotlib for the plot. batchpilot runs
from the interpreter running this script.

    python benchmarks/tokens_vs_peers.py --json bench-tokens.json   # 5 rounds, the plot
    python benchmarks/tokens_vs_peers.py --quick --contenders rayserve litserve infinity
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import traceback
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import psutil

HOST = "127.0.0.1"
MODEL_NAME = "bench-encoder"  # the model folder's name, the id every server answers to
BUDGET = 4096  # padded tokens per batch
WINDOW = 256  # waiting items that may be regrouped by length
COUNT = 32  # the count-based batchers' batch size
CLOSED_CLIENTS = 64
LOADS = (0.35, 0.70, 1.20)
POLICIES = ("fifo32", "one", "fifo-budget", "sorted-budget")
ENGINES = ("map_batches", "reference")
SERVERS = ("bp-tokens", "bp-count", "rayserve", "litserve", "infinity")
PEERS = ("rayserve", "litserve", "infinity")
TORCH = "torch==2.13.0"  # the CPU wheel the Makefile pins; plain "torch" may pull CUDA
VENVS: dict[str, tuple[tuple[str, ...], str]] = {
    # name: (pip requirements, the import that proves the venv is complete)
    "infinity": (
        (TORCH, "infinity-emb[server,torch]==0.0.78", "transformers>=4.47,<5", "numpy<2"),
        "import infinity_emb, torch, transformers",
    ),
    "rayserve": (
        (TORCH, "ray[serve]>=2.60", "transformers"),
        "import ray.serve, torch, transformers",
    ),
    "litserve": ((TORCH, "litserve", "transformers"), "import litserve, torch, transformers"),
    "plot": (("matplotlib",), "import matplotlib"),
}

PEER_MODEL = '''
"""The peers' encoder: the same tokenizer, model, padding and mean pooling as batchpilot's
Embedder (written by tokens_vs_peers.py)."""
import torch
from transformers import AutoModel, AutoTokenizer


class Encoder:
    def __init__(self, model_dir):
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.model = AutoModel.from_pretrained(model_dir).eval()
        self.pad_id = int(self.tokenizer.pad_token_id or 0)
        torch.set_grad_enabled(False)

    def tokenize(self, texts):
        texts = [texts] if isinstance(texts, str) else list(texts)
        encoded = self.tokenizer(texts, truncation=True, max_length=512)
        return [list(ids) for ids in encoded["input_ids"]]

    def embed(self, batch):
        longest = max(len(ids) for ids in batch)
        ids = torch.full((len(batch), longest), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), longest), dtype=torch.long)
        for row, item in enumerate(batch):
            ids[row, : len(item)] = torch.tensor(item)
            mask[row, : len(item)] = 1
        with torch.inference_mode():
            hidden = self.model(input_ids=ids, attention_mask=mask).last_hidden_state
            weights = mask.unsqueeze(-1).to(torch.float32)
            pooled = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)
            return torch.nn.functional.normalize(pooled, dim=-1).tolist()


def response(vectors, items, name):
    tokens = sum(len(ids) for ids in items)
    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)
        ],
        "model": name,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
'''

RAYSERVE = """
import asyncio
import signal
import sys

import ray
from ray import serve
from starlette.requests import Request
from starlette.responses import JSONResponse

from peer_model import Encoder, response

MODEL_DIR, NAME, PORT, BUDGET = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])


def padded_cost(items):
    return len(items) * max(len(ids) for ids in items)


@serve.deployment(max_ongoing_requests=100_000)
class Embeddings:
    def __init__(self):
        self.encoder = Encoder(MODEL_DIR)

    @serve.batch(max_batch_size=BUDGET, batch_wait_timeout_s=0.005, batch_size_fn=padded_cost)
    async def embed(self, items):
        return await asyncio.to_thread(self.encoder.embed, items)

    async def __call__(self, request: Request):
        body = await request.json()
        items = self.encoder.tokenize(body["input"])
        vectors = await asyncio.gather(*(self.embed(ids) for ids in items))
        return JSONResponse(response(vectors, items, NAME))


if __name__ == "__main__":
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": PORT})
    serve.run(Embeddings.bind(), route_prefix="/v1/embeddings")
    print("ready", flush=True)
    signal.sigwait([signal.SIGTERM, signal.SIGINT])
    serve.shutdown()
    ray.shutdown()
"""

LITSERVE = """
import sys

import litserve as ls

from peer_model import Encoder, response

MODEL_DIR, NAME, PORT, COUNT = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])


class EmbeddingsAPI(ls.LitAPI):
    # an item is one request: the token ids of each of its inputs
    def setup(self, device):
        self.encoder = Encoder(MODEL_DIR)

    def decode_request(self, request):
        return self.encoder.tokenize(request["input"])

    def batch(self, inputs):
        return inputs

    def predict(self, requests):
        vectors = self.encoder.embed([ids for request in requests for ids in request])
        out, start = [], 0
        for request in requests:
            out.append((vectors[start : start + len(request)], request))
            start += len(request)
        return out

    def unbatch(self, output):
        return output

    def encode_response(self, output):
        return response(output[0], output[1], NAME)


if __name__ == "__main__":
    api = EmbeddingsAPI(max_batch_size=COUNT, batch_timeout=0.005, api_path="/v1/embeddings")
    server = ls.LitServer(api, accelerator="cpu", timeout=False)  # no deadline, as the others
    server.run(host="127.0.0.1", port=PORT, log_level="warning", generate_client_file=False)
"""

PLOT = """
import json, sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt

results = json.load(open(sys.argv[1]))
fig, axes = plt.subplots(1, 3, figsize=(14, 4.4), dpi=110)
ax = axes[0]
rows = [r for r in results["offline"] if r["engine"] == results["offline_engine"]]
ax.bar([r["policy"] for r in rows], [r["items_per_s"] for r in rows], color="tab:blue")
for i, r in enumerate(rows):
    ax.text(i, r["items_per_s"], f"{r['padded_fraction']:.0%} pad", ha="center", va="bottom")
ax.set_ylabel("items / s")
ax.set_title(f"offline ({results['offline_engine']})")
ax = axes[1]
for name in results["servers"]:
    cells = sorted((c for c in results["open_loop"] if c["contender"] == name),
                   key=lambda c: c["load"])
    if cells:
        ax.plot([c["load"] * 100 for c in cells], [c["p99_ms"] for c in cells], marker="o",
                label=name)
ax.set_yscale("log")
ax.set_xlabel("offered load, % of the count-based capacity")
ax.set_ylabel("p99 ms (from arrival)")
ax.set_title("open-loop Poisson arrivals")
ax.grid(alpha=0.3)
if results["open_loop"]:
    ax.legend(fontsize=8)
ax = axes[2]
cells = [c for c in results["closed_loop"]]
ax.bar([c["contender"] for c in cells], [c["rps"] for c in cells], color="tab:green")
ax.set_ylabel("requests / s")
ax.set_title(f"{results['closed_clients']} closed-loop clients")
ax.tick_params(axis="x", labelrotation=20)
fig.suptitle("random-weight BERT encoder, lognormal lengths (median 40), 2 CPU cores")
fig.tight_layout()
fig.savefig(sys.argv[2])
"""


# --- sizes of one run ------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    texts: int
    rounds: int
    open_s: float  # seconds of arrivals per open-loop cell
    drain_s: float  # after the last arrival, how long answers are awaited
    closed_s: float  # seconds per closed-loop cell (and for the capacity)
    ready_s: float  # how long a server may take to start


FULL = Plan(texts=1000, rounds=5, open_s=20.0, drain_s=15.0, closed_s=10.0, ready_s=300.0)
QUICK = Plan(texts=200, rounds=1, open_s=4.0, drain_s=5.0, closed_s=3.0, ready_s=300.0)


# --- offline ---------------------------------------------------------------------------


@dataclass
class Meter:
    """Real and padded tokens of every batch a batch function saw."""

    real: int = 0
    padded: int = 0
    batches: int = 0

    def record(self, batch: Sequence[Sequence[int]]) -> None:
        self.real += sum(len(ids) for ids in batch)
        self.padded += len(batch) * max(len(ids) for ids in batch)
        self.batches += 1

    @property
    def padded_fraction(self) -> float:
        return (self.padded - self.real) / self.padded if self.padded else 0.0


def padded_cost(batch: Sequence[Sequence[int]]) -> int:
    return len(batch) * max(len(ids) for ids in batch)


def fill(
    order: Sequence[int], items: Sequence[Sequence[int]], size: int, budget: int | None
) -> Iterator[list[int]]:
    """Cut ``order`` (indices) into batches of at most ``size`` items and padded ``budget``;
    an item over the budget alone runs alone."""
    batch: list[int] = []
    for i in order:
        grown = [*batch, i]
        over = budget is not None and padded_cost([items[j] for j in grown]) > budget
        if batch and (len(grown) > size or over):
            yield batch
            batch = [i]
        else:
            batch = grown
    if batch:
        yield batch


def reference_batches(policy: str, items: Sequence[Sequence[int]]) -> Iterator[list[int]]:
    """The policy by hand: batches of indices into ``items``."""
    everything = range(len(items))
    if policy == "fifo32":
        yield from fill(everything, items, COUNT, None)
    elif policy == "one":
        yield from fill(everything, items, 1, None)
    elif policy == "fifo-budget":
        yield from fill(everything, items, WINDOW, BUDGET)
    elif policy == "sorted-budget":
        for start in range(0, len(items), WINDOW):
            waiting = range(start, min(start + WINDOW, len(items)))
            yield from fill(sorted(waiting, key=lambda i: len(items[i])), items, WINDOW, BUDGET)
    else:
        raise ValueError(policy)


def run_reference(
    policy: str, fn: Callable[[list[Any]], list[Any]], items: list[list[int]]
) -> list[Any]:
    results: list[Any] = [None] * len(items)
    for indices in reference_batches(policy, items):
        for i, row in zip(indices, fn([items[i] for i in indices]), strict=True):
            results[i] = row
    return results


MAP_BATCHES_ARGS: dict[str, dict[str, Any]] = {
    "fifo32": {"batch_size": COUNT},
    "one": {"batch_size": 1},
    "fifo-budget": {
        "batch_size": WINDOW,
        "cost": len,
        "max_batch_cost": BUDGET,
        "padded": True,
        "sort_window": 0,
    },
    "sorted-budget": {
        "batch_size": WINDOW,
        "cost": len,
        "max_batch_cost": BUDGET,
        "padded": True,
        "sort_window": WINDOW,
    },
}


def run_map_batches(
    policy: str, fn: Callable[[list[Any]], list[Any]], items: list[list[int]]
) -> list[Any]:
    import batchpilot

    return list(batchpilot.map_batches(fn, items, executor="serial", **MAP_BATCHES_ARGS[policy]))


@dataclass(frozen=True)
class OfflineCell:
    engine: str
    policy: str
    items_per_s: float
    padded_fraction: float
    batches: int
    seconds: float


def offline_once(
    engine: str, policy: str, embedder: Any, items: list[list[int]], check: Any
) -> OfflineCell:
    """One timed pass of ``policy`` through ``engine``; results checked against ``check``."""
    meter = Meter()

    def fn(batch: list[list[int]]) -> list[Any]:
        meter.record(batch)
        return list(embedder.predict(batch))

    runner = run_map_batches if engine == "map_batches" else run_reference
    start = time.perf_counter()
    results = runner(policy, fn, items)
    seconds = time.perf_counter() - start
    if len(results) != len(items) or not np.allclose(np.stack(results), check, atol=1e-4):
        raise AssertionError(f"{engine} {policy}: results differ from the reference's")
    return OfflineCell(
        engine, policy, len(items) / seconds, meter.padded_fraction, meter.batches, seconds
    )


# --- servers ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def ensure_venv(root: Path, name: str) -> Path:
    """The Python of venv ``name`` under ``root``, creating and filling it when incomplete."""
    requirements, check = VENVS[name]
    venv = root / name
    python = venv / "bin" / "python"
    found = python.exists() and subprocess.run([python, "-c", check], capture_output=True)
    if found and found.returncode == 0:
        return python
    print(f"== creating the {name} venv in {venv} (minutes)", flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    subprocess.run([python, "-m", "pip", "install", "-q", *requirements], check=True, timeout=1800)
    return python


def server_command(name: str, model_dir: Path, port: int, venv_root: Path) -> list[str]:
    bp = [
        sys.executable,
        "-m",
        "batchpilot",
        "serve",
        "--embeddings",
        str(model_dir),
        "--host",
        HOST,
        "--port",
        str(port),
    ]
    if name == "bp-tokens":
        return [*bp, "--max-batch-tokens", str(BUDGET)]
    if name == "bp-count":
        count = ["--max-batch-size", str(COUNT), "--sort-window", "0"]
        return [*bp, "--max-batch-tokens", "0", *count]
    python = str(ensure_venv(venv_root, name))
    if name == "rayserve":
        return [python, "rayserve_server.py", str(model_dir), MODEL_NAME, str(port), str(BUDGET)]
    if name == "litserve":
        return [python, "litserve_server.py", str(model_dir), MODEL_NAME, str(port), str(COUNT)]
    if name == "infinity":
        return [
            python,
            "-m",
            "infinity_emb.cli",
            "v2",
            "--model-id",
            str(model_dir),
            "--served-model-name",
            MODEL_NAME,
            "--device",
            "cpu",
            "--engine",
            "torch",
            "--host",
            HOST,
            "--port",
            str(port),
            "--url-prefix",
            "/v1",
        ]
    raise ValueError(name)


def body(text: str | list[str]) -> bytes:
    return json.dumps({"input": text, "model": MODEL_NAME}).encode()


class Server:
    """A contender's server process on a free port."""

    def __init__(
        self, name: str, workdir: Path, model_dir: Path, venv_root: Path, env: dict[str, str]
    ):
        self.name = name
        self.port = free_port()
        command = server_command(name, model_dir, self.port, venv_root)
        self.log_path = workdir / f"{name}.log"
        self.log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            command,
            cwd=workdir,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/v1/embeddings"

    def log_tail(self, lines: int = 15) -> str:
        self.log.flush()
        text = self.log_path.read_text(errors="replace").strip().splitlines()
        return "\n".join(text[-lines:])

    def post(self, payload: bytes, timeout: float = 30.0) -> dict[str, Any]:
        request = urllib.request.Request(self.url, payload, {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return dict(json.loads(response.read()))

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"exited with {self.process.returncode}:\n{self.log_tail()}")
            with contextlib.suppress(OSError, urllib.error.URLError, ValueError):
                if self.post(body("hello world"), timeout=10)["data"][0]["embedding"]:
                    return
            time.sleep(1.0)
        raise RuntimeError(f"did not answer within {timeout:.0f} s:\n{self.log_tail()}")

    def check_shape(self, texts: list[str], expected: np.ndarray) -> str:
        """The OpenAI SDK as the client: two inputs in one request, the right vectors back."""
        from openai import OpenAI

        client = OpenAI(base_url=f"http://{HOST}:{self.port}/v1", api_key="none", timeout=60)
        answer = client.embeddings.create(model=MODEL_NAME, input=texts, encoding_format="float")
        got = np.array([d.embedding for d in sorted(answer.data, key=lambda d: d.index)])
        if got.shape != expected.shape:
            raise AssertionError(f"embeddings of shape {got.shape}, not {expected.shape}")
        differ = float(np.abs(got - expected).max())
        same = "same vectors as" if differ < 1e-3 else f"DIFFER (max {differ:.3g}) from"
        return (
            f"openai SDK: {len(answer.data)} x {got.shape[1]}, {same} batchpilot's Embedder, "
            f"usage {answer.usage}"
        )

    def _tree(self) -> list[psutil.Process]:
        try:
            root = psutil.Process(self.process.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def pause(self) -> None:
        """SIGSTOP the server and every process under it (idle Ray and LitServe still poll)."""
        for process in self._tree():
            with contextlib.suppress(psutil.NoSuchProcess):
                process.suspend()

    def resume(self) -> None:
        for process in self._tree():
            with contextlib.suppress(psutil.NoSuchProcess):
                process.resume()
        time.sleep(0.5)  # timers and health checks catch up before the load starts

    def stop(self) -> None:
        self.resume()
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)  # stragglers (Ray's workers)
        self.log.close()


# --- load ------------------------------------------------------------------------------


@dataclass
class OnlineCell:
    contender: str
    load: float  # fraction of the count-based capacity; 0 for the closed loop
    offered_rps: float
    rps: float  # answered per second, from the first arrival to the last answer
    p50_ms: float
    p99_ms: float
    ok: int
    sent: int
    missing: int  # not answered by the end of the drain
    errors: int  # answered, but not 200, or the connection failed
    extra: dict[str, float] = field(default_factory=dict)


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


async def _post(session: Any, url: str, payload: bytes, timeout: float) -> bool:
    import aiohttp

    async with session.post(
        url,
        data=payload,
        headers={"Content-Type": "application/json"},
        timeout=aiohttp.ClientTimeout(total=max(timeout, 0.01)),
    ) as response:
        await response.read()
        return response.status == 200


async def open_loop(
    url: str, payloads: list[bytes], rate: float, plan: Plan, seed: int
) -> tuple[list[float], int, dict[str, int], float]:
    """Poisson arrivals at ``rate`` for ``plan.open_s``; latency from each scheduled arrival."""
    import aiohttp

    rng = np.random.default_rng(seed)
    gaps = rng.exponential(1.0 / rate, size=int(rate * plan.open_s * 2) + 16)
    arrivals = np.cumsum(gaps)
    arrivals = arrivals[arrivals < plan.open_s]
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    counts = {"errors": 0, "missing": 0}
    last = [0.0]
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        t0 = loop.time() + 0.05
        end = t0 + plan.open_s + plan.drain_s

        async def one(k: int, at: float) -> None:
            await asyncio.sleep(max(0.0, t0 + at - loop.time()))
            try:
                ok = await _post(session, url, payloads[k % len(payloads)], end - loop.time())
            except asyncio.TimeoutError:
                counts["missing"] += 1
                return
            except aiohttp.ClientError:
                counts["errors"] += 1
                return
            if ok:
                now = loop.time()
                latencies.append(now - (t0 + at))
                last[0] = max(last[0], now - t0)
            else:
                counts["errors"] += 1

        await asyncio.gather(*(one(k, float(at)) for k, at in enumerate(arrivals)))
    span = max(last[0], plan.open_s)
    return latencies, len(arrivals), counts, len(latencies) / span


async def closed_loop(
    url: str, payloads: list[bytes], clients: int, seconds: float
) -> tuple[list[float], dict[str, int], float]:
    """``clients`` loops, each sending its next request when the last one is answered."""
    import aiohttp

    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    counts = {"errors": 0, "missing": 0, "sent": 0}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        t0 = loop.time()
        stop = t0 + seconds

        async def client(c: int) -> None:
            k = c
            while loop.time() < stop and counts["sent"] < 1_000_000:
                counts["sent"] += 1
                start = loop.time()
                try:
                    ok = await _post(session, url, payloads[k % len(payloads)], 60.0)
                except asyncio.TimeoutError:
                    counts["missing"] += 1
                    continue
                except aiohttp.ClientError:
                    counts["errors"] += 1
                    await asyncio.sleep(0.05)
                    continue
                if ok:
                    latencies.append(loop.time() - start)
                else:
                    counts["errors"] += 1
                k += clients

        await asyncio.gather(*(client(c) for c in range(clients)))
        elapsed = loop.time() - t0
    return latencies, counts, len(latencies) / elapsed


def measure_open(
    server: Server, payloads: list[bytes], load: float, capacity: float, plan: Plan, seed: int
) -> OnlineCell:
    rate = load * capacity
    latencies, sent, counts, rps = asyncio.run(open_loop(server.url, payloads, rate, plan, seed))
    return OnlineCell(
        server.name,
        load,
        rate,
        rps,
        percentile(latencies, 50) * 1e3,
        percentile(latencies, 99) * 1e3,
        len(latencies),
        sent,
        counts["missing"],
        counts["errors"],
    )


def measure_closed(server: Server, payloads: list[bytes], seconds: float) -> OnlineCell:
    latencies, counts, rps = asyncio.run(closed_loop(server.url, payloads, CLOSED_CLIENTS, seconds))
    return OnlineCell(
        server.name,
        0.0,
        0.0,
        rps,
        percentile(latencies, 50) * 1e3,
        percentile(latencies, 99) * 1e3,
        len(latencies),
        counts["sent"],
        counts["missing"],
        counts["errors"],
    )


def warm_up(server: Server, payloads: list[bytes], window: float) -> float:
    """Closed-loop windows until two in a row agree within 10 % (at most 8): torch's
    first batches of each shape are slow, so a capacity taken cold is far too low.
    Returns the warm rate (req/s) of the last window."""
    last = measure_closed(server, payloads, window).rps
    for _ in range(7):
        rate = measure_closed(server, payloads, window).rps
        if abs(rate - last) <= 0.1 * max(rate, last):
            return rate
        last = rate
    return last


def median_cell(cells: list[OnlineCell]) -> OnlineCell:
    """Each number the median over rounds; missing and errors summed."""
    first = cells[0]

    def med(key: str) -> float:
        return float(statistics.median(getattr(c, key) for c in cells))

    return OnlineCell(
        first.contender,
        first.load,
        med("offered_rps"),
        med("rps"),
        med("p50_ms"),
        med("p99_ms"),
        int(med("ok")),
        int(med("sent")),
        sum(c.missing for c in cells),
        sum(c.errors for c in cells),
    )


# --- report ----------------------------------------------------------------------------


def ratio(value: float, base: float | None) -> str:
    return f"{value / base:.2f}x" if base else "-"


def offline_table(cells: list[OfflineCell]) -> str:
    lines = [
        "| engine | policy | items/s | padded tokens | batches | vs fifo32 | vs one |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for c in cells:
        base = {o.policy: o.items_per_s for o in cells if o.engine == c.engine}
        lines.append(
            f"| {c.engine} | {c.policy} | {c.items_per_s:.1f} | {c.padded_fraction:.0%} | "
            f"{c.batches} | {ratio(c.items_per_s, base.get('fifo32'))} | "
            f"{ratio(c.items_per_s, base.get('one'))} |"
        )
    return "\n".join(lines)


def open_table(cells: list[OnlineCell]) -> str:
    lines = [
        "| load | server | offered/s | achieved/s | achieved | p50 ms | p99 ms | missing | "
        "errors | p99 vs bp-count |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in cells:
        base = next((b for b in cells if b.contender == "bp-count" and b.load == c.load), None)
        lines.append(
            f"| {c.load:.0%} | {c.contender} | {c.offered_rps:.1f} | {c.rps:.1f} | "
            f"{c.rps / c.offered_rps:.0%} | {c.p50_ms:.0f} | {c.p99_ms:.0f} | {c.missing} | "
            f"{c.errors} | {ratio(c.p99_ms, base.p99_ms if base else None)} |"
        )
    return "\n".join(lines)


def closed_table(cells: list[OnlineCell]) -> str:
    base = next((b for b in cells if b.contender == "bp-count"), None)
    lines = [
        "| server | req/s | p50 ms | p99 ms | errors | vs bp-count | p99 vs bp-count |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for c in cells:
        lines.append(
            f"| {c.contender} | {c.rps:.1f} | {c.p50_ms:.0f} | {c.p99_ms:.0f} | "
            f"{c.errors + c.missing} | {ratio(c.rps, base.rps if base else None)} | "
            f"{ratio(c.p99_ms, base.p99_ms if base else None)} |"
        )
    return "\n".join(lines)


def targets(
    offline: list[OfflineCell], opened: list[OnlineCell], closed: list[OnlineCell]
) -> dict[str, tuple[str, bool]]:
    """The issue's targets that these numbers decide: name -> (measured, met)."""
    out: dict[str, tuple[str, bool]] = {}
    for engine in ENGINES:
        rows = {c.policy: c for c in offline if c.engine == engine}
        if {"fifo32", "one", "sorted-budget"} <= set(rows):
            best = rows["sorted-budget"]
            vs_count = best.items_per_s / rows["fifo32"].items_per_s
            vs_one = best.items_per_s / rows["one"].items_per_s
            out[f"offline {engine}: >= 3x fifo32, >= 1.8x one, padded <= 30 %"] = (
                f"{vs_count:.2f}x, {vs_one:.2f}x, {best.padded_fraction:.0%}",
                vs_count >= 3 and vs_one >= 1.8 and best.padded_fraction <= 0.30,
            )
    cell = {(c.contender, c.load): c for c in opened}
    if (t := cell.get(("bp-tokens", 1.20))) is not None:
        out["120 % load: achieved >= 95 %, p99 <= 1 s"] = (
            f"{t.rps / t.offered_rps:.0%}, {t.p99_ms:.0f} ms",
            t.rps >= 0.95 * t.offered_rps and t.p99_ms <= 1000 and t.missing == 0,
        )
    if (t := cell.get(("bp-tokens", 0.35))) and (b := cell.get(("bp-count", 0.35))):
        out["35 % load: p99 <= bp-count's"] = (
            f"{t.p99_ms:.0f} vs {b.p99_ms:.0f} ms",
            t.p99_ms <= b.p99_ms,
        )
    by = {c.contender: c for c in closed}
    if (t := by.get("bp-tokens")) and (i := by.get("infinity")):
        out["64 clients: >= 2x infinity, p99 <= infinity's"] = (
            f"{t.rps / i.rps:.2f}x, {t.p99_ms:.0f} vs {i.p99_ms:.0f} ms",
            t.rps >= 2 * i.rps and t.p99_ms <= i.p99_ms,
        )
    if (t := by.get("bp-tokens")) and (r := by.get("rayserve")):
        out["64 clients: >= 2x Ray Serve batch_size_fn"] = (
            f"{t.rps / r.rps:.2f}x",
            t.rps >= 2 * r.rps,
        )
    return out


# --- main ------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="a smoke test: 1 round, 200 texts, short cells"
    )
    parser.add_argument(
        "--contenders",
        nargs="*",
        choices=(*ENGINES, *SERVERS),
        default=[*ENGINES, *SERVERS],
        help="offline engines and servers to run (all)",
    )
    parser.add_argument(
        "--loads",
        nargs="*",
        type=float,
        default=list(LOADS),
        help="open-loop loads as fractions of the count-based capacity",
    )
    parser.add_argument("--rounds", type=int, default=None, help="rounds; the median is kept (5)")
    parser.add_argument("--texts", type=int, default=None, help="texts (1000; 200 with --quick)")
    parser.add_argument(
        "--cell-seconds",
        type=float,
        default=None,
        help="seconds of arrivals per open-loop cell, and the wait for answers after "
        "(20 and 15; 4 and 5 with --quick); closed-loop cells take 3/4 of it",
    )
    parser.add_argument("--seed", type=int, default=21, help="texts and arrivals")
    parser.add_argument(
        "--capacity",
        type=float,
        default=None,
        help="count-based capacity in req/s (measured when not given)",
    )
    parser.add_argument(
        "--venv-root",
        type=Path,
        default=Path(".bench-venvs"),
        help="where the peers' venvs live (created, reused)",
    )
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument(
        "--plot",
        type=Path,
        default=None,
        help="PNG (default docs/perf-tokens.png, none with --quick)",
    )
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    cell = args.cell_seconds
    plan = Plan(
        args.texts or plan.texts,
        args.rounds or plan.rounds,
        plan.open_s if cell is None else cell,
        plan.drain_s if cell is None else cell,
        plan.closed_s if cell is None else 0.75 * cell,
        plan.ready_s,
    )
    plot = args.plot or (None if args.quick else Path("docs/perf-tokens.png"))
    venv_root = args.venv_root.resolve()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # open-loop overload: many sockets

    from batchpilot.random_encoder import save_random_encoder, synthetic_texts
    from batchpilot.serve.embeddings import Embedder

    workdir = Path(tempfile.mkdtemp(prefix="tokens-bench-"))
    model_dir = save_random_encoder(workdir / MODEL_NAME)
    texts = synthetic_texts(plan.texts, median=40, sigma=0.9, seed=args.seed)
    embedder = Embedder(model_dir)
    embedder.setup()
    items = embedder.tokenize(texts)
    lengths = np.array([len(i) for i in items])
    print(
        f"== {len(items)} texts, tokens median {np.median(lengths):.0f}, p99 "
        f"{np.percentile(lengths, 99):.0f}, max {lengths.max()}; work in {workdir}"
    )
    # every contender's vectors must match these (padding changes them by float error only)
    expected = np.stack(run_reference("sorted-budget", lambda b: list(embedder.predict(b)), items))
    (workdir / "peer_model.py").write_text(textwrap.dedent(PEER_MODEL))
    (workdir / "rayserve_server.py").write_text(textwrap.dedent(RAYSERVE))
    (workdir / "litserve_server.py").write_text(textwrap.dedent(LITSERVE))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(workdir), os.environ.get("PYTHONPATH", "")]),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "DO_NOT_TRACK": "1",
        "INFINITY_ANONYMOUS_USAGE_STATS": "0",
        "RAY_USAGE_STATS_ENABLED": "0",
        "TOKENIZERS_PARALLELISM": "false",
    }
    rng = np.random.default_rng(args.seed)
    payloads = [body(texts[i]) for i in rng.permutation(len(texts))]
    skipped: dict[str, str] = {}
    engines = [e for e in ENGINES if e in args.contenders]
    servers: dict[str, Server] = {}
    offline_rounds: dict[tuple[str, str], list[OfflineCell]] = {}
    open_rounds: dict[tuple[str, float], list[OnlineCell]] = {}
    closed_rounds: dict[str, list[OnlineCell]] = {}
    capacity = args.capacity
    capacity_source = "given" if capacity else ""
    try:
        for name in [s for s in SERVERS if s in args.contenders]:
            try:
                servers[name] = Server(name, workdir, model_dir, venv_root, env)
            except Exception as exc:  # a contender that cannot start is skipped
                skipped[name] = f"{type(exc).__name__}: {exc}"
        for name, server in list(servers.items()):
            try:
                server.wait_ready(plan.ready_s)
                print(f"{name}: up; {server.check_shape(texts[:2], expected[:2])}", flush=True)
                warm = warm_up(server, payloads, min(3.0, plan.closed_s))
                print(f"{name}: warm at {warm:.1f} req/s", flush=True)
            except Exception as exc:
                skipped[name] = f"{type(exc).__name__}: {exc}"
                server.stop()
                del servers[name]
                continue
            server.pause()
        for name, why in skipped.items():
            print(f"{name}: SKIPPED - {why}", flush=True)
        if capacity is None and "bp-count" in servers:
            servers["bp-count"].resume()
            try:
                capacity = measure_closed(servers["bp-count"], payloads, plan.closed_s).rps
            finally:
                servers["bp-count"].pause()
            capacity_source = f"bp-count, {CLOSED_CLIENTS} closed-loop clients"
        for round_ in range(plan.rounds):
            for engine in engines:
                for policy in POLICIES:
                    try:
                        cell = offline_once(engine, policy, embedder, items, expected)
                    except Exception as exc:  # report, and run the rest
                        why = "".join(traceback.format_exception_only(exc)).strip()
                        skipped[f"{engine}:{policy}"] = why
                        print(f"round {round_ + 1} {engine} {policy}: FAILED {why}", flush=True)
                        continue
                    offline_rounds.setdefault((engine, policy), []).append(cell)
                    print(
                        f"round {round_ + 1} {engine:<11} {policy:<13} {cell.items_per_s:7.1f} "
                        f"items/s  padded {cell.padded_fraction:4.0%}  {cell.batches} batches",
                        flush=True,
                    )
            if capacity is None and ("reference", "fifo32") in offline_rounds:
                capacity = offline_rounds[("reference", "fifo32")][0].items_per_s
                capacity_source = "offline reference fifo32 (no bp-count server)"
            if servers and capacity is None:
                print("no count-based capacity: give --capacity or run bp-count or reference")
                break
            for load in [*args.loads, 0.0]:
                for name, server in servers.items():
                    server.resume()
                    try:
                        if load:
                            seed = args.seed * 1000 + round_ * 10 + int(load * 100)
                            online = measure_open(server, payloads, load, capacity or 0, plan, seed)
                            open_rounds.setdefault((name, load), []).append(online)
                        else:
                            online = measure_closed(server, payloads, plan.closed_s)
                            closed_rounds.setdefault(name, []).append(online)
                    finally:
                        server.pause()
                    where = f"load {load:.0%}" if load else f"{CLOSED_CLIENTS} clients"
                    print(
                        f"round {round_ + 1} {where:<11} {name:<10} {online.rps:7.1f} req/s "
                        f"(offered {online.offered_rps:.1f})  p50 {online.p50_ms:6.0f} ms  "
                        f"p99 {online.p99_ms:6.0f} ms  missing {online.missing} errors "
                        f"{online.errors}",
                        flush=True,
                    )
    finally:
        for server in servers.values():
            server.stop()
    offline = [
        OfflineCell(
            e,
            p,
            statistics.median(c.items_per_s for c in cells),
            statistics.median(c.padded_fraction for c in cells),
            cells[0].batches,
            statistics.median(c.seconds for c in cells),
        )
        for (e, p), cells in offline_rounds.items()
    ]
    opened = sorted((median_cell(c) for c in open_rounds.values()), key=lambda c: c.load)
    closed = [median_cell(c) for c in closed_rounds.values()]
    print(f"\n## Offline ({len(items)} texts, median of {plan.rounds} rounds)\n")
    print(offline_table(offline))
    if opened:
        print(f"\n## Open-loop arrivals (capacity {capacity:.1f} req/s from {capacity_source})\n")
        print(open_table(opened))
    if closed:
        print(f"\n## {CLOSED_CLIENTS} closed-loop clients\n")
        print(closed_table(closed))
    met = targets(offline, opened, closed)
    if met:
        print("\n## Targets\n\n| target | measured | met |\n|---|---|---|")
        for name, (measured, ok) in met.items():
            print(f"| {name} | {measured} | {'yes' if ok else 'NO'} |")
    if skipped:
        print("\n## Skipped\n")
        for name, why in skipped.items():
            lines = why.splitlines() or [""]
            print(f"- {name}: {' ... '.join(dict.fromkeys([lines[0], lines[-1]]))}")
    results = {
        "plan": asdict(plan),
        "seed": args.seed,
        "capacity_rps": capacity,
        "capacity_source": capacity_source,
        "closed_clients": CLOSED_CLIENTS,
        "servers": list(servers),
        "skipped": skipped,
        "offline_engine": "map_batches"
        if len([c for c in offline if c.engine == "map_batches"]) == len(POLICIES)
        else "reference",
        "offline": [asdict(c) for c in offline],
        "open_loop": [asdict(c) for c in opened],
        "closed_loop": [asdict(c) for c in closed],
        "targets": {k: {"measured": m, "met": ok} for k, (m, ok) in met.items()},
    }
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    if plot is not None and offline:
        data = workdir / "results.json"
        data.write_text(json.dumps(results))
        plotter = ensure_venv(venv_root, "plot")
        subprocess.run([str(plotter), "-c", PLOT, str(data), str(plot)], check=True, timeout=300)
        print(f"plot: {plot}")
    subprocess.run(["rm", "-rf", str(workdir)], check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
