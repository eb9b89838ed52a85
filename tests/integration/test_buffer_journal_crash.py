"""A real process queues entries with a journal, is killed with SIGKILL, and loses nothing.

The child acknowledges every entry on stdout once ``queue_entry`` returned (one
``os.write`` per whole line, so the flush thread's "stuck" cannot garble an
acknowledgement; the parent rejects any line it does not know). Its
flush callback writes flushed uuids to a sink file, and after 100 entries says
"stuck" and hangs (a stuck API), so a known part of the stream is unflushed,
part of it in flight, when the parent kills the child mid-stream. A new manager on the same journal
must then flush every acknowledged entry that the sink does not have.
"""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from batchpilot.buffer import BatchProcessingConfig, BatchStateManager, BufferedEntry

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]

CHILD = textwrap.dedent(
    """
    import os, sys, threading
    from batchpilot.buffer import BatchProcessingConfig, BatchStateManager

    journal, sink_path = sys.argv[1], sys.argv[2]
    sink = open(sink_path, "a", buffering=1)
    flushed = 0
    stuck = threading.Event()

    def say(line):
        os.write(1, (line + "\\n").encode())  # one write per whole line, from either thread

    def write(entries):
        global flushed
        if flushed >= 100:
            say("stuck")
            stuck.wait()  # the API hangs; this batch is in flight when we are killed
        for item in entries:
            sink.write(item.uuid + "\\n")
        flushed += len(entries)

    config = BatchProcessingConfig(enable_adaptive_sizing=False, size_threshold=10)
    manager = BatchStateManager(
        flush_config=config, flush_callback=write, journal_path=journal,
        memory_reader=lambda: 10.0,
    )
    number = 0
    while True:
        if manager.queue_entry({"n": number, "body": "x" * 50}, "rss_feed", f"id-{number}"):
            say(f"id-{number}")
        number += 1
    """
)


LINE = re.compile(r"(id-\d+|stuck)\n")


def messages(lines: list[str]) -> list[str]:
    """The child's whole lines, without newlines; each must be one the protocol knows.

    A last line cut short by the kill (no newline) is no message: its entry was
    never acknowledged.
    """
    whole = [line for line in lines if line.endswith("\n")]
    garbled = [line for line in whole if not LINE.fullmatch(line)]
    assert not garbled, garbled[:5]
    return [line[:-1] for line in whole]


def read_sink(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def test_sigkill_loses_no_acknowledged_entry(tmp_path: Path) -> None:
    journal = tmp_path / "buffer.db"
    sink = tmp_path / "sink.txt"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(journal), str(sink)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    raw: list[str] = []
    try:
        for line in child.stdout:  # until the flush hangs and 400 entries were acknowledged
            raw.append(line)
            if "stuck\n" in raw and len(raw) > 400:
                break
        os.kill(child.pid, signal.SIGKILL)
        raw.extend(child.stdout)  # acks already in the pipe
    finally:
        child.kill()
        child.wait(10)
    assert child.returncode == -signal.SIGKILL
    acknowledged = [line for line in messages(raw) if line.startswith("id-")]
    assert len(acknowledged) >= 400

    flushed_before = read_sink(sink)
    assert 100 <= len(flushed_before) < len(acknowledged)

    recovered: list[BufferedEntry] = []
    config = BatchProcessingConfig(enable_adaptive_sizing=False, size_threshold=10)
    with BatchStateManager(
        flush_config=config,
        flush_callback=recovered.extend,
        journal_path=journal,
        memory_reader=lambda: 10.0,
    ) as manager:
        assert manager.wait_idle(30)
        stats = manager.get_detailed_stats()
    recovered_ids = [item.uuid for item in recovered]

    assert set(acknowledged) <= set(flushed_before) | set(recovered_ids)
    assert not set(flushed_before) & set(recovered_ids)  # the hung batch never reached the sink
    assert len(recovered_ids) == len(set(recovered_ids))
    assert stats["counters"]["recovered_entries"] == len(recovered_ids)
    assert recovered[0].entry == {"n": int(recovered_ids[0][3:]), "body": "x" * 50}
    with sqlite3.connect(journal) as db:
        (left,) = db.execute("SELECT COUNT(*) FROM buffered_entries").fetchone()
    assert left == 0
