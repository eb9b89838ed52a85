"""Collate/split round trips for every mode and the errors a user can hit."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from batchpilot import BatchFailedError
from batchpilot._core.collate import (
    ConcatCollator,
    ListCollator,
    StackCollator,
    get_collator,
    split_rows,
)


def test_stack_numpy_adds_a_new_first_axis() -> None:
    collator = get_collator("stack")
    items = [np.full(3, i, dtype=np.float32) for i in range(4)]
    batch, layout = collator.collate(items)
    assert batch.shape == (4, 3)
    parts = collator.split(batch * 2, layout, 4)
    assert [p.tolist() for p in parts] == [[2 * i] * 3 for i in range(4)]


def test_stack_dicts_of_arrays_key_by_key() -> None:
    items = [{"x": np.array([i, i]), "y": np.array(i)} for i in range(3)]
    batch, layout = StackCollator().collate(items)
    assert batch["x"].shape == (3, 2)
    assert batch["y"].tolist() == [0, 1, 2]
    parts = StackCollator().split({"s": batch["x"].sum(axis=1)}, layout, 3)
    assert [int(p["s"]) for p in parts] == [0, 2, 4]


def test_stack_passes_json_objects_as_a_list() -> None:
    items = [{"a": 3}, {"a": 4}]
    batch, layout = StackCollator().collate(items)
    assert batch == items  # not {"a": [3, 4]}
    assert StackCollator().split([{"y": x["a"] * 2} for x in batch], layout, 2) == [
        {"y": 6},
        {"y": 8},
    ]


def test_stack_never_drops_a_field_of_dicts_with_different_keys() -> None:
    items = [{"x": np.zeros(2)}, {"x": np.ones(2), "y": np.ones(2)}, {"y": np.ones(2)}]
    batch, layout = StackCollator().collate(items)
    assert isinstance(batch, list)
    assert all(got is item for got, item in zip(batch, items, strict=True))
    parts = StackCollator().split(batch, layout, 3)
    assert [sorted(p) for p in parts] == [["x"], ["x", "y"], ["y"]]


def test_stack_passes_dicts_with_any_non_array_value_as_a_list() -> None:
    items = [{"x": np.zeros(2), "label": "a"}, {"x": np.ones(2), "label": "b"}]
    batch, _ = StackCollator().collate(items)
    assert isinstance(batch, list) and batch[1]["label"] == "b"
    nested = [{"inputs": {"ids": np.arange(3)}}, {"inputs": {"ids": np.arange(3)}}]
    stacked, _ = StackCollator().collate(nested)
    assert stacked["inputs"]["ids"].shape == (2, 3)  # a dict of dicts of arrays still stacks
    empty, _ = StackCollator().collate([{}, {}])
    assert empty == [{}, {}]


def test_stack_falls_back_to_a_list_for_plain_objects() -> None:
    batch, _ = StackCollator().collate(["a", "b"])
    assert batch == ["a", "b"]


def test_stack_torch_tensors() -> None:
    items = [torch.tensor([float(i), 1.0]) for i in range(3)]
    batch, layout = StackCollator().collate(items)
    assert tuple(batch.shape) == (3, 2)
    parts = StackCollator().split(batch + 1, layout, 3)
    assert [p.tolist() for p in parts] == [[1.0, 2.0], [2.0, 2.0], [3.0, 2.0]]


def test_concat_treats_first_axis_as_rows() -> None:
    collator = get_collator("concat")
    items = [np.array([1]), np.array([2, 3, 4]), np.array([5, 6])]
    batch, layout = collator.collate(items)
    assert batch.tolist() == [1, 2, 3, 4, 5, 6]
    parts = collator.split(batch * 10, layout, 3)
    assert [p.tolist() for p in parts] == [[10], [20, 30, 40], [50, 60]]


def test_concat_lists_and_tensors() -> None:
    batch, layout = ConcatCollator().collate([[1, 2], [3]])
    assert batch == [1, 2, 3]
    assert ConcatCollator().split(["a", "b", "c"], layout, 2) == [["a", "b"], ["c"]]
    tensors = [torch.ones(2, 2), torch.zeros(1, 2)]
    tbatch, tlayout = ConcatCollator().collate(tensors)
    assert tuple(tbatch.shape) == (3, 2)
    assert [tuple(p.shape) for p in ConcatCollator().split(tbatch, tlayout, 2)] == [(2, 2), (1, 2)]


def test_concat_rejects_items_without_rows() -> None:
    with pytest.raises(TypeError, match="first axis"):
        ConcatCollator().collate([np.float32(1.0)])
    with pytest.raises(TypeError, match="first axis"):
        ConcatCollator().collate([np.array(1.0)])


def test_concat_wrong_row_count_is_a_batch_failure() -> None:
    _, layout = ConcatCollator().collate([np.array([1, 2]), np.array([3])])
    with pytest.raises(BatchFailedError, match="expected 3"):
        ConcatCollator().split(np.array([1, 2]), layout, 2)


def test_list_mode_and_wrong_lengths() -> None:
    collator = get_collator("list")
    batch, layout = collator.collate((1, 2, 3))
    assert batch == [1, 2, 3]
    assert collator.split([2, 4, 6], layout, 3) == [2, 4, 6]
    with pytest.raises(BatchFailedError, match="returned 2 results, expected 3"):
        collator.split([1, 2], layout, 3)
    with pytest.raises(BatchFailedError, match="must return a sequence"):
        collator.split(42, layout, 3)


def test_split_rows_rejects_ragged_dicts() -> None:
    with pytest.raises(BatchFailedError, match="different lengths"):
        split_rows({"a": [1, 2], "b": [1]}, 2)


def test_get_collator_accepts_custom_and_rejects_unknown() -> None:
    custom = ListCollator()
    assert get_collator(custom) is custom
    with pytest.raises(ValueError, match="unknown collate mode"):
        get_collator("zip")
    with pytest.raises(TypeError):
        get_collator(3)  # type: ignore[arg-type]
