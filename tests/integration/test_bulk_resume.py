"""A real bulk job process killed with SIGKILL mid-run, then rerun: 0 lost, 0 duplicated."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]

ITEMS = 400

# The child doubles ITEMS numbers in chunks of 10 on 2 threads, with a job file.
# It logs every item its batch function runs (to count executions across runs),
# says "done N" after each committed chunk, and, when STALL_AT is set, the chunk
# holding that item says "stalled" and blocks forever so the parent can kill the
# process mid-run. A worker thread says "stalled" while the consuming thread says
# "done N", so every line is one os.write (print writes the text and the newline
# separately: two threads could garble a line); the parent rejects any other line.
CHILD = textwrap.dedent(
    """
    import json, os, sys, threading
    from batchpilot.bulk import map_batches

    job, log_path, items = sys.argv[1], sys.argv[2], int(sys.argv[3])
    stall_at = int(os.environ.get("STALL_AT", -1))
    log = open(log_path, "a")
    lock = threading.Lock()

    def say(line):
        os.write(1, (line + "\\n").encode())  # one write per whole line

    def double(xs):
        if stall_at in xs:
            say("stalled")
            threading.Event().wait()
        with lock:
            log.write(" ".join(map(str, xs)) + "\\n")
            log.flush()
        return [x * 2 for x in xs]

    def report(progress):
        say(f"done {progress.done}")

    run = map_batches(double, range(items), batch_size=10, workers=2, job=job, on_progress=report)
    say("result " + json.dumps(list(run)))
    """
)
LINE = re.compile(r"(done \d+|stalled|result \[[\d, ]*\])\n")


def message(line: str) -> str:
    """A whole line of the child's, without its newline (it must be one the protocol knows)."""
    assert LINE.fullmatch(line), line
    return line[:-1]


def start_child(job: Path, log: Path, stall_at: int | None) -> subprocess.Popen[str]:
    env = dict(os.environ)
    if stall_at is not None:
        env["STALL_AT"] = str(stall_at)
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(job), str(log), str(ITEMS)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )


def logged_items(log: Path) -> list[int]:
    return [int(x) for line in log.read_text().splitlines() for x in line.split()]


@pytest.mark.parametrize("stall_at", [55, 233])
def test_sigkill_mid_run_then_rerun_loses_and_duplicates_nothing(
    tmp_path: Path, stall_at: int
) -> None:
    job, first_log, second_log = tmp_path / "job.sqlite", tmp_path / "1.log", tmp_path / "2.log"
    child = start_child(job, first_log, stall_at)
    assert child.stdout is not None
    seen_done, stalled = 0, False
    for line in map(message, child.stdout):  # wait for real progress, then for the stall
        if line.startswith("done "):
            seen_done = int(line.split()[1])
        stalled = stalled or line == "stalled"
        if stalled and seen_done >= stall_at // 10 * 10:
            break
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert child.returncode == -signal.SIGKILL

    with sqlite3.connect(job) as db:
        committed = db.execute("SELECT start, stop FROM chunks").fetchall()
    committed_items = {x for start, stop in committed for x in range(start, stop)}
    assert len(committed_items) >= stall_at // 10 * 10  # progress survived the kill
    assert len(committed_items) < ITEMS

    rerun = start_child(job, second_log, None)
    out, _ = rerun.communicate(timeout=30)
    assert rerun.returncode == 0
    *_, last = map(message, out.splitlines(keepends=True))
    results = json.loads(last.removeprefix("result "))
    assert results == [x * 2 for x in range(ITEMS)]  # 0 lost, 0 duplicated, in order
    rerun_items = logged_items(second_log)
    assert committed_items.isdisjoint(rerun_items)  # stored chunks were not run again
    assert sorted(committed_items | set(rerun_items)) == list(range(ITEMS))
    assert len(rerun_items) == len(set(rerun_items))
