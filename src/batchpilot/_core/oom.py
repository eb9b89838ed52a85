"""Out-of-memory as a signal, not a failure: recognise it, split, and back off.

When a batch runs out of memory the engine splits it by cost (`split_by_cost`)
and runs the halves; `OutOfMemoryBackoff` lowers the cost cap below the batch that
failed and raises it back slowly after successes (AIMD), never above the user's
budget and, until a probe, never back to a cost that failed. No peer does this at
run time (pytorch#52036, infinity#517, TGI#2744).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Sequence

from .validate import check_number, positive_int

__all__ = ["OutOfMemoryBackoff", "is_out_of_memory", "release_cached_memory", "split_by_cost"]

OomPredicate = Callable[[BaseException], bool]
_JUST_UNDER = 0.999  # a cap just under a cost that failed excludes that cost


def is_out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` says the batch ran out of memory.

    `MemoryError`, and torch's ``OutOfMemoryError`` (``torch.cuda.OutOfMemoryError``
    is the same class) recognised by name so that torch need not be imported.
    """
    if isinstance(error, MemoryError):
        return True
    return any(
        cls.__name__ == "OutOfMemoryError" and cls.__module__.startswith("torch")
        for cls in type(error).__mro__
    )


def release_cached_memory() -> None:
    """Empty torch's CUDA cache, when the program uses torch and it has CUDA."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def split_by_cost(costs: Sequence[float], padded: bool) -> tuple[list[int], list[int]]:
    """Split positions into two non-empty halves of about equal cost.

    Positions are sorted by cost, so with ``padded`` the long items end up together
    and the short half is padded only to its own longest item. Needs two items.
    """
    if len(costs) < 2:
        raise ValueError(f"a batch of {len(costs)} item(s) cannot be split")
    order = sorted(range(len(costs)), key=costs.__getitem__)
    ordered = [costs[position] for position in order]
    best, best_cut = math.inf, 1
    total, prefix = sum(ordered), 0.0
    for cut in range(1, len(ordered)):
        prefix += ordered[cut - 1]
        if padded:
            heavier = max(ordered[cut - 1] * cut, ordered[-1] * (len(ordered) - cut))
        else:
            heavier = max(prefix, total - prefix)
        if heavier < best:
            best, best_cut = heavier, cut
    return order[:best_cut], order[best_cut:]


class OutOfMemoryBackoff:
    """AIMD on a batch's cost cap, driven by out-of-memory errors.

    After an out-of-memory error at cost ``c`` the cap drops to half of the lower of
    the cap and ``c``, and ``c`` is remembered as too much. After ``patience``
    successes in a row the cap grows by ``growth`` times, up to the lowest cost that
    failed; after another ``patience`` successes there, that remembered cost is
    raised by ``growth`` too (a slow probe, for memory that was only briefly short).
    """

    def __init__(
        self,
        ceiling: float = math.inf,
        *,
        floor: float = 1.0,
        growth: float = 1.25,
        patience: int = 8,
    ) -> None:
        check_number("ceiling", ceiling, minimum=0, strict=True, allow_inf=True)
        check_number("floor", floor, minimum=0, strict=True)
        check_number("growth", growth, minimum=1, strict=True)
        self.ceiling = ceiling  # the user's budget: the cap never goes above it
        self.floor = floor  # the cap never goes below it
        self.growth = growth  # the factor by which the cap grows back
        self.patience = positive_int("patience", patience)  # successes before a step up
        self.cap = ceiling  # the cost a batch may have now
        self.too_much = math.inf  # the lowest cost that ran out of memory, until probed
        self.splits = 0  # out-of-memory errors seen, each one a split batch
        self._streak = 0  # successes since the last step or error

    def on_out_of_memory(self, cost: float) -> None:
        """A batch of ``cost`` ran out of memory: lower the cap below it."""
        self.splits += 1
        self._streak = 0
        self.too_much = min(self.too_much, cost)
        self.cap = max(self.floor, min(self.cap, cost) / 2)

    def on_success(self) -> None:
        """A batch ran: after enough of them, step the cap (or the probe) up."""
        if self.cap >= self.ceiling:
            return
        self._streak += 1
        if self._streak < self.patience:
            return
        self._streak = 0
        if self.cap >= self.too_much * _JUST_UNDER:
            self.too_much *= self.growth  # as high as is known to fit: probe past it
        self.cap = min(self.ceiling, self.cap * self.growth, self.too_much * _JUST_UNDER)

    def __repr__(self) -> str:
        return (
            f"OutOfMemoryBackoff(cap={self.cap}, ceiling={self.ceiling},"
            f" too_much={self.too_much}, splits={self.splits})"
        )
