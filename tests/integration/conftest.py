"""Batch functions shared by the distributed bulk tests (Dask, Ray).

They are fixtures because ``--import-mode=importlib`` lets no test module import
another module of the test tree. The functions themselves are module-level, so
a worker process can unpickle them.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

BatchFunction = Callable[[list[int]], list[int]]


def _double(xs: list[int]) -> list[int]:
    return [x * 2 for x in xs]


def _reject_sevens(xs: list[int]) -> list[int]:
    if any(x % 7 == 0 for x in xs):
        raise ValueError("multiple of seven")
    return xs


@pytest.fixture
def double() -> BatchFunction:
    """Doubles every item."""
    return _double


@pytest.fixture
def reject_sevens() -> BatchFunction:
    """Returns the batch unchanged, or raises `ValueError` if it holds a multiple of 7."""
    return _reject_sevens
