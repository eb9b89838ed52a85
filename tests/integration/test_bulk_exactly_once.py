"""Exactly once into a real database: a bulk job process is killed with SIGKILL at random points.

The child runs ``map_batches(db.bulk_writer("squares", square), enumerate(numbers),
job=...)`` on two threads with ``batch_size="auto"``, so every restart cuts the
chunks that were running anew (a fresh size controller starts at one item). The
parent kills it five times per database, at seeded random points spread over
the job's progress, two kinds of them:

* ``stored``: the first chunk whose rows are committed in the table at or past
  the point reports ``holding A B`` and then blocks before returning to the
  engine, so its rows are in the database but not yet in the job file, the
  window an exactly-once writer must survive (the other thread's chunk is
  wherever it is);
* ``done``: a ``done N`` progress line (sent after the job file committed a
  chunk) at or past the point, with both threads mid-chunk.

Each restart uses the same job file; a last run completes. Every item must then
be in the table once, with its own result, and no other row.

The pipe carries whole lines only: each line is one ``os.write`` of a few bytes,
which a pipe never splits or interleaves with another thread's write (``print``
writes the text and the newline separately, so two threads could produce
``7ack``-like garbage). The parent fails on any line it does not recognise.
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import sqlalchemy as sa

from batchpilot.db import Database

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

ITEMS = 1500
OFFSET = 1000  # item i of the input is the number OFFSET + i, so ids and items differ
KILLS = 5  # per database: 10 random kill points in all
LINE = re.compile(r"(done \d+|holding \d+ \d+|finished \d+ \d+ [01])\n")

CHILD = textwrap.dedent(
    """
    import os, sys, threading, time
    from batchpilot.bulk import map_batches
    from batchpilot.db import Database

    job, url, items, offset, hold_at = sys.argv[1:3] + [int(a) for a in sys.argv[3:]]

    def say(line):
        os.write(1, (line + "\\n").encode())  # one write per whole line

    def square(numbers):
        time.sleep(0.002 * len(numbers))  # a function worth batching: chunks grow to ~50
        return [n * n for n in numbers]

    db = Database(url)
    db.create_table("squares", {"item_id": int, "square": int}, primary_key="item_id")
    writer = db.bulk_writer("squares", square, to_record=lambda n, sq: {"square": sq})

    def write(pairs):
        ids = writer(pairs)  # committed in the table
        if hold_at >= 0 and ids[-1] >= hold_at:
            say(f"holding {ids[0]} {ids[-1]}")
            threading.Event().wait()  # never returns: the job file never records it
        return ids

    run = map_batches(
        write, enumerate(range(offset, offset + items)), job=job, workers=2,
        on_progress=lambda progress: say(f"done {progress.done}"),
    )
    ids = list(run)
    say(f"finished {len(ids)} {len(run.failures)} {int(ids == list(range(items)))}")
    """
)


def run_child(job: Path, url: str, hold_at: int, kill_at_done: int | None) -> list[str]:
    """Run the child until it holds (``hold_at >= 0``), reports ``done >= kill_at_done``
    or finishes; SIGKILL it in the first two cases. Returns its whole lines."""
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(job), url, str(ITEMS), str(OFFSET), str(hold_at)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    lines: list[str] = []
    killed = False
    try:
        for line in child.stdout:
            assert LINE.fullmatch(line), f"not a whole protocol line: {line!r}"
            lines.append(line.strip())
            done = int(line.split()[1]) if line.startswith("done ") else -1
            if line.startswith("holding ") or (kill_at_done is not None and done >= kill_at_done):
                os.kill(child.pid, signal.SIGKILL)
                killed = True
                break
        if killed:
            # Lines already in the pipe; a line cut by the kill (no newline) is dropped.
            lines += [line.strip() for line in child.stdout if LINE.fullmatch(line)]
    finally:
        child.kill()
        child.wait(30)
    wanted = -signal.SIGKILL if hold_at >= 0 or kill_at_done is not None else 0
    assert child.returncode == wanted, lines[-5:]
    return lines


def stored_rows(url: str) -> list[tuple[int, int]]:
    with Database(url) as db, db.engine.connect() as connection:
        query = sa.text("SELECT item_id, square FROM squares ORDER BY item_id")
        return [(row[0], row[1]) for row in connection.execute(query)]


def kill_points(rng: random.Random) -> list[tuple[str, int]]:
    """One point in each fifth of the input, between 5 % and 90 % of it; 3 of each kind."""
    points = []
    for fifth in range(KILLS):
        low = max(fifth * ITEMS // KILLS, ITEMS // 20)
        high = min((fifth + 1) * ITEMS // KILLS - 1, ITEMS * 9 // 10)
        points.append(rng.randint(low, high))
    kinds = rng.sample(["stored", "stored", "stored", "done", "done"], KILLS)
    return list(zip(kinds, points, strict=True))


def test_sigkill_at_random_points_stores_every_item_once(db_url: str, tmp_path: Path) -> None:
    url, database = db_url, "sqlite" if db_url.startswith("sqlite") else "postgres"
    job = tmp_path / "squares.job"
    progress_at_kills: list[int] = []
    held_in_table = 0
    for kind, point in kill_points(random.Random(f"bulk-exactly-once-{database}")):
        if kind == "stored":
            lines = run_child(job, url, hold_at=point, kill_at_done=None)
            holding = next(line for line in lines if line.startswith("holding "))
            first, last = (int(word) for word in holding.split()[1:])
            chunk = set(range(first, last + 1))
            assert chunk <= {item_id for item_id, _ in stored_rows(url)}  # committed
            held_in_table += len(chunk)
        else:
            lines = run_child(job, url, hold_at=-1, kill_at_done=point)
        progress_at_kills.append(max([0] + [int(x.split()[1]) for x in lines if x[:5] == "done "]))
    lines = run_child(job, url, hold_at=-1, kill_at_done=None)
    assert lines[-1] == f"finished {ITEMS} 0 1"

    rows = stored_rows(url)
    assert len(rows) == ITEMS  # no duplicates, no extra rows
    assert rows == [(i, (OFFSET + i) ** 2) for i in range(ITEMS)]  # no losses, right results
    print(
        f"{database}: {KILLS} kills at progress {progress_at_kills}, "
        f"{held_in_table} rows committed before the job file knew them, {len(rows)} rows"
    )
