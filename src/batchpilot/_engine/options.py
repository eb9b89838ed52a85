"""`EngineOptions`: every setting of the online engine, with its default and its check.

`batchpilot.batching.Batcher` (and so the ``batch`` decorator) and
`batchpilot.online.BatchProcessor` each build one `EngineOptions` and give it to
`Engine`. ``Batcher`` and ``batch`` take the fields as keyword arguments:
`batchpilot._core.keywords` gives them the fields' signature (for type checkers,
``help`` and the generated docs), so the list of settings is written here only.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from .._core.clock import SYSTEM_CLOCK, Clock
from .._core.collate import Collator, get_collator
from .._core.events import BatchListener, BatchRecord
from .._core.retry import NO_RETRY, RetryPolicy
from .._core.sizing import SizeController
from .._core.validate import check_flag, check_int, check_number, positive_int
from ..errors import ConfigError

__all__ = ["PLACEMENTS", "EngineOptions", "Placement"]

Placement = Literal["auto", "measured", "inline", "thread"]
PLACEMENTS = ("auto", "measured", "inline", "thread")


@dataclass(frozen=True, kw_only=True)
class EngineOptions:
    """The settings of one online engine; checked when constructed.

    Attributes:
        max_batch_size: hard cap on the items of one batch.
        max_wait: upper bound in seconds on waiting for more items. The engine
            never waits when a worker is idle; it waits only when its cost model
            says that raises throughput.
        max_concurrent_batches: batches that may run at the same time.
        max_queue_size: items that may wait; a thread caller then blocks, an
            asyncio caller gets `QueueFullError`.
        collate: ``"stack"``, ``"concat"`` (first axis is rows), ``"list"`` or a
            `Collator`.
        controller: batch-size controller (`Fixed`, `AIMD`, `TargetLatency` or your
            own ``observe``/``next_size`` object); default ``Fixed(max_batch_size)``.
        latency_target: seconds an item may take end to end; caps waits.
        batch_size_fn: cost of one item against the batch size (e.g. ``len``): the
            summed, first-in-first-out case of ``cost``, where ``max_batch_size``
            and the controller count cost units (``cost`` + ``max_batch_cost`` say
            the same and also sort and pad; the two are exclusive).
        max_batch_bytes: cap on the summed ``nbytes`` of one batch's items.
        cost: an item's cost (e.g. its token count). A batch then holds at most
            ``max_batch_size`` items and ``max_batch_cost``; an item over budget
            runs alone.
        max_batch_cost: the budget of one batch, in cost units (with ``cost``).
        padded: a batch costs its largest item's cost times its size (every row
            padded to the longest), not the sum.
        sort_window: waiting items the next batch may be picked from by cost (the
            oldest always goes, with those closest to it in cost); 0: first in,
            first out.
        is_oom: which exceptions of the batch function mean out of memory (default:
            `MemoryError` and torch's ``OutOfMemoryError``); such a batch lowers the
            cost cap and is split until it fits.
        retry: retries of a failed batch before it is bisected.
        on_error: ``"isolate"``: a failing batch is bisected until each failing item
            is alone; healthy items get results, failing items their own exception.
            ``"raise"``: every item gets the batch's exception.
        priority_levels: levels of `submit`'s ``priority``; higher is served first.
        item_timeout: seconds an item may wait in the queue before it fails with
            `ItemTimeoutError`.
        min_batch_interval: minimum seconds between the starts of two batches.
        placement: ``"auto"``, ``"measured"``, ``"inline"`` or ``"thread"`` (see
            `Engine`). ``"measured"`` is ``"auto"`` that never runs a batch inline
            before a worker thread has shown it is short (what a server wants: its
            event loop is never held by a slow model).
        listeners: receive a `BatchRecord` per batch.
        clock: time source (tests pass `batchpilot.testing.FakeClock`).
        name: label for threads, metrics and ``repr``; a `Batcher` defaults it to
            ``fn.__name__``.

    Raises:
        ConfigError: a field has the wrong type or is out of range (a `TypeError`
            and a `ValueError`; the message names the field). NaN is never accepted;
            infinity only for ``item_timeout`` and ``latency_target`` (no limit).
    """

    max_batch_size: int = 64
    max_wait: float = 0.005
    max_concurrent_batches: int = 1
    max_queue_size: int = 10_000
    collate: str | Collator = "stack"
    controller: SizeController | None = None
    latency_target: float | None = None
    batch_size_fn: Callable[[Any], float] | None = None
    max_batch_bytes: int | None = None
    cost: Callable[[Any], float] | None = None
    max_batch_cost: float = math.inf
    padded: bool = False
    sort_window: int = 0
    is_oom: Callable[[BaseException], bool] | None = None
    retry: RetryPolicy = NO_RETRY
    on_error: Literal["isolate", "raise"] = "isolate"
    priority_levels: int = 1
    item_timeout: float | None = None
    min_batch_interval: float = 0.0
    placement: Placement = "auto"
    listeners: Sequence[BatchListener | Callable[[BatchRecord], object]] = ()
    clock: Clock = SYSTEM_CLOCK
    name: str | None = None

    def __post_init__(self) -> None:
        positive_int("max_batch_size", self.max_batch_size)
        positive_int("max_concurrent_batches", self.max_concurrent_batches)
        positive_int("max_queue_size", self.max_queue_size)
        positive_int("priority_levels", self.priority_levels)
        check_number("max_wait", self.max_wait, minimum=0)
        check_number("min_batch_interval", self.min_batch_interval, minimum=0)
        if self.item_timeout is not None:  # infinity: no deadline
            check_number("item_timeout", self.item_timeout, minimum=0, allow_inf=True)
        if self.latency_target is not None:
            check_number(
                "latency_target", self.latency_target, minimum=0, strict=True, allow_inf=True
            )
        if self.max_batch_bytes is not None:
            positive_int("max_batch_bytes", self.max_batch_bytes)
        if self.batch_size_fn is not None and not callable(self.batch_size_fn):
            raise ConfigError(f"batch_size_fn must be callable, got {self.batch_size_fn!r}")
        self._check_cost()
        if not isinstance(self.retry, RetryPolicy):
            raise ConfigError(f"retry must be a RetryPolicy, got {self.retry!r}")
        if self.on_error not in ("isolate", "raise"):
            raise ConfigError(f"on_error must be 'isolate' or 'raise', got {self.on_error!r}")
        if self.placement not in PLACEMENTS:
            raise ConfigError(f"placement must be one of {PLACEMENTS}, got {self.placement!r}")
        if self.controller is not None and not isinstance(self.controller, SizeController):
            raise ConfigError(
                f"controller needs observe() and next_size(), got {self.controller!r}"
            )
        get_collator(self.collate)  # raises for an unknown mode or a non-collator

    def _check_cost(self) -> None:
        check_number("max_batch_cost", self.max_batch_cost, minimum=0, strict=True, allow_inf=True)
        check_flag("padded", self.padded)
        check_int("sort_window", self.sort_window, minimum=0)
        for name in ("cost", "is_oom"):
            value = getattr(self, name)
            if value is not None and not callable(value):
                raise ConfigError(f"{name} must be callable, got {value!r}")
        if self.cost is not None and self.batch_size_fn is not None:
            raise ConfigError("give cost (with max_batch_cost) or batch_size_fn, not both")
