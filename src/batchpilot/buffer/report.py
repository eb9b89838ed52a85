"""The seed's global report: the functions over the registry of live managers.

The managers join and leave the registry (`registry`); this module only reads it.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from typing import Any

from .manager import BatchStateManager
from .registry import members

__all__ = [
    "get_batch_performance_report",
    "live_managers",
    "log_batch_performance_summary",
]

_log = logging.getLogger("batchpilot.buffer")


def live_managers() -> list[BatchStateManager]:
    """The managers the global report covers: created, not closed, not collected."""
    managers: list[BatchStateManager] = members()
    return sorted(managers, key=lambda manager: manager.name)


def get_batch_performance_report() -> dict[str, Any]:
    """Detailed stats of every live manager plus totals across them.

    Returns:
        ``{"generated_at": unix time, "manager_count": n, "totals": {...},
        "managers": [manager.get_detailed_stats(), ...]}``.
    """
    reports = [manager.get_detailed_stats() for manager in live_managers()]
    totals: Counter[str] = Counter()
    for report in reports:
        totals.update(report["counters"])
        totals["buffered"] += report["buffer_state"]["total_buffered"]
    return {
        "generated_at": time.time(),
        "manager_count": len(reports),
        "totals": dict(totals),
        "managers": reports,
    }


def log_batch_performance_summary(
    logger: logging.Logger | None = None, level: int = logging.INFO
) -> dict[str, Any]:
    """Log one line for all live managers and one per manager; return the report."""
    log = logger or _log
    report = get_batch_performance_report()
    totals = report["totals"]
    log.log(
        level,
        "batch buffers: %d live, %d queued, %d flushed, %d buffered, %d failed flushes",
        report["manager_count"],
        totals.get("entries_queued", 0),
        totals.get("entries_flushed", 0),
        totals.get("buffered", 0),
        totals.get("failed_flushes", 0),
    )
    for stats in report["managers"]:
        perf = stats["performance"]
        log.log(
            level,
            "%s: %d buffered, threshold %d, %.2f eps, %.1f ms per flush, health %s",
            stats["name"],
            stats["buffer_state"]["total_buffered"],
            stats["buffer_state"]["current_size_threshold"],
            perf["throughput_eps"],
            perf["avg_processing_time_ms"],
            stats["system_health"]["status"],
        )
    return report
