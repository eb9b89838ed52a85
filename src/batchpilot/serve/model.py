"""What `batchpilot.serve` serves: a batch function or a model class, behind one interface.

A target is

* a batch function: a list of inputs -> a list of outputs (``def`` or ``async def``);
* a model class (`batchpilot._core.models`: ``predict(self, batch)`` and optionally
  ``setup(self)``, which loads the model once per worker process), with the optional
  hooks ``decode(self, request_json)``, ``encode(self, output)``,
  ``cost(self, item)`` (an item's cost, e.g. its token count: batches are then sized
  by ``max_batch_cost``), ``tokenize(self, texts)`` (texts -> items: the model is
  then also served at ``POST /v1/embeddings``) and a ``name`` string;
  it is instantiated without arguments in the worker process, at startup;
* an instance of such a class;
* a ``"MODULE:ATTR"`` string naming any of these (ATTR may be dotted).

In a server, ``predict`` raising `SystemExit` or `KeyboardInterrupt` is a failed
prediction, not a reason to stop serving: `Model.predict` raises
`PredictInterrupted` instead, which the server answers with 500 like any other error
(an ``async def`` predict would otherwise raise it on into the server's event loop).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .._core.callables import is_async_callable
from .._core.models import NotAModelError, instantiate
from .._core.targets import TargetImportError, import_target

__all__ = ["Model", "PredictInterrupted", "TargetError", "load_model", "resolve_target"]


class TargetError(Exception):
    """The target cannot be served: bad ``MODULE:ATTR``, or not a function or model class."""


class PredictInterrupted(Exception):
    """The target's ``predict`` raised `SystemExit` or `KeyboardInterrupt` (the cause).

    Its requests are answered 500; the server goes on serving.
    """


@dataclass(frozen=True)
class Model:
    """A target reduced to the four calls the server makes.

    Attributes:
        name: label for metrics, threads and ``/stats``.
        predict: the batch function (a list of decoded inputs -> one output each);
            raises `PredictInterrupted` where the target raised `SystemExit` or
            `KeyboardInterrupt`.
        setup: called once in a worker thread before traffic, or None.
        decode: request JSON -> model input, or None (the JSON itself).
        encode: model output -> response JSON, or None (the output itself).
        cost: an item's cost (e.g. its token count), for batches sized by cost
            (``max_batch_cost``), or None (items are counted).
        tokenize: texts -> one item each; a model that has it is also served at
            ``POST /v1/embeddings`` (the OpenAI shape), or None.
    """

    name: str
    predict: Callable[[Any], Any]
    setup: Callable[[], Any] | None = None
    decode: Callable[[Any], Any] | None = None
    encode: Callable[[Any], Any] | None = None
    cost: Callable[[Any], float] | None = None
    tokenize: Callable[[list[str]], list[Any]] | None = None


def resolve_target(target: Any) -> Any:
    """Import a ``"MODULE:ATTR"`` string (the current directory is importable); pass
    anything else through.

    Raises:
        TargetError: bad spec, module not importable, or no such attribute.
    """
    if not isinstance(target, str):
        return target
    try:
        return import_target(target)
    except TargetImportError as exc:
        raise TargetError(str(exc)) from None


def load_model(
    target: Any,
    *,
    decode: Callable[[Any], Any] | None = None,
    encode: Callable[[Any], Any] | None = None,
    init: dict[str, Any] | None = None,
) -> Model:
    """The `Model` of ``target`` (see the module docstring); a class is instantiated here,
    with ``init`` as its keyword arguments.

    ``decode``/``encode`` given here override the target's own hooks.

    Raises:
        TargetError: ``target`` is neither a batch function nor a model.
    """
    resolved = resolve_target(target)
    if init and not inspect.isclass(resolved):
        raise TargetError(f"target options {sorted(init)} need a class to pass them to")
    if inspect.isclass(resolved):
        try:
            resolved = instantiate(resolved, init)
        except NotAModelError as exc:
            raise TargetError(str(exc)) from None
    predict = getattr(resolved, "predict", None)
    if callable(predict) and not inspect.isroutine(resolved):
        name = getattr(resolved, "name", None)
        return Model(
            name=name if isinstance(name, str) and name else type(resolved).__name__,
            predict=_contained(predict),
            setup=getattr(resolved, "setup", None),
            decode=decode or getattr(resolved, "decode", None),
            encode=encode or getattr(resolved, "encode", None),
            cost=getattr(resolved, "cost", None),
            tokenize=getattr(resolved, "tokenize", None),
        )
    if callable(resolved):
        return Model(
            name=getattr(resolved, "__name__", type(resolved).__name__),
            predict=_contained(resolved),
            decode=decode,
            encode=encode,
        )
    raise TargetError(
        f"cannot serve a {type(resolved).__name__}: expected a batch function or a class "
        "with predict(self, batch)"
    )


def _interrupted(exc: BaseException) -> PredictInterrupted:
    return PredictInterrupted(f"predict() raised {type(exc).__name__}({exc})")


def _contained(predict: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``predict`` (``def`` or ``async def``) raising `PredictInterrupted` in place of
    `SystemExit` and `KeyboardInterrupt`."""
    if is_async_callable(predict):

        @functools.wraps(predict)
        async def apredict(batch: Any) -> Any:
            try:
                return await predict(batch)
            except (SystemExit, KeyboardInterrupt) as exc:
                raise _interrupted(exc) from exc

        return apredict

    @functools.wraps(predict)
    def spredict(batch: Any) -> Any:
        try:
            return predict(batch)
        except (SystemExit, KeyboardInterrupt) as exc:
            raise _interrupted(exc) from exc

    return spredict
