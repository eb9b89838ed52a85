"""Splitting a batch result back into one entry per item, and telling torch tensors apart.

Shared by every collator (`batchpilot._core.collate`, `batchpilot._core.padding`)
and by the database writers. torch is never imported here: a value is a tensor only
if the user's program already imported torch.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import Any, cast

import numpy as np

from ..errors import BatchFailedError

__all__ = ["is_tensor", "result_length", "split_rows", "torch_module", "wrong_length"]


def torch_module() -> Any:
    """The torch module if the user's program already imported it, else None."""
    return sys.modules.get("torch")


def is_tensor(value: Any) -> bool:
    torch = torch_module()
    return torch is not None and isinstance(value, torch.Tensor)


def wrong_length(expected: int, got: int) -> BatchFailedError:
    return BatchFailedError(f"batch function returned {got} results, expected {expected}")


def result_length(result: Any, expected: int) -> int:
    if isinstance(result, Mapping):
        try:
            lengths = {len(value) for value in result.values()}
        except TypeError:
            raise BatchFailedError(
                f"batch function returned a dict of {type(next(iter(result.values()))).__name__}"
                f" values; expected {expected} results: a sequence, or a dict of columns"
                " with one entry per item"
            ) from None
        if len(lengths) != 1:
            raise BatchFailedError(
                f"dict result has values of different lengths: {lengths}; expected {expected}"
            )
        return lengths.pop()
    try:
        return len(result)
    except TypeError:
        raise BatchFailedError(
            f"batch function must return a sequence, got {type(result).__name__};"
            f" expected {expected} results, one per item"
        ) from None


def split_rows(result: Any, count: int) -> Sequence[Any]:
    """Split ``result`` along its first axis into ``count`` entries.

    A numpy array is returned as it is: it already is a sequence of its rows, and
    each row view is then made only when its caller's result is delivered (on the
    caller's event loop, not on the worker that ran the batch).
    """
    got = result_length(result, count)
    if got != count:
        raise wrong_length(count, got)
    if type(result) is np.ndarray:
        return cast("Sequence[Any]", result)
    if isinstance(result, Mapping):
        return [{key: value[i] for key, value in result.items()} for i in range(count)]
    if isinstance(result, np.ndarray) or is_tensor(result):
        return list(result.unbind(0) if is_tensor(result) else result)
    return list(result)
