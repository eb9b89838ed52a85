"""The live dashboard in a real headless Chromium while load runs against a real server.

The page (``GET /``) polls ``/stats`` and writes each chart's number of points and
its largest value into ``data-points``/``data-max`` attributes; Chromium runs the
page's script and dumps the DOM, and saves a screenshot under the test's tmp dir.
Chromium is the Debian package ``chromium`` (.ci/run installs it); without it the
test is skipped, except under CI, where that is a failure.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
import time

import pytest

CHARTS = ("throughput", "latency", "batch", "queue")


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("CI requires chromium for the dashboard test", pytrace=False)
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return found


def _headless(chromium: str, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    command = [
        chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--no-first-run", "--window-size=1200,720", "--virtual-time-budget=3000", *args, url,
    ]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def _load(server, stop: threading.Event, deadline: float) -> None:
    for i in range(100_000):
        if stop.is_set() or time.monotonic() > deadline:
            return
        server.predict(i)


@pytest.mark.slow
def test_dashboard_charts_hold_data_points_under_load(serve, tmp_path):
    chromium = _chromium()
    server = serve("serve_models:double")
    stop = threading.Event()
    clients = [
        threading.Thread(target=_load, args=(server, stop, time.monotonic() + 30)) for _ in range(4)
    ]
    for client in clients:
        client.start()
    try:
        server.wait_until(
            lambda: len(server.stats()["series"]["t"]) >= 3, what="three seconds of samples"
        )
        url = f"http://127.0.0.1:{server.port}/"
        dom = _headless(chromium, url, "--dump-dom").stdout
        shot = tmp_path / "dashboard.png"
        _headless(chromium, url, f"--screenshot={shot}")
    finally:
        stop.set()
        for client in clients:
            client.join(10)
    charts = {
        name: (int(points), float(peak))
        for name, points, peak in re.findall(
            r'id="(\w+)" data-points="(\d+)" data-max="([\d.eE+-]+)"', dom
        )
    }
    assert set(charts) == set(CHARTS), dom[:2000]
    assert all(points >= 3 for points, _ in charts.values()), charts
    assert charts["throughput"][1] > 0 and charts["batch"][1] >= 1
    assert 'id="status">ready' in dom
    # Why batches close: every finished batch is counted under a reason; no cost, so
    # no padding, and no out-of-memory split.
    closing = re.search(
        r'id="closing" data-batches="(\d+)" data-reasons="([\w:,]*)" '
        r'data-padded="([\d.eE+-]+)" data-oom="(\d+)"',
        dom,
    )
    assert closing is not None, dom[:2000]
    batches, reasons, padded, oom = closing.groups()
    counts = {
        reason: int(n) for reason, n in (pair.split(":") for pair in reasons.split(",") if pair)
    }
    assert int(batches) == sum(counts.values()) >= 3, counts
    assert set(counts) <= {"count", "idle_worker", "max_wait"}, counts
    assert float(padded) == 0 and int(oom) == 0
    assert "<td>idle_worker</td>" in dom or "<td>count</td>" in dom or "<td>max_wait</td>" in dom
    assert shot.stat().st_size > 10_000  # a rendered page, not a blank one
