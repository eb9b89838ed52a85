"""Collate single items into one batch and split the batch result back per item.

Modes:
    ``"stack"`` (default): numpy arrays are stacked along a new first axis, torch
        tensors likewise; dicts are stacked key by key only when every item has the
        same keys and every value stacks into an array or tensor (dicts of arrays).
        Anything else (JSON objects, mixed keys) is passed as a plain list, never
        with a field dropped. The result is split along its first axis, one entry
        per item.
    ``"concat"``: each item's first axis is rows (Triton style); items are
        concatenated along it and the result is split back by each item's row count.
    ``"list"``: the batch function receives a list and returns a sequence.
    ``"pad"``: token-id sequences padded into ``input_ids`` and ``attention_mask``
        (`batchpilot._core.padding`); per-token outputs are trimmed back per item.

A custom `Collator` (any object with ``collate`` and ``split``) may be passed instead.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from .padding import PadCollator
from .rows import is_tensor, result_length, split_rows, torch_module, wrong_length

__all__ = ["Collator", "ConcatCollator", "ListCollator", "StackCollator", "get_collator"]


@runtime_checkable
class Collator(Protocol):
    """Turns a list of items into a batch, and a batch result back into per-item results."""

    def collate(self, items: Sequence[Any]) -> tuple[Any, Any]:
        """Return ``(batch, layout)``; ``layout`` is whatever ``split`` needs."""
        ...

    def split(self, result: Any, layout: Any, count: int) -> Sequence[Any]:
        """Return exactly ``count`` per-item results or raise `BatchFailedError`."""
        ...


class ListCollator:
    """Pass items as a list; expect a sequence of the same length back."""

    def collate(self, items: Sequence[Any]) -> tuple[Any, Any]:
        return list(items), None

    def split(self, result: Any, layout: Any, count: int) -> Sequence[Any]:
        return split_rows(result, count)


class StackCollator:
    """Stack arrays, tensors and dicts of arrays along a new first axis."""

    def collate(self, items: Sequence[Any]) -> tuple[Any, Any]:
        return _stack(items), None

    def split(self, result: Any, layout: Any, count: int) -> Sequence[Any]:
        return split_rows(result, count)


def _stack(items: Sequence[Any]) -> Any:
    first = items[0]
    if type(first) is np.ndarray and set(map(type, items)) == {np.ndarray}:
        # Same result as np.stack for plain arrays (ragged shapes raise ValueError in
        # both), about 3x faster for many small items: the online engine's hot path.
        return np.array(items)
    if isinstance(first, np.ndarray) and all(isinstance(i, np.ndarray) for i in items):
        return np.stack(items)
    if is_tensor(first) and all(is_tensor(i) for i in items):
        return torch_module().stack(list(items))
    if isinstance(first, Mapping) and first and _same_keys(first, items):
        columns = {key: _stack([item[key] for item in items]) for key in first}
        if all(_is_column(column) for column in columns.values()):
            return columns
    return list(items)


def _same_keys(first: Mapping[Any, Any], items: Sequence[Any]) -> bool:
    keys = first.keys()
    return all(isinstance(item, Mapping) and item.keys() == keys for item in items)


def _is_column(value: Any) -> bool:
    """A stacked column: an array, a tensor, or a dict of such columns."""
    if isinstance(value, Mapping):
        return all(_is_column(column) for column in value.values())
    return isinstance(value, np.ndarray) or is_tensor(value)


class ConcatCollator:
    """Concatenate along the first axis (rows); split the result back by row counts."""

    def collate(self, items: Sequence[Any]) -> tuple[Any, Any]:
        counts = [_rows(item) for item in items]
        first = items[0]
        if is_tensor(first):
            return torch_module().cat(list(items)), counts
        if isinstance(first, np.ndarray):
            return np.concatenate(items), counts
        return [row for item in items for row in item], counts

    def split(self, result: Any, layout: Any, count: int) -> list[Any]:
        counts: list[int] = layout
        total = sum(counts)
        got = result_length(result, total)
        if got != total:
            raise wrong_length(total, got)
        bounds = np.cumsum(counts)[:-1].tolist()
        if isinstance(result, np.ndarray):
            return list(np.split(result, bounds))
        if is_tensor(result):
            return list(result.split(counts))
        starts = [0, *bounds]
        return [result[start : start + n] for start, n in zip(starts, counts, strict=True)]


def _rows(item: Any) -> int:
    shape = getattr(item, "shape", None)
    if shape is not None and len(shape) == 0:
        raise TypeError("collate='concat' needs items with a first axis, got a 0-d array")
    try:
        return len(item)
    except TypeError:
        raise TypeError(
            f"collate='concat' needs items with a first axis, got {type(item).__name__}"
        ) from None


_BY_NAME: dict[str, Collator] = {
    "stack": StackCollator(),
    "concat": ConcatCollator(),
    "list": ListCollator(),
    "pad": PadCollator(),
}


def get_collator(collate: str | Collator) -> Collator:
    """Resolve a mode name or pass a custom collator through."""
    if isinstance(collate, str):
        try:
            return _BY_NAME[collate]
        except KeyError:
            raise ValueError(
                f"unknown collate mode {collate!r}; expected one of {sorted(_BY_NAME)}"
            ) from None
    if isinstance(collate, Collator):
        return collate
    raise TypeError(f"collate must be a mode name or a Collator, got {type(collate).__name__}")
