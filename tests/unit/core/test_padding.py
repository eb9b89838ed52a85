"""collate='pad': token ids padded into input_ids + attention_mask, outputs trimmed back."""

from __future__ import annotations

import numpy as np
import pytest

from batchpilot._core.padding import PadCollator


def test_lists_of_ids_pad_to_the_longest_with_a_mask() -> None:
    batch, lengths = PadCollator(pad_id=9).collate([[5, 6, 7], [8]])
    assert lengths == [3, 1]
    np.testing.assert_array_equal(batch["input_ids"], [[5, 6, 7], [8, 9, 9]])
    np.testing.assert_array_equal(batch["attention_mask"], [[1, 1, 1], [1, 0, 0]])


def test_dict_items_pad_every_key_and_keep_their_own_mask() -> None:
    items = [
        {"input_ids": [1, 2], "token_type_ids": [0, 1], "attention_mask": [1, 1]},
        {"input_ids": [3], "token_type_ids": [1], "attention_mask": [1]},
    ]
    batch, _ = PadCollator().collate(items)
    np.testing.assert_array_equal(batch["token_type_ids"], [[0, 1], [1, 0]])
    np.testing.assert_array_equal(batch["attention_mask"], [[1, 1], [1, 0]])


def test_per_token_outputs_are_trimmed_and_per_row_outputs_kept() -> None:
    collator = PadCollator()
    _, lengths = collator.collate([[1, 2, 3], [4]])
    per_token = np.arange(2 * 3 * 2).reshape(2, 3, 2)
    rows = collator.split(per_token, lengths, 2)
    assert [row.shape for row in rows] == [(3, 2), (1, 2)]
    pooled = np.ones((2, 8))
    assert [row.shape for row in collator.split(pooled, lengths, 2)] == [(8,), (8,)]
    both = collator.split({"tokens": per_token, "pooled": pooled}, lengths, 2)
    assert both[1]["tokens"].shape == (1, 2) and both[1]["pooled"].shape == (8,)


def test_per_token_can_be_said_when_the_shape_is_ambiguous() -> None:
    _, lengths = PadCollator().collate([[1, 2, 3], [4]])
    width_equals_length = np.ones((2, 3))
    assert [r.shape for r in PadCollator().split(width_equals_length, lengths, 2)] == [(3,), (1,)]
    kept = PadCollator(per_token=False).split(width_equals_length, lengths, 2)
    assert [r.shape for r in kept] == [(3,), (3,)]


def test_torch_tensors_in_give_torch_tensors_out() -> None:
    torch = pytest.importorskip("torch")
    batch, lengths = PadCollator().collate([torch.tensor([1, 2]), torch.tensor([3])])
    assert isinstance(batch["input_ids"], torch.Tensor)
    assert batch["input_ids"].tolist() == [[1, 2], [3, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1], [1, 0]]
    rows = PadCollator().split(torch.zeros(2, 2, 4), lengths, 2)
    assert [tuple(r.shape) for r in rows] == [(2, 4), (1, 4)]


@pytest.mark.parametrize(
    ("items", "message"),
    [
        (["a text"], "tokenize the text first"),
        ([3], "sequences of token ids"),
        ([{"ids": [1]}], "input_ids"),
        ([{"input_ids": [1, 2], "token_type_ids": [0]}], "one length"),
        ([{"input_ids": [1]}, {"input_ids": [1], "token_type_ids": [0]}], "same keys"),
    ],
)
def test_what_cannot_be_padded_is_a_clear_type_error(items: list[object], message: str) -> None:
    with pytest.raises(TypeError, match=message):
        PadCollator().collate(items)


def test_collate_pad_is_a_mode_of_every_engine() -> None:
    from batchpilot import Batcher

    def lengths(batch: dict[str, np.ndarray]) -> np.ndarray:
        return batch["attention_mask"].sum(axis=1)  # one per row: each item's real length

    batcher = Batcher(lengths, collate="pad", max_wait=0.0)
    try:
        assert int(batcher([4, 5, 6])) == 3
    finally:
        batcher.close()

    def per_token(batch: dict[str, np.ndarray]) -> np.ndarray:
        return batch["input_ids"] * 10  # (rows, longest): trimmed back per item

    from batchpilot._core.collate import get_collator

    collator = get_collator("pad")
    batch, layout = collator.collate([[1, 2, 3], [4]])
    rows = collator.split(per_token(batch), layout, 2)
    assert [list(r) for r in rows] == [[10, 20, 30], [40]]
