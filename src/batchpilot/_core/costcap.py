"""The cost cap of the next batch, shared by the online engine and bulk runs.

With ``cost=`` a batch is bounded by ``max_batch_size`` items and by a cost cap
(`CostCap.cap`): the lowest of

- the user's budget, ``max_batch_cost``;
- the out-of-memory cap (`OutOfMemoryBackoff`), lowered by out-of-memory errors;
- with a size controller (`Fixed`, `AIMD`, `TargetLatency` or your own), what it
  learnt: the controller works in cost units, not items. It observes each batch's
  cost (its padded cost when ``padded``), duration and success, and its
  ``next_size()`` is the cost the next batch may have, so ``TargetLatency`` learns
  the budget that meets its target however many items that is.

An engine tells it of every call of the batch function (`CostCap.on_call`: out of
memory or not, an item alone included) and of every finished batch
(`CostCap.on_batch`). It is thread-safe and picklable (a process, Dask or Ray worker
holds its own copy).
"""

from __future__ import annotations

import math
import threading
from typing import Any

from .oom import OomPredicate, OutOfMemoryBackoff, is_out_of_memory, release_cached_memory
from .sizing import SizeController

__all__ = ["CostCap"]


class CostCap:
    """The cost a batch may have now: budget, out-of-memory cap and controller together.

    Args:
        max_batch_cost: the user's budget (infinity: none; the controller and the
            out-of-memory cap still bound a batch).
        controller: sizes batches in cost units, or None (the budget alone).
        is_oom: which exceptions mean out of memory (default `is_out_of_memory`).
    """

    def __init__(
        self,
        max_batch_cost: float,
        controller: SizeController | None = None,
        is_oom: OomPredicate | None = None,
    ) -> None:
        self.controller = controller  # learns the cap in cost units, or None
        self.is_oom = is_oom or is_out_of_memory  # which errors mean out of memory
        self.backoff = OutOfMemoryBackoff(max_batch_cost)  # the cap after OOM errors
        self._lock = threading.Lock()  # shared by an engine's workers

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    @property
    def cap(self) -> float:
        """The cost the next batch may have (its first item joins whatever it costs)."""
        with self._lock:
            cap = self.backoff.cap
            if self.controller is not None:
                cap = min(cap, self.controller.next_size())
        return cap

    @property
    def splits(self) -> int:
        """Calls that ran out of memory, each one a split (or an item failing alone)."""
        return self.backoff.splits

    def on_call(self, cost: float, error: BaseException | None) -> bool:
        """One call of the batch function on a batch of ``cost`` returned (``error``
        None) or raised ``error``; returns whether it ran out of memory.

        Out of memory lowers the cap below ``cost`` and empties torch's CUDA cache,
        whether the batch is then split or was one item (which fails alone).
        """
        if error is None:
            with self._lock:
                self.backoff.on_success()
            return False
        if not self.is_oom(error):
            return False
        with self._lock:
            self.backoff.on_out_of_memory(cost)
        release_cached_memory()
        return True

    def on_batch(self, cost: float, duration: float, ok: bool) -> None:
        """A batch of ``cost`` (padded cost when padded) finished in ``duration``
        seconds (its splits included); ``ok``: its first call succeeded."""
        if self.controller is not None:
            with self._lock:
                self.controller.observe(math.ceil(cost), duration, ok)

    def __repr__(self) -> str:
        return f"CostCap(cap={self.cap}, controller={self.controller!r}, backoff={self.backoff!r})"
