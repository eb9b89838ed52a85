"""Benchmark: the cost of ``BatchStateManager.queue_entry`` and the flush rate.

Run from the repository root at normal priority::

    .venv/bin/python benchmarks/buffer.py            # 3 repeats
    .venv/bin/python benchmarks/buffer.py --quick    # fewer entries, 1 repeat
    .venv/bin/python benchmarks/buffer.py --dir /data/tmp   # journal on that disk

Modes: in memory; with the SQLite journal (WAL, ``synchronous=NORMAL``, survives
SIGKILL); with ``durability="fsync"`` (``synchronous=FULL``, survives power loss).

* ``queue_entry``: each call timed alone (``perf_counter_ns``) while the default
  manager (size 25, adaptive) flushes to a no-op callback on its own thread, as in
  production; mean, median and p99 in microseconds, the median over repeats.
* flush rate: ``N`` entries are buffered with no callback set, then a no-op
  callback is set and ``flush()`` drains them: entries and flushes per second,
  journal deletes included.

Put the journal on a real disk (``--dir``): on tmpfs an fsync costs nothing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from batchpilot.buffer import BatchProcessingConfig, BatchStateManager, BufferedEntry


@dataclass(frozen=True)
class Mode:
    label: str
    journal: bool
    durability: str
    entries: int


def rss_item(number: int) -> dict[str, Any]:
    return {
        "title": f"Item {number}",
        "link": f"https://example.org/feed/{number}",
        "summary": "A short summary of the item, about a hundred bytes long, like a real feed.",
    }


def discard(entries: list[BufferedEntry]) -> None:
    """A no-op flush callback."""


def new_manager(mode: Mode, folder: Path, run: int, **options: Any) -> BatchStateManager:
    journal = folder / f"{mode.durability}-{run}.db" if mode.journal else None
    return BatchStateManager(
        journal_path=journal,
        durability=mode.durability if mode.journal else "normal",  # type: ignore[arg-type]
        memory_reader=lambda: 10.0,
        **options,
    )


def time_queue_entry(mode: Mode, folder: Path, run: int) -> tuple[float, float, float]:
    """Mean, median and p99 of one queue_entry call, in microseconds."""
    costs = [0] * mode.entries
    items = [rss_item(n) for n in range(mode.entries)]
    clock = time.perf_counter_ns
    with new_manager(mode, folder, run, flush_callback=discard) as manager:
        queue = manager.queue_entry
        for n, item in enumerate(items):
            key = f"q{run}-{n}"
            started = clock()
            queue(item, "rss_feed", key)
            costs[n] = clock() - started
    micros = [cost / 1000 for cost in costs]
    p99 = statistics.quantiles(micros, n=100)[98]
    return statistics.fmean(micros), statistics.median(micros), p99


def flush_rate(mode: Mode, folder: Path, run: int) -> tuple[float, float]:
    """Entries and flushes per second when draining a full buffer to a no-op callback."""
    config = BatchProcessingConfig(max_buffer_size=mode.entries)
    with new_manager(mode, folder, 100 + run, flush_config=config) as manager:
        for n in range(mode.entries):
            manager.queue_entry(rss_item(n), "rss_feed", f"f{run}-{n}")
        started = time.perf_counter()
        manager.set_flush_callback(discard)
        assert manager.flush()
        elapsed = time.perf_counter() - started
        flushes = manager.get_detailed_stats()["counters"]["flushes"]
    return mode.entries / elapsed, flushes / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer entries, one repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dir", default=None, help="folder for the journal files")
    args = parser.parse_args()
    scale = 10 if args.quick else 1
    repeats = 1 if args.quick else args.repeats
    modes = [
        Mode("in memory", False, "normal", 50_000 // scale),
        Mode("journal, WAL synchronous=NORMAL", True, "normal", 10_000 // scale),
        Mode('journal, durability="fsync"', True, "fsync", 1_000 // scale),
    ]
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpus, {repeats} repeat(s)")
    print()
    print(
        "| mode | entries | queue_entry mean (us) | median (us) | p99 (us) "
        "| flush rate (entries/s) | flushes/s |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="bp-buffer-bench-") as tmp:
        folder = Path(tmp)
        for mode in modes:
            timings = [time_queue_entry(mode, folder, run) for run in range(repeats)]
            rates = [flush_rate(mode, folder, run) for run in range(repeats)]
            mean, median, p99 = (statistics.median(column) for column in zip(*timings, strict=True))
            entries_per_s, flushes_per_s = (
                statistics.median(column) for column in zip(*rates, strict=True)
            )
            print(
                f"| {mode.label} | {mode.entries:,} | {mean:.1f} | {median:.1f} | {p99:.1f} "
                f"| {entries_per_s:,.0f} | {flushes_per_s:,.0f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
