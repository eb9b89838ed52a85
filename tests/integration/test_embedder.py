"""The random encoder loads like any Hugging Face model, and Embedder pools it exactly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from batchpilot.random_encoder import synthetic_texts

pytest.importorskip("transformers")

from batchpilot.serve.embeddings import Embedder


def test_synthetic_texts_have_the_token_counts_they_were_drawn_with(encoder_dir: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(encoder_dir)
    texts = synthetic_texts(200, median=40, sigma=0.9, hi=128, seed=3)
    rng = np.random.default_rng(3)
    drawn = np.clip(np.rint(rng.lognormal(np.log(40), 0.9, 200)), 4, 128).astype(int)
    counts = [len(ids) for ids in tokenizer(texts)["input_ids"]]
    assert counts == drawn.tolist()
    assert synthetic_texts(5, seed=1) == synthetic_texts(5, seed=1)


def test_the_saved_tokenizer_names_a_class_older_transformers_can_read(encoder_dir: Path) -> None:
    config = json.loads((encoder_dir / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "PreTrainedTokenizerFast"


def test_a_padded_batch_embeds_each_text_as_it_would_alone(encoder_dir: Path) -> None:
    embedder = Embedder(encoder_dir)
    embedder.setup()
    items = embedder.tokenize(synthetic_texts(12, median=20, sigma=1.0, hi=128, seed=5))
    assert len({len(ids) for ids in items}) > 3  # really ragged: padding matters
    batch = embedder.predict(items)
    alone = np.stack([embedder.predict([ids])[0] for ids in items])
    assert batch.shape == (12, 32) and batch.dtype == np.float32
    np.testing.assert_allclose(batch, alone, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(batch, axis=1), 1.0, rtol=1e-5)
    assert [Embedder.cost(ids) for ids in items] == [len(ids) for ids in items]


def test_texts_are_truncated_to_max_length(encoder_dir: Path) -> None:
    embedder = Embedder(encoder_dir, max_length=16, normalize=False)
    embedder.setup()
    (ids,) = embedder.tokenize([" ".join(["word"] * 100)])
    assert len(ids) == 16
    assert np.linalg.norm(embedder.predict([ids])[0]) != pytest.approx(1.0)


def test_a_missing_model_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no model folder"):
        Embedder(tmp_path / "nope").setup()
