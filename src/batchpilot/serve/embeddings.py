"""A local Hugging Face encoder as a batch model: token ids in, one embedding each out.

`Embedder` loads ``AutoTokenizer`` and ``AutoModel`` from a folder (never from a
hub), and embeds by mean pooling the last hidden state over each text's real tokens,
optionally normalised to unit length. Its items are token-id lists, so that a
batch's cost is known before it runs: `tokenize` turns texts into items, `cost` is
an item's token count, and `predict` pads a batch (``collate="pad"``), runs the
model and pools. On CUDA the padded batch goes through pinned host memory with a
non-blocking copy, and the model itself runs under a lock: while one batch runs,
the next is padded and copied on another worker thread.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._core.padding import PadCollator

__all__ = ["Embedder"]


class Embedder:
    """An encoder from ``model_dir`` serving mean-pooled embeddings.

    Args:
        model_dir: a folder written by ``save_pretrained`` (tokenizer and model).
        device: ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        normalize: scale each embedding to unit length (cosine similarity = dot).
        max_length: texts are truncated to this many tokens (default: the
            tokenizer's ``model_max_length``, capped at 8192).
    """

    def __init__(
        self,
        model_dir: str | Path,
        *,
        device: str = "cpu",
        normalize: bool = True,
        max_length: int | None = None,
    ) -> None:
        self.model_dir = Path(model_dir)  # where the tokenizer and weights are
        self.device = device  # where the model runs
        self.normalize = normalize  # whether embeddings are unit length
        self.max_length = max_length  # truncation length; None until setup reads it
        self.name = self.model_dir.name  # the id /v1/models lists
        self.tokenizer: Any = None  # the fast tokenizer, after setup()
        self.model: Any = None  # the torch module, after setup()
        self._collator: PadCollator | None = None  # pads with the tokenizer's pad id
        self._model_lock = threading.Lock()  # one forward pass at a time

    def setup(self) -> None:
        """Load the tokenizer and the model (once per worker process)."""
        from transformers import AutoModel, AutoTokenizer

        if not self.model_dir.is_dir():
            raise FileNotFoundError(f"no model folder {self.model_dir}")
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_dir)
        self.model = AutoModel.from_pretrained(self.model_dir).to(self.device).eval()
        if self.max_length is None:
            self.max_length = min(int(self.tokenizer.model_max_length), 8192)
        self._collator = PadCollator(pad_id=int(self.tokenizer.pad_token_id or 0))

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each text (with the model's special tokens), truncated."""
        encoded = self.tokenizer(list(texts), truncation=True, max_length=self.max_length)
        return [list(ids) for ids in encoded["input_ids"]]

    @staticmethod
    def cost(item: Sequence[int]) -> int:
        """An item's cost: its token count."""
        return len(item)

    def predict(self, batch: Sequence[Sequence[int]]) -> np.ndarray:
        """Embed a batch of token-id lists: one float32 row per item."""
        import torch

        assert self._collator is not None, "setup() has not run"
        columns, _ = self._collator.collate([torch.tensor(ids) for ids in batch])
        on_gpu = self.device.startswith("cuda")
        inputs = {
            key: value.pin_memory().to(self.device, non_blocking=True) if on_gpu else value
            for key, value in columns.items()
        }
        mask = inputs["attention_mask"].unsqueeze(-1).to(torch.float32)
        with self._model_lock, torch.inference_mode():  # grad mode is per thread
            hidden = self.model(**inputs).last_hidden_state
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
            if self.normalize:
                pooled = torch.nn.functional.normalize(pooled, dim=-1)
            return pooled.to(torch.float32).cpu().numpy()
