"""HTTP model servers on one machine: batchpilot serve against LitServe, Ray Serve and FastAPI.

The same model everywhere: scikit-learn's digits classifier (``LogisticRegression``
trained on the bundled 8x8 digits, deterministic), one image (64 floats) per
request as ``{"image": [...]}``, answered with ``{"digit": d}``.

Contenders (each its own server process on 127.0.0.1, all started first and kept
running; while one is measured the others are stopped with SIGSTOP, since idle
LitServe and Ray Serve processes still poll and take CPU from the measured one):

* ``batchpilot``: ``batchpilot serve`` (``--max-batch-size 64 --max-wait 0.005``),
  with every feature on: Prometheus metrics, priorities, and a deadline per request
  (``--timeout 10``);
* ``batchpilot-2w``: the same with ``--workers 2`` (two processes, two batchers);
* ``litserve``: LitServe, ``max_batch_size=64, batch_timeout=0.005``;
* ``rayserve``: Ray Serve, ``@serve.batch(max_batch_size=64,
  batch_wait_timeout_s=0.005)`` behind its HTTP proxy;
* ``fastapi``: plain FastAPI on uvicorn (httptools, uvloop), no batching;
* ``floor``: the batchpilot stack (raw ASGI, uvicorn, orjson) answering a
  constant without a model: what HTTP alone costs here.

Load: ``hey`` (Debian package) on 127.0.0.1 at 1, 16, 64 and 256 connections for
a fixed duration per cell; all contenders interleaved within each round; the
median of the rounds per cell. Then an overload run against batchpilot (see
`overload`): 4x more connections than its queue holds, a 100 ms deadline, a
bounded number of requests; every request must be answered 200, 503 or 504,
with no connection errors.

The peers run in their own venv, created by this script (``--venv``, reused when
present) with ``litserve``, ``ray[serve]``, ``fastapi``, ``uvicorn[standard]``,
``scikit-learn`` and ``matplotlib`` (which draws the plot). batchpilot runs from
the interpreter running this script.

    python benchmarks/serve_vs_peers.py                      # 8 s per cell, 3 rounds
    python benchmarks/serve_vs_peers.py --duration 3 --rounds 1 --json out.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

CONNECTIONS = (1, 16, 64, 256)
CONTENDERS = ("batchpilot", "batchpilot-2w", "litserve", "rayserve", "fastapi", "floor")
PEERS = ("litserve", "rayserve", "fastapi")
PEER_PACKAGES = (
    "litserve",
    "ray[serve]",
    "fastapi",
    "uvicorn[standard]",
    "scikit-learn",
    "numpy",
    "matplotlib",
)
DEFAULT_VENV = Path.home() / ".cache" / "batchpilot-bench" / "serve-peers-venv"
HOST = "127.0.0.1"

MODEL = '''
"""The benchmark's model, shared by every server (written by serve_vs_peers.py)."""
import numpy as np


def train():
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression

    digits = load_digits()
    return LogisticRegression(max_iter=2000).fit(digits.data / 16.0, digits.target)


class Digits:
    """The batchpilot target: setup/decode/predict/encode."""

    def setup(self):
        self.clf = train()

    def decode(self, request):
        return np.asarray(request["image"], dtype=np.float64)

    def predict(self, batch):
        return self.clf.predict(batch)

    def encode(self, output):
        return {"digit": int(output)}
'''

LITSERVE = """
import sys
import numpy as np
import litserve as ls
from bench_model import train


class DigitsAPI(ls.LitAPI):
    def setup(self, device):
        self.clf = train()

    def decode_request(self, request):
        return np.asarray(request["image"], dtype=np.float64)

    def batch(self, inputs):
        return np.stack(inputs)

    def predict(self, x):
        return self.clf.predict(x)

    def unbatch(self, output):
        return list(output)

    def encode_response(self, output):
        return {"digit": int(output)}


if __name__ == "__main__":
    api = DigitsAPI(max_batch_size=64, batch_timeout=0.005)
    server = ls.LitServer(api, accelerator="cpu")
    server.run(host="127.0.0.1", port=int(sys.argv[1]), log_level="warning",
               generate_client_file=False)
"""

RAYSERVE = """
import signal
import sys
import numpy as np
import ray
from ray import serve
from starlette.requests import Request
from bench_model import train


@serve.deployment(max_ongoing_requests=1024)
class Digits:
    def __init__(self):
        self.clf = train()

    @serve.batch(max_batch_size=64, batch_wait_timeout_s=0.005)
    async def predict(self, images):
        return [{"digit": int(d)} for d in self.clf.predict(np.stack(images))]

    async def __call__(self, request: Request):
        body = await request.json()
        return await self.predict(np.asarray(body["image"], dtype=np.float64))


if __name__ == "__main__":
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": int(sys.argv[1])})
    serve.run(Digits.bind(), route_prefix="/predict")
    signal.sigwait([signal.SIGTERM, signal.SIGINT])
    serve.shutdown()
    ray.shutdown()
"""

FASTAPI = """
import sys
import numpy as np
import uvicorn
from fastapi import FastAPI
from bench_model import train

app = FastAPI()
clf = train()


@app.post("/predict")
async def predict(payload: dict):
    image = np.asarray(payload["image"], dtype=np.float64)
    return {"digit": int(clf.predict(image[None])[0])}


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning",
                access_log=False)
"""

FLOOR = '''
"""The batchpilot stack without a model: raw ASGI on uvicorn, orjson, a constant answer."""
import sys
import orjson
import uvicorn

