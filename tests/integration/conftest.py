"""Batch functions shared by the distributed bulk tests (Dask, Ray), and the code
blocks of a docs page for the docs tests.

They are fixtures because ``--import-mode=importlib`` lets no test module import
another module of the test tree. The functions themselves are module-level, so
a worker process can unpickle them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

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


@dataclass(frozen=True)
class DocBlock:
    """A fenced code block of a docs page.

    ``skip`` is the reason given by a ``<!-- docs-test: skip: REASON -->`` line just
    above the fence: the block cannot run in a test (it installs, or needs a cluster).
    """

    page: str  # relative to the repository root, e.g. "docs/serve.md"
    line: int  # of the opening fence, 1-based
    lang: str
    code: str
    skip: str | None

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"


_FENCE = re.compile(
    r"^(?:<!-- docs-test: skip: (?P<skip>[^\n]*?) -->\n)?```(?P<lang>\w*)\n(?P<code>.*?)^```$",
    re.M | re.S,
)


def _doc_blocks(page: str) -> list[DocBlock]:
    text = (ROOT / page).read_text(encoding="utf-8")
    return [
        DocBlock(
            page,
            text.count("\n", 0, match.start("lang")) + 1,
            match["lang"],
            match["code"],
            match["skip"],
        )
        for match in _FENCE.finditer(text)
    ]


@pytest.fixture
def doc_blocks() -> Callable[[str], list[DocBlock]]:
    """``doc_blocks(page)``: the fenced code blocks of ``page``, in order."""
    return _doc_blocks


@pytest.fixture(scope="session")
def encoder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small random-weight encoder saved once per test session (no hub, no download)."""
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
