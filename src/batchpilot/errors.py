"""The exception hierarchy: every error batchpilot raises derives from `BatchpilotError`."""

from __future__ import annotations

import queue

__all__ = [
    "BatchFailedError",
    "BatchpilotError",
    "ClosedError",
    "ConfigError",
    "ItemTimeoutError",
    "QueueFullError",
]


class BatchpilotError(Exception):
    """Base class of all batchpilot errors."""


class ConfigError(BatchpilotError, TypeError, ValueError):
    """An argument or config field has the wrong type or an unusable value.

    One type for both mistakes, so callers catch one thing; it is also a `TypeError`
    and a `ValueError`, as Python's own checks raise. The message names the field.
    """


class QueueFullError(BatchpilotError, queue.Full):
    """The queue stayed full for longer than the caller agreed to wait."""


class ClosedError(BatchpilotError, RuntimeError):
    """The engine is not running: not started yet, stopping, or stopped."""


class ItemTimeoutError(BatchpilotError, TimeoutError):
    """An item passed its deadline before a batch picked it up; it was not processed."""


class BatchFailedError(BatchpilotError):
    """A whole batch failed for a reason no single item caused.

    Raised, for example, when the batch function returns the wrong number of results.
    The underlying exception, if any, is available as ``cause`` (and ``__cause__``).
    """

    def __init__(self, message: str, cause: BaseException | None = None) -> None:
        super().__init__(message)
        self.cause = cause
        if cause is not None:
            self.__cause__ = cause
