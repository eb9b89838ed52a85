"""Two real processes on one buffer journal: the second is refused, so nothing is delivered twice.

The holder queues 20 entries with a journal and waits, never flushing. A second
process that opens the journal meanwhile must be refused with the file and the
holder's pid (before, it recovered the holder's entries and delivered them, and
the holder delivered them again on its own close). After a SIGKILL of the
holder, whose lock file stays behind, a third process takes the lock over and
delivers the 20 entries, each once.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]

CHILD = textwrap.dedent(
    """
    import json, sys, threading
    from batchpilot.buffer import BatchProcessingConfig, BatchStateManager, JournalInUseError

    journal, mode = sys.argv[1], sys.argv[2]
    delivered = []
    config = BatchProcessingConfig(
        enable_adaptive_sizing=False, size_threshold=1000, time_threshold_seconds=3600
    )
    try:
        manager = BatchStateManager(
            flush_config=config,
            flush_callback=lambda entries: delivered.extend(e.entry for e in entries),
            journal_path=journal,
            memory_reader=lambda: 10.0,
        )
    except JournalInUseError as error:
        print("in-use", error.pid, str(error), flush=True)
        sys.exit(0)
    if mode == "hold":
        for n in range(20):
            manager.queue_entry(n, "events", f"id-{n}")
        print("holding", flush=True)
        threading.Event().wait()
    manager.close()
    print("delivered", json.dumps(sorted(delivered)), flush=True)
    """
)


def start(journal: Path, mode: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(journal), mode], stdout=subprocess.PIPE, text=True
    )


def test_a_second_process_on_a_journal_in_use_is_refused_and_delivers_nothing(
    tmp_path: Path,
) -> None:
    journal = tmp_path / "events.journal"
    holder = start(journal, "hold")
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == "holding\n"

        second = start(journal, "deliver")
        out, _ = second.communicate(timeout=30)
        assert second.returncode == 0
        word, pid, message = out.split(" ", 2)
        assert (word, int(pid)) == ("in-use", holder.pid)
        assert f"journal {journal} is in use by pid {holder.pid}" in message
    finally:
        holder.send_signal(signal.SIGKILL)  # the OS drops the lock with the process
        holder.wait()
    assert Path(f"{journal}.lock").read_text() == str(holder.pid)  # stale, left behind

    third = start(journal, "deliver")
    out, _ = third.communicate(timeout=30)
    assert third.returncode == 0
    assert json.loads(out.removeprefix("delivered ")) == list(range(20))
    assert not Path(f"{journal}.lock").exists()  # released on close
