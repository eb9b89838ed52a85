"""One statistics vocabulary: the fields every engine's snapshot shares (trio's ``*Statistics``).

Each engine's ``statistics()`` returns a frozen subclass of `Statistics` with its own
fields after these; the shared ideas have the same names and meanings everywhere, so
one dashboard, exporter or log line reads any engine. The seed ``get_stats()``
dictionaries are views of these snapshots.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["Statistics"]


@dataclass(frozen=True)
class Statistics:
    """What every engine measures, as plain values (never live internals).

    Attributes:
        name: the engine's name ("" when it has none).
        batches: batches finished (online batches, bulk chunks, buffer flushes,
            database insert calls).
        items: items in the finished batches.
        succeeded: items that got a result (or were delivered).
        failed: items that got an exception.
        current_batch_size: the size limit of the next batch.
        queue_depth: items waiting for a batch now (queued, buffered, read but
            unsettled).
        rate: items finished per second since the engine started (0 before).
    """

    name: str
    batches: int
    items: int
    succeeded: int
    failed: int
    current_batch_size: int
    queue_depth: int
    rate: float

    def as_dict(self) -> dict[str, Any]:
        """The snapshot as a plain dict (for JSON, logs and the seed views)."""
        return asdict(self)
