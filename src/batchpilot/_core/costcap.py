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

It also measures what a batch's fixed time is worth in cost units
(`CostCap.overhead`, from a `LinearCostModel` of finished batches' durations
against their cost), with which the online engine picks tight batches of like
cost when not everything waiting fits (`batchpilot._core.cost.fastest_run`).

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
from .sizing import LinearCostModel, SizeController

__all__ = ["MIN_FIT_BATCHES", "CostCap"]

MIN_FIT_BATCHES = 8
"""Finished batches measured before `CostCap.overhead` is trusted."""


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
        self.durations = LinearCostModel()  # seconds against cost of recent batches
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
    def overhead(self) -> float | None:
        """A batch's fixed time in cost units (``fixed / per_cost`` of the fitted
        ``duration = fixed + per_cost * cost``), or None before `MIN_FIT_BATCHES`
        batches of at least two costs, or when cost does not add time."""
        with self._lock:
            fit = self.durations.fit() if len(self.durations) >= MIN_FIT_BATCHES else None
        if fit is None or fit[1] <= 0:
            return None
        return fit[0] / fit[1]

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
        with self._lock:
            if ok:
                self.durations.add(cost, duration)
            if self.controller is not None:
                self.controller.observe(math.ceil(cost), duration, ok)

    def __repr__(self) -> str:
        return f"CostCap(cap={self.cap}, controller={self.controller!r}, backoff={self.backoff!r})"
