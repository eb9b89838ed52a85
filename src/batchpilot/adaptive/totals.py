"""Running totals over every call of an adaptive processor or manager, and their stats view."""

from __future__ import annotations

import threading
from collections import Counter, deque
from typing import Any

from ..bulk import HISTORY_LIMIT

__all__ = ["Totals"]


class Totals:
    """Running totals over every call of one processor or manager (thread-safe)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.items = 0
        self.failed = 0
        self.batches = 0
        self.duration = 0.0
        self.history: deque[int] = deque(maxlen=HISTORY_LIMIT)
        self.error_types: Counter[str] = Counter()

    def add(self, run_stats: dict[str, Any]) -> None:
        with self.lock:
            self.items += run_stats["items_processed"]
            self.failed += run_stats["items_failed"]
            self.batches += run_stats["chunks_processed"]
            self.duration += run_stats["elapsed_seconds"]
            self.history.extend(run_stats["batch_size_history"])
            self.error_types.update(run_stats["error_types"])

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {
                "total_items_processed": self.items,
                "total_success_count": self.items - self.failed,
                "total_error_count": self.failed,
                "total_duration": self.duration,
                "batch_count": self.batches,
                "avg_batch_size": self.items / self.batches if self.batches else 0.0,
                "items_per_second": self.items / self.duration if self.duration > 0 else 0.0,
                "error_rate": self.failed / self.items if self.items else 0.0,
                "error_types": dict(self.error_types),
                "batch_size_history": list(self.history),
            }
