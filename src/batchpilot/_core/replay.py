"""Replay a failure already seen as the first attempt of an isolation plan.

Engines call the batch function once on the whole batch (the fast path) and hand
the batch to `run_isolated`/`arun_isolated` only when that call raised. The plan's
first attempt is that same whole-batch call; `replay_first` makes it re-raise the
exception already caught instead of calling the function a second time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

__all__ = ["replay_first"]

R = TypeVar("R")


def replay_first(error: BaseException, call: Callable[[int, int], R]) -> Callable[[int, int], R]:
    """``call``, except that its first invocation raises ``error`` instead of calling.

    Later invocations call ``call``. For a coroutine function the first invocation
    raises before any coroutine exists, which ``await replayed(start, stop)`` sees
    just like an exception raised inside the coroutine.

    Args:
        error: what the first whole-batch call already raised.
        call: ``call(start, stop)`` runs the batch function on items ``[start, stop)``.
    """
    pending = [error]

    def replayed(start: int, stop: int) -> R:
        if pending:
            raise pending.pop()
        return call(start, stop)

    return replayed
