"""``serve --workers N`` seen from outside: one server, whichever worker answers.

Readiness means every worker's ``setup()`` is done; ``/stats`` and ``/metrics`` count
every worker's requests, so scrapes agree wherever their connections land.
"""

from __future__ import annotations

import collections
import concurrent.futures
import re
import time

import pytest


@pytest.mark.slow
def test_ready_means_every_worker_has_finished_setup(serve):
    """One worker is set up at once, the other 3 s later: /ready waits for both."""
    server = serve("serve_models:StaggeredSetup", "--workers", "2", env={"SERVE_TEST_DELAY": "3"})
    assert sum(line.startswith("ready ") for line in server.log_lines()) == 2
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(server.predict, range(60)))
    assert [r.status for r in replies] == [200] * 60
    assert server.get("/ready").json()["workers_set_up"] == 2
    assert server.terminate() == 0


@pytest.mark.slow
def test_stats_and_metrics_count_every_workers_requests(serve):
    server = serve("serve_models:WhoAmI", "--workers", "2")
    answered: collections.Counter[int] = collections.Counter()
    deadline = time.monotonic() + 30
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        while len(answered) < 2 or sum(answered.values()) < 200:
            assert time.monotonic() < deadline, f"only {answered} answered within 30 s"
            replies = list(pool.map(server.predict, range(40)))
            assert {r.status for r in replies} == {200}
            answered.update(r.json() for r in replies)
    total = sum(answered.values())
    server.wait_until(
        lambda: server.stats()["responses"] == {"200": total},
        what=f"/stats to count all {total} responses",
    )
    for _ in range(6):  # each scrape on a fresh connection, to either worker
        stats = server.stats()
        assert stats["responses"] == {"200": total}
        assert stats["batcher"]["succeeded"] == total
        per_worker = {w["pid"]: sum(w["responses"].values()) for w in stats["workers"]}
        assert per_worker == dict(answered)
        metrics = server.get("/metrics").body.decode()
        assert f'batchpilot_http_responses_total{{code="200"}} {float(total)}' in metrics
        succeeded = re.search(r'batchpilot_items_total\{[^}]*outcome="succeeded"\} (\S+)', metrics)
        assert succeeded and float(succeeded[1]) == total
    assert server.terminate() == 0
