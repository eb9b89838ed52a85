"""Retry policy: which failures are tried again, how often and after which delays."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from ..errors import BatchFailedError, ConfigError
from .validate import check_int, check_number

__all__ = [
    "NO_RETRY",
    "RetryPolicy",
    "RetryPredicate",
    "is_permanent_error",
    "retry_any_exception",
    "retry_unless_batch_failed",
    "retry_unless_permanent",
]

#: PEP 249 (DB-API 2) error classes that the same statement would raise again:
#: a broken constraint, bad data, bad SQL, an unsupported feature. Matched by class
#: name, so sqlite3, psycopg and SQLAlchemy errors qualify without importing them.
_PERMANENT_DB_ERRORS = frozenset(
    {"IntegrityError", "DataError", "ProgrammingError", "NotSupportedError"}
)

RetryPredicate = Callable[[BaseException], bool]
"""Given the exception a failed attempt raised: whether another attempt is worth it."""


def retry_any_exception(error: BaseException) -> bool:
    """Retry every `Exception`; never `KeyboardInterrupt`, `SystemExit` or a cancellation."""
    return isinstance(error, Exception)


def retry_unless_batch_failed(error: BaseException) -> bool:
    """The default `RetryPolicy.retry_on`: every `Exception` but a `BatchFailedError`.

    A `BatchFailedError` (e.g. the function returned the wrong number of results)
    was caused by no single item, and the same batch would raise it again.
    """
    return retry_any_exception(error) and not isinstance(error, BatchFailedError)


def is_permanent_error(error: BaseException) -> bool:
    """Whether ``error`` would recur on a retry of the same data, whatever the delay.

    True for the PEP 249 database errors that name the data or the statement
    (``IntegrityError``, ``DataError``, ``ProgrammingError``,
    ``NotSupportedError``, of any driver or of SQLAlchemy) and for a
    `BatchFailedError` whose ``cause`` is one of them.
    """
    if isinstance(error, BatchFailedError) and error.cause is not None:
        return is_permanent_error(error.cause)
    return any(kind.__name__ in _PERMANENT_DB_ERRORS for kind in type(error).__mro__)


def retry_unless_permanent(error: BaseException) -> bool:
    """Retry every `Exception` except a permanent one (`is_permanent_error`).

    The flush buffer's default: a flush callback is a sink (an API, a database),
    where a lost connection is worth another try and a broken unique key is not.
    """
    return retry_any_exception(error) and not is_permanent_error(error)


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential back-off: retry ``i`` (1-based) waits ``retry_delay * backoff**(i-1)``.

    The waits are capped at ``max_delay`` when given. ``retry_on`` decides which
    failures get retried at all (tenacity's ``retry_if_exception``): a failure it
    rejects is final at once. The policy only decides and computes delays; the
    engine that owns the thread or task does the waiting, with its own
    (injectable) sleep, so the same policy serves sync and async code.

    Attributes:
        max_retries: retries after the first failed attempt (0: no retry).
        retry_delay: seconds before the first retry.
        backoff: factor by which each further wait grows (>= 1).
        max_delay: cap on any single wait in seconds; None: no cap.
        retry_on: called with a failed attempt's exception; True retries it. Default:
            every `Exception` but `BatchFailedError` (`retry_unless_batch_failed`).
    """

    max_retries: int = 3
    retry_delay: float = 1.0
    backoff: float = 2.0
    max_delay: float | None = None
    retry_on: RetryPredicate = field(default=retry_unless_batch_failed, repr=False)

    def __post_init__(self) -> None:
        """Check every field (`batchpilot.errors.ConfigError` names the bad one).

        ``max_retries`` is an int (not a bool), the delays and ``backoff`` finite
        numbers: an infinite wait would never end, and overflows the sleep.
        """
        check_int("max_retries", self.max_retries, minimum=0)
        check_number("retry_delay", self.retry_delay, minimum=0)
        check_number("backoff", self.backoff, minimum=1)
        if self.max_delay is not None:
            check_number("max_delay", self.max_delay, minimum=0)
        if not callable(self.retry_on):
            raise ConfigError(f"retry_on must be callable, got {self.retry_on!r}")
        if self.max_retries and not math.isfinite(self.delay(self.max_retries)):
            raise ConfigError(
                f"max_retries={self.max_retries} with backoff={self.backoff} makes the last "
                "wait infinite; lower max_retries or set max_delay"
            )

    def delay(self, retry: int) -> float:
        """Seconds to wait before retry number ``retry`` (1-based)."""
        if retry < 1:
            raise ValueError(f"retry numbers start at 1, got {retry}")
        try:
            wait = self.retry_delay * self.backoff ** (retry - 1)
        except OverflowError:
            wait = math.inf
        return wait if self.max_delay is None else min(wait, self.max_delay)

    def delays(self) -> Iterator[float]:
        """The waits before each retry, in order."""
        return (self.delay(i) for i in range(1, self.max_retries + 1))


NO_RETRY = RetryPolicy(max_retries=0, retry_delay=0.0)
