"""The endpoints of a real ``batchpilot serve`` process, and what it does with bad input."""

from __future__ import annotations

import concurrent.futures
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent


@pytest.mark.parametrize("target", ["serve_models:double", "serve_models:adouble"])
def test_predict_answers_one_output_per_input(serve, target):
    server = serve(target)
    reply = server.predict(21)
    assert (reply.status, reply.json()) == (200, 42)
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        replies = list(pool.map(server.predict, range(64)))
    assert [r.json() for r in replies] == [2 * i for i in range(64)]
    assert server.stats()["batcher"]["items"] == 65


def test_model_class_uses_setup_decode_and_encode(serve):
    server = serve("serve_models:Scaler")
    reply = server.predict({"x": 4})
    assert (reply.status, reply.json()) == (200, {"y": 40.0})
    assert len([line for line in server.log_lines() if line.startswith("setup")]) == 1


def test_undecodable_input_is_422_with_one_line(serve):
    server = serve("serve_models:Scaler")
    bad_json = server.post("/predict", b"{not json")
    assert bad_json.status == 422
    assert "not JSON" in bad_json.json()["error"]
    assert "\n" not in bad_json.json()["error"]
    bad_shape = server.predict({"z": 1})
    assert bad_shape.status == 422
    assert bad_shape.json()["error"] == "cannot decode the input: KeyError: 'x'"


def test_health_ready_metrics_and_stats(serve):
    server = serve("serve_models:double")
    assert server.get("/health").json() == {"status": "ok"}
    ready = server.get("/ready")
    assert ready.status == 200 and ready.json()["ready"] is True
    for i in range(5):
        server.predict(i)
    metrics = server.get("/metrics")
    assert metrics.status == 200
    text = metrics.body.decode()
    assert 'batchpilot_batch_size_count{engine="online",name="double"}' in text
    assert "batchpilot_item_latency_seconds_bucket" in text
    assert 'batchpilot_http_responses_total{code="200"} 5.0' in text
    assert "batchpilot_http_rejected_total 0.0" in text
    stats = server.stats()
    assert stats["responses"] == {"200": 5}
    assert stats["batcher"]["succeeded"] == 5
    assert server.get("/nowhere").status == 404
    assert server.get("/predict").status == 405
    assert server.post("/health", b"").status == 405


def test_stats_and_metrics_say_why_batches_closed(serve):
    server = serve("serve_models:double")
    for i in range(5):
        assert server.predict(i).status == 200
    batcher = server.stats()["batcher"]
    # One caller at a time: each batch is the one item a free worker found waiting.
    assert batcher["close_reasons"] == {"idle_worker": batcher["batches"]}
    assert (batcher["cost"], batcher["padded_cost"]) == (5, 5)  # no cost: items
    assert (batcher["padded_fraction"], batcher["oom_splits"], batcher["cost_cap"]) == (0, 0, None)
    text = server.get("/metrics").body.decode()
    closed = 'batchpilot_batches_closed_total{engine="online",name="double",reason="idle_worker"}'
    assert f"{closed} {float(batcher['batches'])}" in text
    assert 'batchpilot_batch_padded_fraction{engine="online",name="double"} 0.0' in text
    assert 'batchpilot_oom_splits_total{engine="online",name="double"} 0.0' in text


def test_ready_is_false_until_setup_is_done(serve):
    server = serve("serve_models:SlowSetup", env={"SERVE_TEST_DELAY": "1.5"}, wait_for="/health")
    assert server.get("/health").status == 200
    assert server.get("/ready").json()["setup_done"] is False
    early = server.predict(1)
    assert early.status == 503 and early.headers["retry-after"] == "1"
    server.wait_until(lambda: server.get("/ready").status == 200, what="setup to finish")
    assert server.predict(1).status == 200


def test_failing_setup_exits_1_with_the_error(serve):
    server = serve("serve_models:BrokenSetup", wait_for=None)
    assert server.process.wait(20) == 1
    assert server.process.stderr.read().count(b"setup() failed: RuntimeError: no weights here") == 1


def test_bad_target_is_a_usage_error(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "batchpilot", "serve", "serve_models:nothing"],
        capture_output=True,
        timeout=30,
        cwd=tmp_path,
        env={
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
        },
    )
    assert done.returncode == 2
    assert "has no attribute 'nothing'" in done.stderr.decode()
