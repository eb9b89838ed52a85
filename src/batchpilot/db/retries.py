"""Which database errors are worth retrying, and the loop that retries them."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy import exc as sa_exc

from .._core.retry import RetryPolicy
from .stats import Call

__all__ = ["is_transient_error", "retrying"]

_log = logging.getLogger("batchpilot.db")
_T = TypeVar("_T")


def is_transient_error(error: BaseException) -> bool:
    """Whether retrying the failed operation may succeed.

    True for a lost or invalidated connection, a pool checkout timeout, a locked or
    busy SQLite database, and other drivers' operational errors (PostgreSQL: admin
    shutdown, deadlock, serialization failure, too many connections). False for
    everything else: integrity and programming errors, bad input.
    """
    if isinstance(error, sa_exc.DBAPIError) and error.connection_invalidated:
        return True
    if isinstance(error, sa_exc.TimeoutError):
        return True
    if isinstance(error, sa_exc.OperationalError):
        if isinstance(error.orig, sqlite3.Error):
            # SQLite reports missing tables and syntax errors as OperationalError too.
            return "locked" in str(error.orig) or "busy" in str(error.orig)
        return True
    return False


def retrying(
    policy: RetryPolicy, sleep: Callable[[float], None], call: Call, attempt: Callable[[], _T]
) -> _T:
    """Run ``attempt`` until it returns, retrying what ``policy`` allows; count in ``call``."""
    delays = policy.delays()
    while True:
        try:
            return attempt()
        except Exception as error:
            delay = next(delays, None) if policy.retry_on(error) else None
            if delay is None:
                raise
            call.retries += 1
            _log.warning(
                "transient database error, retry %d in %.3gs: %s", call.retries, delay, error
            )
            sleep(delay)
