"""What a model class is: the contract `batchpilot serve` and the bulk engine share.

A model class has ``predict(self, batch)`` (a list of inputs -> one output each,
``def`` or ``async def``) and optionally ``setup(self)``, which loads what
``predict`` needs (weights, a tokenizer, a connection). It is instantiated without
arguments (or with the keyword arguments its user gives), then ``setup()`` is
called once, in the process that will call ``predict``: a server's worker
process, or a bulk run's worker process, Dask worker or Ray actor. The server
reads more optional hooks of the same class (see `batchpilot.serve.model`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any, TypeGuard

from .callables import is_async_callable

__all__ = ["NotAModelError", "instantiate", "is_model_class", "predict_is_async", "set_up"]


class NotAModelError(TypeError):
    """A class without a ``predict(self, batch)`` method."""


def is_model_class(target: Any) -> TypeGuard[type]:
    """Whether ``target`` is a model class: a class (not an instance) with ``predict``."""
    return inspect.isclass(target) and callable(getattr(target, "predict", None))


def _check(cls: type) -> None:
    if not is_model_class(cls):
        raise NotAModelError(f"class {cls.__qualname__} has no predict(self, batch) method")


def predict_is_async(cls: type) -> bool:
    """Whether the model class's ``predict`` is ``async def``.

    Raises:
        NotAModelError: ``cls`` has no ``predict``.
    """
    _check(cls)
    return is_async_callable(cls.predict)  # type: ignore[attr-defined]


def instantiate(cls: type, init: Mapping[str, Any] | None = None) -> Any:
    """A new instance of the model class ``cls`` (``init``: its keyword arguments), not set up.

    Raises:
        NotAModelError: ``cls`` has no ``predict``.
    """
    _check(cls)
    return cls(**(init or {}))


def set_up(model: Any) -> None:
    """Call the model's ``setup()``, if it has one."""
    setup: Callable[[], Any] | None = getattr(model, "setup", None)
    if setup is not None:
        setup()
