"""The user's function: imported from ``MODULE:FUNC``, and adapted to a batch function.

FUNC may name a model class (``setup()`` and ``predict(batch)``, the contract of
``batchpilot serve``): it runs as a `ModelBatch`, set up once per worker.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .._core.models import is_model_class
from .._core.targets import TargetImportError, import_target
from ..bulk.models import model_batch
from .common import CliError

__all__ = ["as_batch_function", "load_function"]


def load_function(spec: str) -> Callable[..., Any]:
    """Import ``MODULE:FUNC`` (FUNC may be dotted, e.g. ``pkg.mod:Model.score``).

    The current directory is importable, as with ``python -m``.

    Raises:
        CliError: Bad spec, module not importable, or no such callable.
    """
    try:
        target = import_target(spec, placeholder="FUNC", noun="function")
    except TargetImportError as exc:
        raise CliError(str(exc)) from None
    if not callable(target):
        raise CliError(f"{spec} is not callable (it is a {type(target).__name__})")
    return target


@dataclass(frozen=True)
class _PerItem:
    """Turns a function of one record into a batch function (picklable for processes)."""

    function: Callable[[Any], Any]

    def __call__(self, records: Sequence[Any]) -> list[Any]:
        return [self.function(record) for record in records]


def _per_item_async(function: Callable[[Any], Awaitable[Any]]) -> Callable[..., Any]:
    """Turn an ``async def`` of one record into an async batch function.

    The records of one batch are awaited concurrently.
    """

    async def batch(records: Sequence[Any]) -> list[Any]:
        return list(await asyncio.gather(*(function(record) for record in records)))

    return batch


def as_batch_function(function: Callable[..., Any], per_item: bool) -> Callable[..., Any]:
    """The batch function the bulk engine calls: ``function`` itself, a per-item adapter,
    or a model class's `ModelBatch`.

    Raises:
        CliError: ``per_item`` with a model class (its ``predict`` takes a batch).
    """
    if is_model_class(function):
        if per_item:
            raise CliError(
                f"--per-item: {function.__qualname__} is a model class, whose predict "
                "takes a list of records"
            )
        return model_batch(function)
    if not per_item:
        return function
    if inspect.iscoroutinefunction(function):
        return _per_item_async(function)
    return _PerItem(function)
