"""The ASGI app mounted in Ray Serve (``@serve.ingress``) on a local Ray instance.

The scenario runs in its own Python process (Ray's runtime is process-global),
bounded by a timeout: two replicas behind Ray's HTTP proxy on 127.0.0.1, under a
route prefix; it prints what it saw as one ``RESULT {json}`` line.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("ray.serve")

SCENARIO = r"""
import concurrent.futures, json, sys, urllib.request
import ray
from ray import serve
from batchpilot import serve as bp_serve

port = int(sys.argv[1])
ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
serve.start(http_options={"host": "127.0.0.1", "port": port})


@serve.deployment(num_replicas=2, ray_actor_options={"num_cpus": 0.5})
@serve.ingress(bp_serve.app("serve_models:Scaler", max_batch_size=16))
class Scaled:
    pass


serve.run(Scaled.bind(), route_prefix="/scaled")
base = f"http://127.0.0.1:{port}/scaled"


def post(x):
    request = urllib.request.Request(
        base + "/predict", json.dumps({"x": x}).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


with concurrent.futures.ThreadPoolExecutor(8) as pool:
    outputs = list(pool.map(post, range(64)))
with urllib.request.urlopen(base + "/ready", timeout=30) as response:
    ready = json.loads(response.read())
with urllib.request.urlopen(base + "/metrics", timeout=30) as response:
    metrics = response.read().decode()
print("RESULT", json.dumps({"outputs": outputs, "ready": ready, "metrics": metrics}), flush=True)
serve.shutdown()
ray.shutdown()
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_the_app_serves_behind_ray_serve_replicas(tmp_path):
    log = tmp_path / "model.log"
    here = Path(__file__).parent
    done = subprocess.run(
        [sys.executable, "-c", SCENARIO, str(_free_port())],
        capture_output=True,
        text=True,
        timeout=200,
        cwd=tmp_path,
        env={
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(here), os.environ.get("PYTHONPATH", "")]),
            "SERVE_TEST_LOG": str(log),
            "RAY_USAGE_STATS_ENABLED": "0",
        },
    )
    assert done.returncode == 0, done.stderr[-3000:]
    [result] = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    seen = json.loads(result.removeprefix("RESULT "))
    assert seen["outputs"] == [{"y": 10.0 * x} for x in range(64)]
    assert seen["ready"]["ready"] is True
    assert "batchpilot_batch_size_count" in seen["metrics"]
    setups = {line for line in log.read_text().splitlines() if line.startswith("setup")}
    assert len(setups) == 2  # one setup() per replica process