BODY = orjson.dumps({"digit": 0})
HEADERS = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(BODY))]


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    message = await receive()
    orjson.loads(message.get("body", b""))
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning",
                access_log=False, lifespan="off")
'''

PLOT = """
import json, sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt

cells = json.load(open(sys.argv[1]))["cells"]
fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
for name in ["batchpilot", "batchpilot-2w", "litserve", "rayserve", "fastapi", "floor"]:
    rows = sorted((c["connections"], c["rps"]) for c in cells if c["contender"] == name)
    if rows:
        style = "--" if name == "floor" else "-"
        label = "constant answer (HTTP floor)" if name == "floor" else name
        ax.plot([r[0] for r in rows], [r[1] for r in rows], style, marker="o", label=label)
ax.set_xscale("log", base=2)
ax.set_xticks([1, 16, 64, 256], ["1", "16", "64", "256"])
ax.set_xlabel("concurrent connections (hey)")
ax.set_ylabel("requests / s (median of rounds)")
ax.set_title("digits classifier over HTTP, 2 cores, loopback")
ax.grid(alpha=0.3)
ax.legend()
fig.tight_layout()
fig.savefig(sys.argv[2])
"""


@dataclass(frozen=True)
class Cell:
    """One measurement: a contender at a number of connections."""

    contender: str
    connections: int
    rps: float
    p50_ms: float
    p99_ms: float
    slowest_ms: float
    responses: int
    errors: int
    statuses: dict[str, int]


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def ensure_venv(venv: Path) -> Path:
    """The peers' Python, creating and filling ``venv`` when it lacks them."""
    python = venv / "bin" / "python"
    check = "import litserve, ray.serve, fastapi, sklearn, matplotlib"
    found = python.exists() and subprocess.run([python, "-c", check], capture_output=True)
    if found and found.returncode == 0:
        return python
    print(f"== creating the peers' venv in {venv} (about a minute)", flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    subprocess.run([python, "-m", "pip", "install", "-q", *PEER_PACKAGES], check=True)
    return python


def image_body(path: Path) -> None:
    """One digits image as the request body, the same for every request."""
    from sklearn.datasets import load_digits

    image = (load_digits().data[7] / 16.0).round(4).tolist()
    path.write_text(json.dumps({"image": image}))


class Contender:
    """A server process on a free port."""

    def __init__(self, name: str, command: list[str], workdir: Path, env: dict[str, str]) -> None:
        self.name = name
        self.port = free_port()
        self.log = open(workdir / f"{name}.log", "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [*command, str(self.port)],
            cwd=workdir,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/predict"

    def wait_ready(self, body: bytes, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}")
            request = urllib.request.Request(self.url, body, {"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(request, timeout=5) as response:
                    if response.status == 200 and "digit" in json.loads(response.read()):
                        return
            except (OSError, urllib.error.URLError, ValueError):
                pass
            time.sleep(0.5)
        raise RuntimeError(f"{self.name} did not answer within {timeout} s")

    def _tree(self) -> list[psutil.Process]:
        try:
            root = psutil.Process(self.process.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def pause(self) -> None:
        """SIGSTOP the server and all its processes (idle servers still poll: LitServe's
        queues, Ray's controller and proxy), so they take no CPU from the one measured."""
        for process in self._tree():
            with contextlib.suppress(psutil.NoSuchProcess):
                process.suspend()

    def resume(self) -> None:
        for process in self._tree():
            with contextlib.suppress(psutil.NoSuchProcess):
                process.resume()
        time.sleep(0.5)  # let timers and health checks catch up before the load starts

    def stop(self) -> None:
        self.resume()
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        self.log.close()


def hey(
    url: str,
    body: Path,
    connections: int,
    *,
    duration: float | None = None,
    requests: int | None = None,
    headers: tuple[str, ...] = (),
    timeout: int = 20,
) -> dict[str, object]:
    """Run hey once; its summary as numbers."""
    command = ["hey", "-c", str(connections), "-m", "POST", "-T", "application/json"]
    command += ["-D", str(body), "-t", str(timeout)]
    command += ["-z", f"{duration}s"] if duration is not None else ["-n", str(requests)]
    for header in headers:
        command += ["-H", header]
    limit = (duration or 0) + timeout + 60
    out = subprocess.run([*command, url], capture_output=True, text=True, timeout=limit).stdout

    def number(pattern: str) -> float:
        found = re.search(pattern, out)
        return float(found.group(1)) if found else 0.0

    statuses = {code: int(n) for code, n in re.findall(r"\[(\d{3})\]\s+(\d+) responses", out)}
    error_section = out.split("Error distribution:", 1)[1] if "Error distribution:" in out else ""
    connection_errors = sum(int(n) for n in re.findall(r"^\s*\[(\d+)\]\s", error_section, re.M))
    return {
        "rps": number(r"Requests/sec:\s+([\d.]+)"),
        "p50_ms": number(r"50%+ in ([\d.]+) secs") * 1e3,
        "p99_ms": number(r"99%+ in ([\d.]+) secs") * 1e3,
        "slowest_ms": number(r"Slowest:\s+([\d.]+) secs") * 1e3,
        "statuses": statuses,
        "connection_errors": connection_errors,
    }


def measure(contender: Contender, body: Path, connections: int, duration: float) -> Cell:
    result = hey(contender.url, body, connections, duration=duration)
    statuses: dict[str, int] = result["statuses"]  # type: ignore[assignment]
    not_ok = sum(n for code, n in statuses.items() if code != "200")
    return Cell(
        contender=contender.name,
        connections=connections,
        rps=float(result["rps"]),  # type: ignore[arg-type]
        p50_ms=float(result["p50_ms"]),  # type: ignore[arg-type]
        p99_ms=float(result["p99_ms"]),  # type: ignore[arg-type]
        slowest_ms=float(result["slowest_ms"]),  # type: ignore[arg-type]
        responses=sum(statuses.values()),
        errors=not_ok + int(result["connection_errors"]),  # type: ignore[call-overload]
        statuses=statuses,
    )


def median_cell(cells: list[Cell]) -> Cell:
    """The round with the median req/s, with errors summed over every round."""
    ordered = sorted(cells, key=lambda c: c.rps)
    middle = ordered[len(ordered) // 2]
    return Cell(
        **{
            **asdict(middle),
            "p50_ms": statistics.median(c.p50_ms for c in cells),
            "p99_ms": statistics.median(c.p99_ms for c in cells),
            "errors": sum(c.errors for c in cells),
        }
    )


def overload(workdir: Path, body: Path, capacity: float, env: dict[str, str]) -> dict[str, object]:
    """batchpilot past what it can hold: 4x more connections than its queue bound.

    1024 connections against ``--max-queue 256``, a 100 ms deadline per request
    (``X-Request-Timeout``) and about 2 s of requests at the measured capacity,
    bounded in count. Every request must be answered 200, 503 (queue full, at
    once) or 504 (deadline) and none may be left hanging. hey's latencies include
    its own connection setup and its share of the 2 cores; the server's own
    per-second p99 (``/stats``) is reported beside them, and so are hey's latencies
    for the same load on the constant-answer server (the floor of that load).
    """
    deadline, queue, connections = 0.1, 256, 1024
    requests = connections * max(1, round(capacity * 2 / connections))
    server = Contender("batchpilot-overload", batchpilot_command(queue), workdir, env)
    try:
        server.wait_ready(body.read_bytes())
        result = hey(
            server.url,
            body,
            connections,
            requests=requests,
            headers=(f"X-Request-Timeout: {deadline}",),
            timeout=5,
        )
        time.sleep(1.2)  # let the server close its last one-second sample
        stats_url = server.url.replace("/predict", "/stats")
        with urllib.request.urlopen(stats_url, timeout=10) as response:
            stats = json.loads(response.read())
    finally:
        server.stop()
    # the same load on the constant-answer server: what the client and HTTP alone cost
    floor = Contender("floor-overload", [sys.executable, "floor_server.py"], workdir, env)
    try:
        floor.wait_ready(body.read_bytes())
        floor_result = hey(floor.url, body, connections, requests=requests, timeout=5)
    finally:
        floor.stop()
    statuses: dict[str, int] = result["statuses"]  # type: ignore[assignment]
    series = stats["series"]
    busy = [p99 for p99, n in zip(series["p99_ms"], series["requests"], strict=True) if n]
    return {
        "connections": connections,
        "requests": requests,
        "deadline_ms": deadline * 1e3,
        "max_queue": queue,
        "statuses": statuses,
        "answered": sum(statuses.values()),
        "connection_errors": result["connection_errors"],
        "client_slowest_ms": result["slowest_ms"],
        "client_p99_ms": result["p99_ms"],
        "server_responses": stats["responses"],
        "server_in_flight_after": stats["in_flight"],
        "server_worst_second_p99_ms": max(busy, default=0.0),
        "only_200_503_504": set(statuses) <= {"200", "503", "504"},
        "floor_client_p99_ms": floor_result["p99_ms"],
        "floor_client_slowest_ms": floor_result["slowest_ms"],
    }


def batchpilot_command(max_queue: int = 10_000, workers: int = 1) -> list[str]:
    return [
        sys.executable, "-m", "batchpilot", "serve", "bench_model:Digits",
        "--max-batch-size", "64", "--max-wait", "0.005", "--timeout", "10",
        "--max-queue", str(max_queue), "--workers", str(workers), "--port",
    ]  # fmt: skip


def table(cells: list[Cell]) -> str:
    lines = [
        "| connections | server | req/s | p50 ms | p99 ms | errors |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for connections in CONNECTIONS:
        for name in CONTENDERS:
            for c in cells:
                if (c.contender, c.connections) == (name, connections):
                    lines.append(
                        f"| {connections} | {name} | {c.rps:,.0f} | {c.p50_ms:.2f} | "
                        f"{c.p99_ms:.2f} | {c.errors} |"
                    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per cell (8)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; the median is kept (3)")
    parser.add_argument("--venv", type=Path, default=DEFAULT_VENV, help="the peers' venv")
    parser.add_argument("--only", nargs="*", choices=CONTENDERS, default=list(CONTENDERS))
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--plot", type=Path, default=None, help="PNG of req/s vs connections")
    parser.add_argument("--no-overload", action="store_true", help="skip the overload run")
    args = parser.parse_args(argv)
    if shutil.which("hey") is None:
        print("needs hey (apt-get install hey)", file=sys.stderr)
        return 2
    peer_python = ensure_venv(args.venv) if set(args.only) & set(PEERS) or args.plot else None
    workdir = Path(tempfile.mkdtemp(prefix="serve-bench-"))
    (workdir / "bench_model.py").write_text(textwrap.dedent(MODEL))
    scripts = {"litserve": LITSERVE, "rayserve": RAYSERVE, "fastapi": FASTAPI, "floor": FLOOR}
    for name, source in scripts.items():
        (workdir / f"{name}_server.py").write_text(textwrap.dedent(source))
    body = workdir / "body.json"
    image_body(body)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(workdir), os.environ.get("PYTHONPATH", "")]),
        "RAY_USAGE_STATS_ENABLED": "0",
        "OMP_NUM_THREADS": "1",
    }
    commands = {
        "batchpilot": batchpilot_command(),
        "batchpilot-2w": batchpilot_command(workers=2),
        "floor": [sys.executable, "floor_server.py"],
        **{name: [str(peer_python), f"{name}_server.py"] for name in PEERS},
    }
    servers: dict[str, Contender] = {}
    try:
        for name in args.only:
            servers[name] = Contender(name, commands[name], workdir, env)
        for server in servers.values():
            server.wait_ready(body.read_bytes())
            measure(server, body, 64, 2.0)  # warm-up
            server.pause()
        print(f"== {len(servers)} servers up; {args.rounds} rounds x {args.duration} s per cell")
        rounds: dict[tuple[str, int], list[Cell]] = {}
        for round_ in range(args.rounds):
            for connections in CONNECTIONS:
                for name, server in servers.items():
                    server.resume()
                    try:
                        cell = measure(server, body, connections, args.duration)
                    finally:
                        server.pause()
                    rounds.setdefault((name, connections), []).append(cell)
                    print(
                        f"round {round_ + 1} c={connections:<3} {name:<10} "
                        f"{cell.rps:>9,.0f} req/s  p50 {cell.p50_ms:7.2f} ms  "
                        f"p99 {cell.p99_ms:7.2f} ms  errors {cell.errors}",
                        flush=True,
                    )
    finally:
        for server in servers.values():
            server.stop()
    cells = [median_cell(group) for group in rounds.values()]
    print("\n" + table(cells))
    results: dict[str, object] = {
        "duration": args.duration,
        "rounds": args.rounds,
        "cells": [asdict(c) for c in cells],
    }
    if "batchpilot" in servers and not args.no_overload:
        capacity = max(c.rps for c in cells if c.contender == "batchpilot")
        results["overload"] = report = overload(workdir, body, capacity, env)
        print("\noverload:", json.dumps(report))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    if args.plot and peer_python is not None:
        data = workdir / "results.json"
        data.write_text(json.dumps(results))
        subprocess.run([str(peer_python), "-c", PLOT, str(data), str(args.plot)], check=True)
        print(f"plot: {args.plot}")
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
