"""Running one batch of the online engine and delivering each item's outcome.

`BatchRunner` calls the batch function on a batch of `Request` objects, in the
calling thread (`BatchRunner.run_sync`) or as a task on an event loop
(`BatchRunner.run_async`). The first call is the fast path: one call, results split
per item. Only when it raises does the batch go through the isolation plan
(retry, then bisect, `run_isolated`), whose first attempt replays that failure
instead of calling again (`replay_first`); with ``on_error="raise"`` the plan only
retries the whole batch. Then the engine counts the batch and frees its slot (the
``record`` callback), listeners get a `BatchRecord`, and the outcomes are delivered
once (in that order, so a caller holding a result finds its batch in the metrics).
Anything the plan does not handle (`KeyboardInterrupt`, `SystemExit`, any other
`BaseException`, an error of the plan itself) fails the whole batch with it; the
thread running the batch goes on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from .._core.clock import SYSTEM_CLOCK
from .._core.collate import Collator
from .._core.cost import CloseReason
from .._core.events import BatchListener, BatchRecord, notify
from .._core.isolation import OnReply, Outcome, arun_isolated, run_isolated
from .._core.replay import replay_first
from ..errors import ClosedError
from .costing import batch_costs, has_costs
from .options import EngineOptions
from .policy import PlacementProbe
from .requests import Request, deliver

__all__ = ["BatchRunner", "Recorder"]

_log = logging.getLogger("batchpilot")


class Recorder(Protocol):
    """The engine's count of a finished batch (`Slots.record`): ``size`` items in
    ``duration`` seconds, ``failed`` of them failed, ``ok`` if the first attempt
    succeeded, ``batch_id`` its in-flight key, its real and padded ``cost`` (None:
    its size) and the ``oom_splits`` it met. It frees the batch's slot and returns
    why the batch closed when its outcomes are still to be delivered, else None."""

    def __call__(
        self,
        *,
        size: int,
        duration: float,
        failed: int,
        ok: bool,
        batch_id: int | None,
        cost: float | None,
        padded_cost: float | None,
        oom_splits: int,
    ) -> CloseReason | None: ...


#: ``observe(requests, error)``: a call of the batch function on ``requests`` returned
#: (``error`` None) or raised ``error``; returns whether it ran out of memory.
Observe = Callable[[list[Request], BaseException | None], bool]


def _whole_batch_only(call: Callable[[int, int], Any], size: int) -> Callable[[int, int], Any]:
    """``call`` for ``on_error="raise"``: sub-slices re-raise the last whole-batch error.

    The isolation plan then retries the whole batch per the policy and hands every
    item the batch's exception, without calling the function on halves.
    """
    last: list[BaseException] = []

    def whole(start: int, stop: int) -> Any:
        if start == 0 and stop == size:
            try:
                return call(start, stop)
            except Exception as exc:
                last[:] = [exc]
                raise
        raise last[0]

    return whole


class BatchRunner:
    """Runs batches through one batch function and delivers their outcomes.

    Args:
        fn: the batch function (``def`` or ``async def``).
        options: the engine's options (retry, ``on_error``, clock, name).
        collator: turns the items into the batch and the result back into items.
        listeners: receive a `BatchRecord` after each batch.
        probe: measures inline batches for the engine's placement decision.
        record: the engine's `Recorder`, called once per finished batch.
        queue_depth: items waiting in the engine's queue now (for `BatchRecord`).
        observe: told how each call of the batch function went (`Observe`), e.g.
            `CostPolicy.observe` for out-of-memory backoff.

    When requests carry their costs (`has_costs`) a batch's record says what it
    cost; otherwise a batch costs its size.
    """

    def __init__(
        self,
        fn: Callable[[Any], Any],
        options: EngineOptions,
        collator: Collator,
        listeners: tuple[BatchListener, ...],
        probe: PlacementProbe,
        record: Recorder,
        queue_depth: Callable[[], int],
        observe: Observe | None = None,
    ) -> None:
        self._fn = fn
        self._observe = observe
        self._costed = has_costs(options)  # requests carry Request.cost
        self._collator = collator
        self._retry = options.retry
        self._isolate = options.on_error == "isolate"
        self._clock = options.clock
        self._name = "" if options.name is None else options.name
        self._listeners = listeners
        self._probe = probe
        self._record = record
        self._queue_depth = queue_depth

    def call_slice(self, items: list[Any], start: int, stop: int) -> Any:
        """The batch function's per-item results for ``items[start:stop]``."""
        batch, layout = self._collator.collate(
            items[start:stop] if start or stop < len(items) else items
        )
        return self._collator.split(self._fn(batch), layout, stop - start)

    async def _acall_slice(self, items: list[Any], start: int, stop: int) -> Any:
        batch, layout = self._collator.collate(
            items[start:stop] if start or stop < len(items) else items
        )
        return self._collator.split(await self._fn(batch), layout, stop - start)

    def _succeeded(self, batch: list[Request]) -> None:
        if self._observe is not None:
            self._observe(batch, None)

    def _on_reply(self, batch: list[Request], oom: list[int]) -> OnReply | None:
        """Each call of an isolation, told to ``observe`` with its slice of ``batch``;
        ``oom[0]`` counts the calls that ran out of memory."""
        observe = self._observe
        if observe is None:
            return None

        def on_reply(start: int, stop: int, reply: Any) -> None:
            error = reply if isinstance(reply, BaseException) else None
            if observe(batch[start:stop], error):
                oom[0] += 1

        return on_reply

    def _plan_call(
        self, first: BaseException, call: Callable[[int, int], Any], size: int
    ) -> Callable[[int, int], Any]:
        replay = replay_first(first, call)
        return replay if self._isolate else _whole_batch_only(replay, size)

    def run_sync(
        self,
        batch: list[Request],
        here: asyncio.AbstractEventLoop | None,
        prepared: tuple[Any, Any] | None = None,
        error: BaseException | None = None,
    ) -> None:
        """Run ``batch`` in this thread (``here``: the event loop running it inline, if any).

        ``prepared``: its collated input and layout; ``error``: what a first call of
        this batch already raised (the function is not called again).
        """
        items = [request.item for request in batch]
        size = len(items)
        started = self._clock.now()
        sample = self._probe.start_sample(inline=here is not None)
        outcomes: list[Outcome] | None = None
        oom = [0]  # out-of-memory errors the isolation met
        try:
            try:
                if error is not None:
                    raise error
                if prepared is None:
                    values = self.call_slice(items, 0, size)
                else:
                    values = self._collator.split(self._fn(prepared[0]), prepared[1], size)
                self._succeeded(batch)
            except Exception as exc:
                call = self._plan_call(exc, lambda a, b: self.call_slice(items, a, b), size)
                outcomes = run_isolated(
                    call, size, self._retry, self._clock.sleep, on_reply=self._on_reply(batch, oom)
                )
                values = []
        except BaseException as exc:  # KeyboardInterrupt, SystemExit, or isolation failed
            self._fail_batch(batch, exc, started, here, reraise=here is not None)
            return
        self._probe.end_sample(sample)
        self._finish_outcomes(batch, values, outcomes, started, here, oom[0])

    async def run_async(
        self, batch: list[Request], loop: asyncio.AbstractEventLoop, *, callers_loop: bool
    ) -> None:
        """Run ``batch`` with the ``async def`` batch function, on ``loop`` (the running one).

        ``callers_loop``: ``loop`` belongs to the callers (not the engine's private loop),
        so a `KeyboardInterrupt` or `SystemExit` is raised on into it after the batch
        failed with it, as the callers' own code would.
        """
        items = [request.item for request in batch]
        size = len(items)
        started = self._clock.now()
        outcomes: list[Outcome] | None = None
        oom = [0]  # out-of-memory errors the isolation met
        try:
            try:
                values = await self._acall_slice(items, 0, size)
                self._succeeded(batch)
            except Exception as exc:
                call = self._plan_call(exc, lambda a, b: self._acall_slice(items, a, b), size)
                outcomes = await arun_isolated(
                    call, size, self._retry, self._asleep, on_reply=self._on_reply(batch, oom)
                )
                values = []
        except asyncio.CancelledError:  # the loop is shutting down, or close() gave up
            error = ClosedError("the batch was cancelled")
            self._finish(batch, [error] * size, [False] * size, started, False, loop)
            raise
        except BaseException as exc:  # KeyboardInterrupt, SystemExit, or isolation failed
            self._fail_batch(batch, exc, started, loop, reraise=callers_loop)
            return
        self._finish_outcomes(batch, values, outcomes, started, loop, oom[0])

    def _fail_batch(
        self,
        batch: list[Request],
        exc: BaseException,
        started: float,
        here: asyncio.AbstractEventLoop | None,
        *,
        reraise: bool,
    ) -> None:
        """Give every item of ``batch`` ``exc``, which the isolation plan did not handle.

        The thread or loop running the batch goes on serving (an engine thread must
        never die of user code); ``reraise``: it is the callers' own thread or loop,
        and a `KeyboardInterrupt` or `SystemExit` is raised on into it.
        """
        _log.error(
            "%s: a batch of %d failed with %r, which isolation does not handle; "
            "each of its items gets it",
            self._name or "engine",
            len(batch),
            exc,
        )
        size = len(batch)
        self._finish(batch, [exc] * size, [False] * size, started, False, here)
        if reraise and isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise exc

    async def _asleep(self, seconds: float) -> None:
        if self._clock is SYSTEM_CLOCK:
            await asyncio.sleep(seconds)
        else:
            self._clock.sleep(seconds)

    def _finish_outcomes(
        self,
        batch: list[Request],
        values: Any,
        outcomes: list[Outcome] | None,
        started: float,
        here: asyncio.AbstractEventLoop | None,
        oom_splits: int,
    ) -> None:
        if outcomes is None:
            self._finish(batch, values, None, started, True, here)
        else:
            self._finish(
                batch,
                [outcome.value for outcome in outcomes],
                [outcome.ok for outcome in outcomes],
                started,
                False,
                here,
                oom_splits,
            )

    def _finish(
        self,
        batch: list[Request],
        values: Sequence[Any],
        oks: Sequence[bool] | None,
        started: float,
        ok: bool,
        here: asyncio.AbstractEventLoop | None,
        oom_splits: int = 0,
    ) -> None:
        """Record a finished batch, free its slot and deliver its outcomes (once)."""
        duration = self._clock.now() - started
        failed = 0 if oks is None else oks.count(False)
        size = len(batch)
        cost = padded_cost = None  # a batch without costs costs its size
        if self._costed:
            cost, padded_cost = batch_costs(batch)
        reason = self._record(
            size=size,
            duration=duration,
            failed=failed,
            ok=ok,
            batch_id=id(batch),
            cost=cost,
            padded_cost=padded_cost,
            oom_splits=oom_splits,
        )
        # Listeners (metrics) first: whoever has a result then also sees its batch counted.
        # A batch whose items close() already failed reports nothing: none got its result.
        try:
            if self._listeners and reason is not None:
                costs = (size, size) if cost is None or padded_cost is None else (cost, padded_cost)
                self._emit(batch, values, oks, started, duration, reason, costs, oom_splits)
        finally:
            if reason is not None:
                deliver(batch, values, oks, here)

    def _emit(
        self,
        batch: list[Request],
        values: Sequence[Any],
        oks: Sequence[bool] | None,
        started: float,
        duration: float,
        reason: CloseReason,
        costs: tuple[float, float],
        oom_splits: int,
    ) -> None:
        error_types: dict[str, int] = {}
        if oks is not None:
            for value, ok in zip(values, oks, strict=True):
                if not ok:
                    kind = type(value).__name__
                    error_types[kind] = error_types.get(kind, 0) + 1
        failed = sum(error_types.values())
        record = BatchRecord(
            engine="online",
            size=len(batch),
            duration=duration,
            queue_time=sum(started - request.enqueued for request in batch) / len(batch),
            succeeded=len(batch) - failed,
            failed=failed,
            error_types=error_types,
            queue_depth=self._queue_depth(),
            name=self._name,
            close_reason=reason.value,
            cost=costs[0],
            padded_cost=costs[1],
            oom_splits=oom_splits,
        )
        notify(self._listeners, record)
