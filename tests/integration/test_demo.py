"""The demo end to end on a small scale: real model, real batcher, real bulk job, real SQLite."""

from __future__ import annotations

import io
import sqlite3
from pathlib import Path

import pytest

from batchpilot.cli import main
from batchpilot.cli.demo import DemoSizes, run_demo

pytest.importorskip("sklearn")
pytest.importorskip("sqlalchemy")


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_the_demo_reports_online_and_bulk_results(tmp_path: Path) -> None:
    out = io.StringIO()
    database = tmp_path / "scores.sqlite"
    report = run_demo(scale=0.02, database=database, out=out)
    text = out.getvalue()

    work = DemoSizes().scaled(0.02)
    assert report.accuracy > 0.9
    online = [r for r in report.rows if r.part == "online"]
    assert [r.items for r in online] == [
        work.threads * work.requests_per_thread,
        work.threads * work.requests_per_thread,
        work.tasks * work.requests_per_task,
        work.requests_per_thread,
    ]
    assert all(r.rate > 0 and r.p50_ms is not None for r in online)
    assert report.row("online", "@batch, asyncio").mean_batch > 1  # requests were batched
    assert report.row("bulk", "map_batches").items == work.bulk_items
    with sqlite3.connect(database) as db:
        (stored,) = db.execute("SELECT count(*) FROM predictions").fetchone()
        labels = {label for (label,) in db.execute("SELECT DISTINCT label FROM predictions")}
    assert stored == report.rows_in_database == work.bulk_items
    assert labels <= set(range(10)) and len(labels) > 5
    for expected in ("online serving:", "bulk scoring:", "@batch, threads", "speed-up over"):
        assert expected in text
    assert f"{work.bulk_items:,} predictions stored in {database}" in text


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_batchpilot_demo_command_runs_the_demo(tmp_path: Path, capsys) -> None:
    database = tmp_path / "demo.sqlite"
    assert main(["demo", "--scale", "0.01", "--output", str(database)]) == 0
    assert "speed-up over unbatched" in capsys.readouterr().out
    assert database.exists()


def test_demo_rejects_a_non_positive_scale(capsys) -> None:
    assert main(["demo", "--scale", "0"]) == 2
    assert "expected a positive number" in capsys.readouterr().err
    with pytest.raises(ValueError, match="scale must be > 0"):
        run_demo(scale=-1)
