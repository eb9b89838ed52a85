"""Keyword signatures taken from an options class, so each list of settings is written once.

An engine's settings live in one frozen options class (`EngineOptions`,
`BulkOptions`); the functions that take them as keywords are written as
``def f(..., **options)`` and declare the class's fields with one of these
decorators. Type checkers then check each keyword, and ``inspect.signature``,
``help`` and the generated docs show them.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, Concatenate, ParamSpec, TypeVar

__all__ = [
    "fn_and_options_as_keywords",
    "fn_items_and_options_as_keywords",
    "options_as_keywords",
]

P = ParamSpec("P")
R = TypeVar("R")
FnT = TypeVar("FnT")
ItemsT = TypeVar("ItemsT")


def _take_keywords(function: Callable[..., Any], source: Callable[..., Any]) -> None:
    """Give ``function(..., **options)`` the signature and docs of ``source``'s keywords."""
    signature = inspect.signature(function)
    leading = [p for p in signature.parameters.values() if p.kind is not p.VAR_KEYWORD]
    keywords = [
        p.replace(kind=p.KEYWORD_ONLY) for p in inspect.signature(source).parameters.values()
    ]
    function.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=leading + keywords
    )
    function.__doc__ = function.__doc__ or inspect.getdoc(source)


def options_as_keywords(
    source: Callable[P, object],
) -> Callable[[Callable[..., R]], Callable[P, R]]:
    """Declare that a ``def f(**options)`` takes exactly ``source``'s parameters.

    Type checkers then check each keyword; ``inspect.signature`` and ``help`` show
    them, and a function without a docstring takes ``source``'s.
    """

    def declare(function: Callable[..., R]) -> Callable[P, R]:
        _take_keywords(function, source)
        return function

    return declare


def fn_and_options_as_keywords(
    source: Callable[P, object],
) -> Callable[[Callable[..., R]], Callable[Concatenate[Any, Callable[[Any], Any], P], R]]:
    """`options_as_keywords` for ``def __init__(self, fn, **options)``."""

    def declare(
        function: Callable[..., R],
    ) -> Callable[Concatenate[Any, Callable[[Any], Any], P], R]:
        _take_keywords(function, source)
        return function

    return declare


def fn_items_and_options_as_keywords(
    source: Callable[P, object],
) -> Callable[[Callable[[FnT, ItemsT], R]], Callable[Concatenate[FnT, ItemsT, P], R]]:
    """`options_as_keywords` for ``def f(fn, items, **options)`` (``map_batches``);
    ``fn`` and ``items`` keep their types (so each ``@overload`` of ``f`` may narrow them)."""

    def declare(
        function: Callable[[FnT, ItemsT], R],
    ) -> Callable[Concatenate[FnT, ItemsT, P], R]:
        _take_keywords(function, source)
        return function  # type: ignore[return-value]

    return declare
