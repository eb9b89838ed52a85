"""A partitioned run's hooks for the CLI: `PartitionedRun.stop`, one `BatchRecord` per
partition for ``listeners``, and rows counted once (issue 23 item 5)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from batchpilot import sinks, sources
from batchpilot.bulk import map_batches


def _fails_on_negatives(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if any(row["x"] < 0 for row in rows):
        raise ValueError("negative")
    return rows


def _files(folder: Path, count: int) -> None:
    folder.mkdir()
    for i in range(count):
        rows = [{"x": -1}, {"x": i}, {"x": i + 100}]
        text = "".join(json.dumps(row) + "\n" for row in rows) + "not json\n"
        (folder / f"f{i}.jsonl").write_text(text)


def test_listeners_get_one_record_per_partition_and_rows_count_once(tmp_path: Path) -> None:
    _files(tmp_path / "in", 3)
    records: list[Any] = []
    run = map_batches(_fails_on_negatives, sources.jsonl(tmp_path / "in"),
                      listeners=[records.append], executor="serial")  # fmt: skip
    assert sum(len(batch) for batch in run) == 6
    # 4 lines per file: a malformed one, a failing one and two good ones, each counted once
    assert run.stats()["rows"] == 12 and run.stats()["rows_failed"] == 6
    assert [(r.size, r.succeeded, r.failed) for r in records] == [(4, 2, 2)] * 3
    assert records[0].error_types == {"invalid JSON (Expecting value": 1, "ValueError": 1}


def test_stop_from_on_progress_ends_the_run_without_success(tmp_path: Path) -> None:
    _files(tmp_path / "in", 5)
    out, job = tmp_path / "out", tmp_path / "job.sqlite"

    def stop_after_two(progress: Any) -> None:
        if progress.chunks == 2:
            run.stop("enough")

    run = map_batches(_fails_on_negatives, sources.jsonl(tmp_path / "in"), sink=sinks.jsonl(out),
                      job=str(job), executor="serial", on_progress=stop_after_two)  # fmt: skip
    assert len(list(run)) == 2
    assert run.stopped == "enough"
    assert not (out / "_SUCCESS").exists()
    resumed = map_batches(_fails_on_negatives, sources.jsonl(tmp_path / "in"),
                          sink=sinks.jsonl(out), job=str(job), executor="serial")  # fmt: skip
    resumed.wait()
    assert resumed.stats()["partitions_resumed"] == 2 and resumed.stopped is None
    assert (out / "_SUCCESS").exists()


def test_a_reopened_job_file_resumes_its_sink_before_any_partition_is_recorded(
    tmp_path: Path,
) -> None:
    # The driver died after a part was committed but before the job file recorded it.
    _files(tmp_path / "in", 2)
    out, job = tmp_path / "out", str(tmp_path / "job.sqlite")
    first = map_batches(_fails_on_negatives, sources.jsonl(tmp_path / "in"), sink=sinks.jsonl(out),
                        job=job, executor="serial")  # fmt: skip
    next(first)  # partition 0 committed and recorded
    first.close()
    import sqlite3

    with sqlite3.connect(job) as db:
        db.execute("DELETE FROM partitions")  # as if killed between commit and record
    again = map_batches(_fails_on_negatives, sources.jsonl(tmp_path / "in"), sink=sinks.jsonl(out),
                        job=job, executor="serial")  # fmt: skip
    again.wait()
    assert (out / "_SUCCESS").exists()
    assert sorted(p.name for p in out.glob("part-*")) == ["part-00000.jsonl", "part-00001.jsonl"]
