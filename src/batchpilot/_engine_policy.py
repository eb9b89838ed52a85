"""The online engine's two measured decisions, as pure functions and objects.

* `wait_budget`: how long waiting for more items still raises throughput, from the
  fitted cost model ``duration = fixed + per_item * n``.
* `PlacementProbe`: whether a plain-``def`` batch function should run inline on the
  event loop (short and CPU-bound) or on a worker thread (it mostly waits).
"""

from __future__ import annotations

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

    Each batch reports its wall time and the CPU time of the thread that ran it
    (``time.thread_time``). A function that keeps its thread busy (numpy on small
    arrays) and is short runs inline on the event loop: no thread hop, and the
    batch is whatever arrived in that loop iteration. A function that mostly waits
    (I/O, a device, sleep: wall time much larger than CPU time) or runs long goes to
    a worker thread, so the loop keeps collecting the next batch meanwhile.

    The first measurement is taken as is; later ones are smoothed exponentially so
    one preempted batch does not flip the decision.
    """

    def __init__(
        self,
        *,
        min_cpu_share: float = 0.5,
        max_inline_duration: float = 0.005,
        smoothing: float = 0.2,
    ) -> None:
        if not 0 < min_cpu_share <= 1:
            raise ValueError(f"min_cpu_share must be in (0, 1], got {min_cpu_share}")
        if max_inline_duration <= 0:
            raise ValueError(f"max_inline_duration must be > 0, got {max_inline_duration}")
        if not 0 < smoothing <= 1:
            raise ValueError(f"smoothing must be in (0, 1], got {smoothing}")
        self.min_cpu_share = min_cpu_share
        self.max_inline_duration = max_inline_duration
        self.smoothing = smoothing
        self.cpu_share: float | None = None
        self.duration = 0.0

    def observe(self, wall: float, cpu: float) -> None:
        """Record one batch: wall seconds and CPU seconds of its thread."""
        if wall <= 0:
            return
        share = min(max(cpu / wall, 0.0), 1.0)
        if self.cpu_share is None:
            self.cpu_share, self.duration = share, wall
            return
        self.cpu_share += self.smoothing * (share - self.cpu_share)
        self.duration += self.smoothing * (wall - self.duration)

    @property
    def inline(self) -> bool:
        """Run inline on the loop? Optimistic until the first measurement."""
        if self.cpu_share is None:
            return True
        return self.cpu_share >= self.min_cpu_share and self.duration <= self.max_inline_duration

    def __repr__(self) -> str:
        return (
            f"PlacementProbe(inline={self.inline}, cpu_share={self.cpu_share}, "
            f"duration={self.duration:.6f})"
        )
