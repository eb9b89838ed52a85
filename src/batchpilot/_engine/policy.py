"""The online engine's two measured decisions, as small functions and objects.

* `wait_budget`: how long waiting for more items still raises throughput, from the
  fitted cost model ``duration = fixed + per_item * n``.
* `PlacementProbe`: whether a plain-``def`` batch function should run inline on the
  event loop (short and CPU-bound) or on a worker thread (it mostly waits).
"""

from __future__ import annotations

import sys
import time
from collections import deque
from statistics import median

__all__ = ["PlacementProbe", "wait_budget"]


def wait_budget(
    fit: tuple[float, float] | None,
    *,
    queued: int,
    expected: int,
    max_wait: float,
    latency_target: float | None = None,
) -> float:
    """Seconds (from the start of the wait) it pays to wait before dispatching.

    Dispatching ``queued`` items now serves ``q / (a + b q)`` items per second of
    batch time; waiting ``w`` for ``expected`` items serves ``n / (w + a + b n)``.
    Waiting pays while ``w < a (n - q) / q``: only a large fixed cost ``a`` makes it
    worth waiting, and only for items expected to arrive (callers that are about to
    resubmit). Never longer than ``max_wait``; with a ``latency_target``, never so
    long that the batch would finish after it.

    Args:
        fit: ``(fixed, per_item)`` seconds, or None before the model has a fit.
        queued: items queued now (``q``); 0 means there is nothing to dispatch yet.
        expected: items the batch could have if the expected callers arrive (``n``),
            already capped at the batch size.
        max_wait: the upper bound of any wait.
        latency_target: seconds the first queued item may take end to end (its wait
            plus the batch), or None.
    """
    if fit is None or queued <= 0 or expected <= queued or max_wait <= 0:
        return 0.0
    fixed, per_item = fit
    budget = min(max_wait, fixed * (expected - queued) / queued)
    if latency_target is not None:
        budget = min(budget, latency_target - (fixed + per_item * expected))
    return max(budget, 0.0)


class PlacementProbe:
    """Decides from measurements where a plain-``def`` batch function runs.

    Batches run inline on the event loop report their wall time and the CPU time of
    the loop's thread (``time.thread_time``). A function that keeps the thread busy
    (numpy on small arrays) and is short stays inline: no thread hop, and the batch
    is whatever arrived in that loop iteration. A function that mostly waits (I/O, a
    device, sleep: wall time much larger than CPU time) or runs long goes to a worker
    thread, so the loop keeps collecting the next batch meanwhile.

    Only inline batches are measured: on a worker thread the wall time also counts
    waits for the GIL held by the loop, which would make every function look like
    it waits. So while the decision is "thread", every ``reprobe_every``-th dispatch
    runs inline to measure again. The decision uses the median of the last
    ``window`` measurements, so a preempted batch or a garbage-collection pause does
    not flip it; once the window is full, one inline batch in ``sample_every`` is
    measured.

    ``guarded`` (``placement="measured"``): no batch runs inline before one has been
    timed on a worker thread, and a probe runs inline only while the last batch timed
    there took at most ``max_inline_duration`` plus one GIL switch interval (the most
    its wall time can be stretched by waiting for the loop's thread). A slow or
    waiting function is never run on the loop to find out that it is slow.
    """

    def __init__(
        self,
        *,
        guarded: bool = False,
        min_cpu_share: float = 0.5,
        max_inline_duration: float = 0.005,
        window: int = 9,
        reprobe_every: int = 64,
        sample_every: int = 8,
    ) -> None:
        if not 0 < min_cpu_share <= 1:
            raise ValueError(f"min_cpu_share must be in (0, 1], got {min_cpu_share}")
        if max_inline_duration <= 0:
            raise ValueError(f"max_inline_duration must be > 0, got {max_inline_duration}")
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        if reprobe_every < 1:
            raise ValueError(f"reprobe_every must be >= 1, got {reprobe_every}")
        if sample_every < 1:
            raise ValueError(f"sample_every must be >= 1, got {sample_every}")
        self.min_cpu_share = min_cpu_share
        self.max_inline_duration = max_inline_duration
        self.reprobe_every = reprobe_every
        self.sample_every = sample_every
        self._candidates = 0
        self._shares: deque[float] = deque(maxlen=window)
        self._walls: deque[float] = deque(maxlen=window)
        self.guarded = guarded  # learn on worker threads before any inline run
        self._inline = not guarded  # optimistic until the first measurement, unless guarded
        self._dispatches = 0
        self._thread_wall: float | None = None  # the last batch timed on a worker thread

    def wants_sample(self) -> bool:
        """Should this inline batch be measured? Every one until the window is full,
        then one in ``sample_every`` (measuring costs two clock reads per batch)."""
        if len(self._walls) < (self._walls.maxlen or 0) or not self._inline:
            return True
        self._candidates += 1
        return self._candidates % self.sample_every == 0

    def start_sample(self, *, inline: bool = True) -> tuple[float, float, bool] | None:
        """Begin measuring a batch if it should be: an inline one if `wants_sample`, one on
        a worker thread while a guarded probe has not decided inline. Its wall and CPU
        start times."""
        if inline:
            if not self.wants_sample():
                return None
        elif not self.guarded or self._inline:
            return None
        return time.perf_counter(), time.thread_time(), inline

    def end_sample(self, sample: tuple[float, float, bool] | None) -> None:
        """`observe` the batch begun with `start_sample` (nothing if it was not measured)."""
        if sample is None:
            return
        wall, cpu, inline = sample
        if inline:
            self.observe(time.perf_counter() - wall, time.thread_time() - cpu)
        else:
            self._thread_wall = time.perf_counter() - wall

    def observe(self, wall: float, cpu: float) -> None:
        """Record one inline batch: wall seconds and CPU seconds of its thread."""
        if wall <= 0:
            return
        self._shares.append(min(max(cpu / wall, 0.0), 1.0))
        self._walls.append(wall)
        self._inline = (
            median(self._shares) >= self.min_cpu_share
            and median(self._walls) <= self.max_inline_duration
        )

    @property
    def inline(self) -> bool:
        """The current decision: run inline on the loop?"""
        return self._inline

    def run_inline(self) -> bool:
        """Where the next dispatch runs: inline if so decided, or to measure again."""
        if self._inline:
            return True
        if self.guarded:
            if not self._short_on_a_thread():
                return False
            if not self._walls:
                return True  # shown short on a thread: measure it inline now
        self._dispatches += 1
        return self._dispatches % self.reprobe_every == 0

    def _short_on_a_thread(self) -> bool:
        wall = self._thread_wall
        return wall is not None and wall <= self.max_inline_duration + sys.getswitchinterval()

    @property
    def cpu_share(self) -> float | None:
        """Median CPU share of the measured batches, or None before any."""
        return median(self._shares) if self._shares else None

    @property
    def duration(self) -> float | None:
        """Median wall seconds of the measured batches, or None before any."""
        return median(self._walls) if self._walls else None

    def __repr__(self) -> str:
        return (
            f"PlacementProbe(inline={self._inline}, cpu_share={self.cpu_share}, "
            f"duration={self.duration})"
        )
