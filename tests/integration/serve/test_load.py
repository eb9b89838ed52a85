"""Behaviour under load, against a real server: full queue, deadlines, priority, isolation.

The model ``serve_models.slow`` is an ``async def`` that logs each item it runs and
then sleeps, so a test can hold the single batch slot busy and queue requests
behind it; the server's ``/stats`` (``in_flight``) tells when they have arrived.
"""

from __future__ import annotations

import concurrent.futures
import time


def _in_flight(server, n):
    return lambda: server.stats()["in_flight"] >= n


def test_full_queue_is_503_with_retry_after_at_once(serve):
    server = serve(
        "serve_models:slow", "--max-batch-size", "1", "--max-queue", "2",
        env={"SERVE_TEST_DELAY": "1.0"},
    )  # fmt: skip
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        running = pool.submit(server.predict, "running")
        server.wait_until(lambda: "run running" in server.log_lines(), what="the first batch")
        queued = [pool.submit(server.predict, f"queued{i}") for i in range(2)]
        server.wait_until(_in_flight(server, 3), what="two queued requests")
        refused = [server.predict(f"extra{i}") for i in range(5)]
        assert {r.status for r in refused} == {503}
        assert all(r.headers["retry-after"] == "1" for r in refused)
        assert max(r.seconds for r in refused) < 0.5  # answered at once, not after the batch
        assert "queue full" in refused[0].json()["error"]
        assert running.result(10).status == 200
        assert [q.result(10).status for q in queued] == [200, 200]
    assert server.stats()["rejected"] == 5
    assert not any("extra" in line for line in server.log_lines())


def test_request_deadline_is_504_and_the_item_never_runs(serve):
    server = serve("serve_models:slow", "--max-batch-size", "1", env={"SERVE_TEST_DELAY": "1.0"})
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        running = pool.submit(server.predict, "running")
        server.wait_until(lambda: "run running" in server.log_lines(), what="the first batch")
        late = server.predict("late", {"X-Request-Timeout": "0.2"})
        assert late.status == 504
        assert 0.15 < late.seconds < 0.6
        assert "deadline of 0.2 s" in late.json()["error"]
        assert running.result(10).status == 200
    # the slot is free again: an item that ran late would show up in the log now
    assert server.predict("after").status == 200
    assert "run late" not in server.log_lines()
    assert server.stats()["timed_out"] == 1


def test_timeout_option_applies_to_every_request(serve):
    server = serve(
        "serve_models:slow", "--max-batch-size", "1", "--timeout", "0.3",
        env={"SERVE_TEST_DELAY": "0.8"},
    )  # fmt: skip
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        first = pool.submit(server.predict, "first")
        server.wait_until(lambda: "run first" in server.log_lines(), what="the first batch")
        second = server.predict("second")
        assert second.status == 504 and second.seconds < 0.8
        # the first request started before its deadline but ran past it: 504 too
        assert first.result(10).status == 504
    time.sleep(0.9)  # the running batch ends; the expired second item must not start
    assert "run second" not in server.log_lines()


def test_bad_headers_are_400(serve):
    server = serve("serve_models:double")
    assert server.predict(1, {"X-Priority": "urgent"}).status == 400
    assert server.predict(1, {"X-Request-Timeout": "soon"}).status == 400
    assert server.predict(1, {"X-Request-Timeout": "-1"}).status == 400


def test_high_priority_requests_are_served_first(serve):
    server = serve("serve_models:slow", "--max-batch-size", "2", env={"SERVE_TEST_DELAY": "0.5"})
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        first = pool.submit(server.predict, "first")
        server.wait_until(lambda: "run first" in server.log_lines(), what="the first batch")
        normal = [pool.submit(server.predict, f"normal{i}") for i in range(6)]
        server.wait_until(_in_flight(server, 7), what="six queued normal requests")
        high = [pool.submit(server.predict, f"high{i}", {"X-Priority": "high"}) for i in range(2)]
        server.wait_until(_in_flight(server, 9), what="two queued high requests")
        replies = [f.result(15) for f in [first, *normal, *high]]
    assert {r.status for r in replies} == {200}
    order = [line.split()[1] for line in server.log_lines() if line.startswith("run ")]
    assert order[0] == "first"
    assert sorted(order[1:3]) == ["high0", "high1"]  # the very next batch
    assert sorted(order[3:]) == [f"normal{i}" for i in range(6)]


def test_a_failing_item_gets_500_alone(serve):
    server = serve("serve_models:fail_negative")
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        warm = pool.submit(server.predict, 0)  # holds the slot while the rest queue
        server.wait_until(_in_flight(server, 1), what="the first request")
        rest = [pool.submit(server.predict, x) for x in (1, -1, 2, 3)]
        server.wait_until(_in_flight(server, 5), what="four queued requests")
        replies = [f.result(10) for f in rest]
    assert warm.result(10).json() == 1
    assert [r.status for r in replies] == [200, 500, 200, 200]
    assert [replies[i].json() for i in (0, 2, 3)] == [2, 3, 4]
    assert replies[1].json() == {"error": "ValueError: negative input"}
    stats = server.stats()["batcher"]
    assert stats["failed_batches"] >= 1 and stats["failed"] == 1 and stats["succeeded"] == 4
