"""Exactly once into a real database: a buffer process is killed with SIGKILL at random points.

The child queues entries (uuids ``r<round>-<i>``) into a journaled buffer whose
flush callback is `Database.sink`, and acknowledges each on stdout once
``queue_entry`` returned. The parent kills it after a random number of
acknowledgements, restarts it (the new manager replays the journal, including
batches whose rows were committed just before the kill), five times, then lets
a last child drain the journal and exit cleanly. Every acknowledged entry must
then be in the table exactly once, and the journal empty.

The pipe carries whole lines only: the flush thread's ``replayed N`` and the main
thread's acknowledgements are each one ``os.write`` of a few bytes, which a pipe
never splits or interleaves (``print`` writes the text and the newline separately,
so the two threads once produced ``replayed 7ack r1-23``). The parent fails on any
line it does not recognise.
"""

from __future__ import annotations

import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import sqlalchemy as sa

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

KILLS = 5  # per database: 10 random kill points in all
LINE = re.compile(r"(ack r\d+-\d+|replayed \d+|drained \d+)\n")

CHILD = textwrap.dedent(
    """
    import os, sys
    from batchpilot.buffer import BatchProcessingConfig, BatchStateManager
    from batchpilot.db import Database

    journal, url, prefix = sys.argv[1], sys.argv[2], sys.argv[3]

    def say(line):
        os.write(1, (line + "\\n").encode())  # one write per whole line

    db = Database(url)
    db.create_table("events", {"entry_id": str, "n": int}, primary_key="entry_id")
    sink = db.sink("events", to_record=lambda item: {"n": item.entry["n"]})

    def write(batch):
        inserted = sink(batch)
        if len(inserted) < len(batch):
            say(f"replayed {len(batch) - len(inserted)}")

    config = BatchProcessingConfig(enable_adaptive_sizing=False, size_threshold=7)
    manager = BatchStateManager(
        flush_config=config, flush_callback=write, journal_path=journal,
        memory_reader=lambda: 10.0,
    )
    if prefix == "drain":
        assert manager.wait_idle(60)
        left = manager.close()
        say(f"drained {len(left)}")
        sys.exit(0)
    number = 0
    while True:
        uuid = f"{prefix}-{number}"
        if manager.queue_entry({"n": number}, "src", uuid):
            say(f"ack {uuid}")
        number += 1
    """
)


def run_and_kill(journal: Path, url: str, prefix: str, acks_wanted: int) -> list[str]:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(journal), url, prefix],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    lines: list[str] = []
    try:
        acks = 0
        for line in child.stdout:
            lines.append(line)
            acks += line.startswith("ack ")
            if acks >= acks_wanted:
                break
        os.kill(child.pid, signal.SIGKILL)
        lines.extend(child.stdout)  # acks already in the pipe
    finally:
        child.kill()
        child.wait(10)
    assert child.returncode == -signal.SIGKILL, lines[-5:]
    return messages(lines)


def messages(lines: list[str]) -> list[str]:
    """The child's whole lines, without newlines; each must be one the protocol knows.

    A last line cut short by the kill (no newline) is no message: its entry was
    never acknowledged.
    """
    whole = [line for line in lines if line.endswith("\n")]
    garbled = [line for line in whole if not LINE.fullmatch(line)]
    assert not garbled, garbled[:5]
    return [line[:-1] for line in whole]


def drain(journal: Path, url: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(journal), url, "drain"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return messages(done.stdout.splitlines(keepends=True))


def test_sigkill_at_random_points_stores_every_acknowledged_entry_once(
    db_url: str, tmp_path: Path
) -> None:
    url, database = db_url, "sqlite" if db_url.startswith("sqlite") else "postgres"
    journal = tmp_path / "buffer.journal"
    rng = random.Random(f"exactly-once-{database}")
    acknowledged: list[str] = []
    replayed = 0
    for round_number in range(KILLS):
        lines = run_and_kill(journal, url, f"r{round_number}", rng.randint(3, 120))
        acknowledged += [line[4:] for line in lines if line.startswith("ack ")]
        replayed += sum(int(line.split()[1]) for line in lines if line.startswith("replayed "))
    lines = drain(journal, url)
    assert "drained 0" in lines
    replayed += sum(int(line.split()[1]) for line in lines if line.startswith("replayed "))

    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.connect() as connection:
        stored = [row[0] for row in connection.execute(sa.text("SELECT entry_id FROM events"))]
    engine.dispose()
    assert len(stored) == len(set(stored))  # no duplicates
    assert set(acknowledged) <= set(stored)  # no losses
    queued_prefixes = {f"r{n}" for n in range(KILLS)}
    assert {uuid.split("-")[0] for uuid in stored} <= queued_prefixes
    with sqlite3.connect(journal) as db:
        assert db.execute("SELECT COUNT(*) FROM buffered_entries").fetchone() == (0,)
        assert db.execute("SELECT COUNT(*) FROM quarantined_entries").fetchone() == (0,)
    print(f"{database}: {len(acknowledged)} acknowledged, {len(stored)} stored, "
          f"{replayed} replayed rows skipped by the idempotent insert")  # fmt: skip
