"""A small random-weight encoder saved once per test session (no hub, no download)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def encoder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("transformers")
    from batchpilot.random_encoder import save_random_encoder

    return save_random_encoder(
        tmp_path_factory.mktemp("encoder") / "tiny-bert",
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
