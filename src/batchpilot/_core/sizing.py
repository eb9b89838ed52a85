"""Batch-size controllers: pure policy objects with no threads and no clock.

Every engine feeds a controller ``observe(batch_size, duration, ok)`` after each
batch and asks ``next_size()`` before forming the next one. Because controllers
only see numbers, tests can script durations and assert exact size sequences.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Protocol, runtime_checkable

__all__ = [
    "AIMD",
    "BoundedController",
    "Fixed",
    "LinearCostModel",
    "SizeController",
    "TargetLatency",
    "recap",
]


@runtime_checkable
class SizeController(Protocol):
    """What an engine needs from a batch-size controller."""

    def observe(self, batch_size: int, duration: float, ok: bool = True) -> None:
        """Record one finished batch: its size, wall duration in seconds, and success."""
        ...

    def next_size(self) -> int:
        """The batch size to use next (an upper bound; a batch may be smaller)."""
        ...


@runtime_checkable
class BoundedController(SizeController, Protocol):
    """A controller whose size range can be changed at run time (all built-in ones).

    An engine narrows the range of such a controller (a memory guard, an operator's
    ``update_batch_size``); a controller without bounds is left alone.
    """

    min_size: int
    max_size: int

    def set_bounds(self, min_size: int, max_size: int) -> None:
        """Change the bounds; the current size is clamped into them."""
        ...


def recap(controller: SizeController, max_size: int) -> None:
    """Give ``controller`` a new hard cap: a `Fixed` one takes it as its size, a bounded
    one as its maximum; a controller without bounds is left alone."""
    if isinstance(controller, Fixed):
        controller.set_bounds(max_size, max_size)
    elif isinstance(controller, BoundedController):
        controller.set_bounds(min(controller.min_size, max_size), max_size)


def _check_bounds(min_size: int, max_size: int, initial: int) -> None:
    if min_size < 1:
        raise ValueError(f"min_size must be >= 1, got {min_size}")
    if max_size < min_size:
        raise ValueError(f"max_size ({max_size}) must be >= min_size ({min_size})")
    if not min_size <= initial <= max_size:
        raise ValueError(f"initial size {initial} is outside [{min_size}, {max_size}]")


class _Bounded:
    """Shared state of the built-in controllers: a current size within bounds."""

    def __init__(self, initial: int, min_size: int, max_size: int) -> None:
        _check_bounds(min_size, max_size, initial)
        self.min_size = min_size
        self.max_size = max_size
        self.size = initial

    def next_size(self) -> int:
        return self.size

    def set_size(self, size: int) -> None:
        """Override the current size (clamped to the bounds), e.g. from an operator."""
        if size < 1:
            raise ValueError(f"batch size must be >= 1, got {size}")
        self.size = self._clamp(size)

    def set_bounds(self, min_size: int, max_size: int) -> None:
        """Change the bounds at run time; the current size is clamped into them."""
        _check_bounds(min_size, max_size, min_size)
        self.min_size, self.max_size = min_size, max_size
        self.size = self._clamp(self.size)

    def _clamp(self, size: int) -> int:
        return max(self.min_size, min(self.max_size, size))

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(size={self.size}, "
            f"min_size={self.min_size}, max_size={self.max_size})"
        )


class Fixed(_Bounded):
    """Always the same size."""

    def __init__(self, size: int) -> None:
        super().__init__(size, size, size)

    def observe(self, batch_size: int, duration: float, ok: bool = True) -> None:
        """Fixed ignores observations."""


class AIMD(_Bounded):
    """Additive increase, multiplicative decrease (Clipper).

    After a full, successful batch that met ``latency_target`` (if any) the size
    grows by ``increase``; after a failure or a batch slower than the target it is
    multiplied by ``decrease``. Batches smaller than the current size say nothing
    about whether a larger size would help, so they leave it unchanged.
    """

    def __init__(
        self,
        initial: int = 32,
        min_size: int = 1,
        max_size: int = 128,
        *,
        increase: int = 1,
        decrease: float = 0.5,
        latency_target: float | None = None,
    ) -> None:
        super().__init__(initial, min_size, max_size)
        if increase < 1:
            raise ValueError(f"increase must be >= 1, got {increase}")
        if not 0 < decrease < 1:
            raise ValueError(f"decrease must be in (0, 1), got {decrease}")
        if latency_target is not None and latency_target <= 0:
            raise ValueError(f"latency_target must be > 0, got {latency_target}")
        self.increase = increase
        self.decrease = decrease
        self.latency_target = latency_target

    def observe(self, batch_size: int, duration: float, ok: bool = True) -> None:
        too_slow = self.latency_target is not None and duration > self.latency_target
        if not ok or too_slow:
            self.size = self._clamp(math.floor(self.size * self.decrease))
        elif batch_size >= self.size:
            self.size = self._clamp(self.size + self.increase)


class LinearCostModel:
    """Least-squares fit of ``duration = fixed + per_item * n`` over recent batches
    (``n`` their sizes, or their costs where batches are sized by cost).

    This is the cost model of BentoML's CORK scheduler and Beam's batch-size
    estimator: the fixed part is what batching amortises.
    """

    def __init__(self, window: int = 64) -> None:
        if window < 2:
            raise ValueError(f"window must be >= 2, got {window}")
        self._samples: deque[tuple[float, float]] = deque(maxlen=window)

    def add(self, size: float, duration: float) -> None:
        self._samples.append((size, duration))

    def __len__(self) -> int:
        return len(self._samples)

    def fit(self) -> tuple[float, float] | None:
        """Return ``(fixed, per_item)`` seconds, or None without two distinct sizes.

        Both coefficients are clamped to be non-negative, since a negative cost
        is noise, not physics.
        """
        count = len(self._samples)
        if count < 2:
            return None
        mean_n = sum(n for n, _ in self._samples) / count
        mean_d = sum(d for _, d in self._samples) / count
        var_n = sum((n - mean_n) ** 2 for n, _ in self._samples)
        if var_n == 0:
            return None
        cov = sum((n - mean_n) * (d - mean_d) for n, d in self._samples)
        per_item = max(cov / var_n, 0.0)
        fixed = max(mean_d - per_item * mean_n, 0.0)
        return fixed, per_item

    def predict(self, size: float) -> float | None:
        """Predicted duration of a batch of ``size`` items, or None without a fit."""
        fitted = self.fit()
        if fitted is None:
            return None
        fixed, per_item = fitted
        return fixed + per_item * size

    def __repr__(self) -> str:
        return f"LinearCostModel(samples={len(self._samples)}, fit={self.fit()})"


class TargetLatency(_Bounded):
    """Choose the largest batch whose predicted duration meets ``latency_target``.

    The duration is modelled as ``fixed + per_item * n`` (`LinearCostModel`). Until
    two distinct sizes have been seen, the cost is assumed proportional to the size
    of the last batch. Growth per step is capped at ``max_growth`` times the current
    size (Beam and joblib do the same) so one fast outlier cannot jump to the
    maximum; shrinking is immediate. A failed batch halves the size.
    """

    def __init__(
        self,
        latency_target: float,
        min_size: int = 1,
        max_size: int = 128,
        initial: int | None = None,
        *,
        window: int = 32,
        max_growth: float = 2.0,
    ) -> None:
        super().__init__(min_size if initial is None else initial, min_size, max_size)
        if latency_target <= 0:
            raise ValueError(f"latency_target must be > 0, got {latency_target}")
        if max_growth <= 1:
            raise ValueError(f"max_growth must be > 1, got {max_growth}")
        self.latency_target = latency_target
        self.max_growth = max_growth
        self.model = LinearCostModel(window)

    def observe(self, batch_size: int, duration: float, ok: bool = True) -> None:
        if not ok:
            self.size = self._clamp(self.size // 2)
            return
        if batch_size < 1:
            return
        self.model.add(batch_size, duration)
        ideal = self._ideal_size(batch_size, duration)
        self.size = self._clamp(min(ideal, math.floor(self.size * self.max_growth)))

    def _ideal_size(self, batch_size: int, duration: float) -> int:
        fitted = self.model.fit()
        if fitted is not None and fitted[1] > 0:
            fixed, per_item = fitted
            return _floor((self.latency_target - fixed) / per_item)
        if duration <= 0:
            return self.max_size
        return _floor(self.latency_target * batch_size / duration)


def _floor(value: float) -> int:
    """Floor that ignores float rounding noise (39.999999999 is 40 items, not 39)."""
    return math.floor(value + 1e-9)
