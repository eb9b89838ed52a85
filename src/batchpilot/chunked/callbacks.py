"""Calling user callbacks that may be plain functions or ``async def``, written once.

`invoke` calls every callback and returns the awaitables the async ones produced;
the two drivers only differ in how they wait for those: `settle` from sync code,
`asettle` from a coroutine. A failing callback is logged and counted, never
raised: a broken progress hook must not stop a job.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

__all__ = ["asettle", "check_callable", "invoke", "settle"]

_log = logging.getLogger("batchpilot.chunked")


def check_callable(value: Any, what: str) -> None:
    """`TypeError` naming ``what`` unless ``value`` is callable."""
    if not callable(value):
        raise TypeError(f"{what} must be callable, got {type(value).__name__}")


def invoke(callbacks: Iterable[Callable[..., Any]], *args: Any) -> tuple[list[Awaitable[Any]], int]:
    """Call each callback with ``args``; return (awaitables to wait for, errors so far)."""
    pending: list[Awaitable[Any]] = []
    errors = 0
    for callback in callbacks:
        try:
            result = callback(*args)
        except Exception:
            _log.exception("callback %r failed", callback)
            errors += 1
            continue
        if inspect.isawaitable(result):
            pending.append(result)
    return pending, errors


async def asettle(pending: Iterable[Awaitable[Any]]) -> int:
    """Await each pending callback in turn; return how many failed."""
    errors = 0
    for awaitable in pending:
        try:
            await awaitable
        except Exception:
            _log.exception("async callback failed")
            errors += 1
    return errors


def settle(pending: list[Awaitable[Any]], background: set[asyncio.Task[int]]) -> int:
    """Wait for pending callbacks from sync code; return how many failed.

    Without a running event loop in this thread they run to completion with
    `asyncio.run`. Called from inside a running loop (a sync call in async code),
    blocking is impossible, so they are scheduled on that loop as one task, kept
    in the caller's ``background`` set until it is done.
    """
    if not pending:
        return 0
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(asettle(pending))
    task = loop.create_task(asettle(pending))
    background.add(task)
    task.add_done_callback(background.discard)
    return 0
