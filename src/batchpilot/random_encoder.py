"""A small transformer encoder with random weights, for trying things without a hub.

`save_random_encoder` trains a WordPiece tokenizer locally with ``tokenizers``,
builds a BERT encoder from its config with random weights, and saves both with
``save_pretrained`` into a folder that ``AutoTokenizer``/``AutoModel`` (and so
``batchpilot serve --embeddings``) load like any Hugging Face model.
`synthetic_texts` makes texts whose token counts follow a lognormal distribution,
the shape of real text lengths. Tests, benchmarks and the demo use both; needs the
``embeddings`` extra.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np

__all__ = ["WORDS", "save_random_encoder", "synthetic_texts"]

_SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
_SYLLABLES = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"]


def _words(count: int) -> list[str]:
    """``count`` distinct pronounceable words, the same on every call."""
    rng = np.random.default_rng(7)
    words: set[str] = set()
    while len(words) < count:
        words.add("".join(rng.choice(_SYLLABLES, size=int(rng.integers(2, 4)))))
    return sorted(words)


WORDS = _words(4000)  # the corpus vocabulary: each word is one token after training


def synthetic_texts(
    count: int, *, median: float = 40, sigma: float = 0.9, lo: int = 4, hi: int = 512, seed: int = 0
) -> list[str]:
    """``count`` texts whose token counts (with [CLS] and [SEP]) are lognormal.

    The median and sigma are of the token count, clipped to ``[lo, hi]``; the same
    seed gives the same texts.
    """
    rng = np.random.default_rng(seed)
    lengths = np.clip(np.rint(rng.lognormal(np.log(median), sigma, count)), lo, hi).astype(int)
    return [" ".join(rng.choice(WORDS, size=int(n) - 2)) for n in lengths]


def save_random_encoder(
    folder: str | Path,
    *,
    hidden_size: int = 256,
    num_hidden_layers: int = 4,
    num_attention_heads: int = 4,
    intermediate_size: int = 1024,
    vocab_size: int = 8000,
    max_position_embeddings: int = 512,
    seed: int = 0,
) -> Path:
    """Save a random-weight BERT encoder and its locally trained tokenizer into ``folder``."""
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    folder = Path(folder)
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=_SPECIAL)
    tokenizer.train_from_iterator(_corpus(), trainer)
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)],
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        model_max_length=max_position_embeddings,
        **{name.strip("[]").lower() + "_token": name for name in _SPECIAL},
    )
    fast.save_pretrained(folder)
    _name_the_tokenizer_class(folder / "tokenizer_config.json")
    config = BertConfig(
        vocab_size=tokenizer.get_vocab_size(),
        hidden_size=hidden_size,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=num_attention_heads,
        intermediate_size=intermediate_size,
        max_position_embeddings=max_position_embeddings,
    )
    torch.manual_seed(seed)
    BertModel(config).eval().save_pretrained(folder)
    return folder


def _corpus() -> Iterator[str]:
    for start in range(0, len(WORDS), 50):
        yield " ".join(WORDS[start : start + 50])


def _name_the_tokenizer_class(path: Path) -> None:
    """Older transformers (4.x, e.g. in infinity-emb) cannot read the class 5.x writes."""
    config = json.loads(path.read_text())
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    path.write_text(json.dumps(config, indent=2))
