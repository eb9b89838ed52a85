"""``collate="pad"``: token-id sequences padded into one rectangular batch.

Each item is a sequence of token ids (a list, a 1-D numpy array or a 1-D torch
tensor) or a dict of such sequences of one length (``input_ids``, and maybe
``token_type_ids``). The batch is a dict of ``(batch, longest)`` arrays:
``input_ids`` padded with ``pad_id``, every other key padded with 0, and an
``attention_mask`` of 1 for real tokens (an item's own mask, if it has one, is
padded like the rest). Torch tensors in, torch tensors out; otherwise numpy.

The result is split back one row per item; a per-token output (its second axis as
long as the padded batch) is trimmed to each item's own length, so padding never
reaches the caller. ``per_token`` says so explicitly where a per-row output could
happen to be as wide as the batch is long.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .rows import is_tensor, split_rows, torch_module

__all__ = ["PadCollator"]

_IDS = "input_ids"
_MASK = "attention_mask"


class PadCollator:
    """Pad token-id sequences into ``input_ids`` + ``attention_mask``; trim outputs back."""

    def __init__(self, pad_id: int = 0, per_token: bool | None = None) -> None:
        self.pad_id = pad_id  # what input_ids are padded with (the tokenizer's pad token)
        self.per_token = per_token  # True/False: outputs are/are not per token; None: infer

    def collate(self, items: Sequence[Any]) -> tuple[Any, Any]:
        columns = [_columns(item) for item in items]
        keys = list(columns[0])
        if any(list(column) != keys for column in columns):
            raise TypeError("collate='pad' needs every item to have the same keys")
        lengths = [len(column[_IDS]) for column in columns]
        tensors = is_tensor(columns[0][_IDS])
        batch = {
            key: _pad(
                [column[key] for column in columns], self.pad_id if key == _IDS else 0, tensors
            )
            for key in keys
        }
        if _MASK not in batch:
            ones = [_ones_like(column[_IDS], tensors) for column in columns]
            batch[_MASK] = _pad(ones, 0, tensors)
        return batch, lengths

    def split(self, result: Any, layout: Any, count: int) -> Sequence[Any]:
        lengths: list[int] = layout
        longest = max(lengths)
        rows = split_rows(result, count)
        if isinstance(result, Mapping):
            trimmed = {key: self._is_per_token(value, longest) for key, value in result.items()}
            return [
                {key: row[key][:n] if trimmed[key] else row[key] for key in row}
                for row, n in zip(rows, lengths, strict=True)
            ]
        if not self._is_per_token(result, longest):
            return rows
        return [row[:n] for row, n in zip(rows, lengths, strict=True)]

    def _fill(self, key: str) -> int:
        return self.pad_id if key == _IDS else 0

    def _is_per_token(self, value: Any, longest: int) -> bool:
        if self.per_token is not None:
            return self.per_token
        shape = getattr(value, "shape", None)
        return shape is not None and len(shape) >= 2 and shape[1] == longest


def _columns(item: Any) -> dict[str, Any]:
    if isinstance(item, Mapping):
        if _IDS not in item:
            raise TypeError(f"collate='pad' needs a dict item to have {_IDS!r}, got {list(item)}")
        lengths = {len(value) for value in item.values()}
        if len(lengths) != 1:
            raise TypeError(f"collate='pad' needs an item's sequences of one length, got {lengths}")
        return dict(item)
    is_sequence = isinstance(item, (Sequence, np.ndarray)) or is_tensor(item)
    if isinstance(item, (str, bytes)) or not is_sequence:
        raise TypeError(
            f"collate='pad' needs sequences of token ids, got {type(item).__name__}"
            " (tokenize the text first, or pass a dict with input_ids)"
        )
    return {_IDS: item}


def _ones_like(sequence: Any, tensors: bool) -> Any:
    if tensors:
        return torch_module().ones(len(sequence), dtype=torch_module().long)
    return np.ones(len(sequence), dtype=np.int64)


def _pad(sequences: list[Any], fill: int, tensors: bool) -> Any:
    longest = max(len(sequence) for sequence in sequences)
    if tensors:
        torch = torch_module()
        out = torch.full((len(sequences), longest), fill, dtype=sequences[0].dtype)
    else:
        out = np.full((len(sequences), longest), fill, dtype=np.int64)
    for row, sequence in enumerate(sequences):
        out[row, : len(sequence)] = sequence if tensors else np.asarray(sequence)
    return out
