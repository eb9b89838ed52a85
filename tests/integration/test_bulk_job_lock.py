"""Two real processes on one job file: the second gets "in use by pid N", never interleaves."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]

# Doubles range(100) in chunks of 10 with a job file; with STALL, the chunk holding
# item 50 blocks forever once 5 chunks are committed, so the process holds the job.
CHILD = textwrap.dedent(
    """
    import json, sys, threading
    from batchpilot.bulk import JobInUseError, map_batches

    job, stall = sys.argv[1], sys.argv[2] == "stall"

    def double(xs):
        if stall and 50 in xs:
            print("holding", flush=True)
            threading.Event().wait()
        return [x * 2 for x in xs]

    try:
        run = map_batches(double, range(100), batch_size=10, workers=1, job=job)
        print("result", json.dumps(list(run)), flush=True)
    except JobInUseError as error:
        print("in-use", error.pid, str(error), flush=True)
    """
)


def start(job: Path, mode: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(job), mode], stdout=subprocess.PIPE, text=True
    )


def test_the_second_process_is_refused_while_the_first_holds_the_job(tmp_path: Path) -> None:
    job = tmp_path / "job.sqlite"
    holder = start(job, "stall")
    assert holder.stdout is not None
    assert holder.stdout.readline() == "holding\n"
    with sqlite3.connect(job) as db:
        before = db.execute("SELECT start, stop FROM chunks ORDER BY start").fetchall()
    db.close()

    second = start(job, "run")
    out, _ = second.communicate(timeout=30)
    assert second.returncode == 0
    word, pid, message = out.split(" ", 2)
    assert (word, int(pid)) == ("in-use", holder.pid)
    assert f"job file {job} is in use by pid {holder.pid}" in message
    with sqlite3.connect(job) as db:
        assert db.execute("SELECT start, stop FROM chunks ORDER BY start").fetchall() == before
    db.close()

    holder.send_signal(signal.SIGKILL)  # the OS drops the lock with the process
    holder.wait()
    third = start(job, "run")
    out, _ = third.communicate(timeout=30)
    assert json.loads(out.removeprefix("result ")) == [x * 2 for x in range(100)]
