"""``batchpilot serve --embeddings DIR`` answers the real OpenAI SDK, sync and async."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from batchpilot.random_encoder import synthetic_texts

openai = pytest.importorskip("openai")
pytest.importorskip("transformers")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


def embeddings_server(serve: Any, encoder_dir: Path, *args: str) -> Any:
    return serve(f"--embeddings={encoder_dir}", *args)


def reference(encoder_dir: Path, texts: list[str]) -> np.ndarray:
    """Each text embedded alone in this process: what every answer must equal."""
    from batchpilot.serve import Embedder

    embedder = Embedder(encoder_dir)
    embedder.setup()
    return np.stack([embedder.predict([ids])[0] for ids in embedder.tokenize(texts)])


@pytest.mark.parametrize("budget", ["4096", "0"], ids=["token-budget", "count-only"])
def test_the_sync_sdk_gets_one_embedding_per_input_with_real_token_counts(
    serve: Any, encoder_dir: Path, budget: str
) -> None:
    server = embeddings_server(serve, encoder_dir, "--max-batch-tokens", budget)
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{server.port}/v1", api_key="unused")
    texts = synthetic_texts(9, median=20, sigma=1.0, hi=128, seed=4)
    answer = client.embeddings.create(model="tiny-bert", input=texts, encoding_format="float")
    assert [row.index for row in answer.data] == list(range(9))
    got = np.array([row.embedding for row in answer.data])
    np.testing.assert_allclose(got, reference(encoder_dir, texts), atol=1e-4)
    from transformers import AutoTokenizer

    tokens = sum(len(ids) for ids in AutoTokenizer.from_pretrained(encoder_dir)(texts)["input_ids"])
    assert answer.usage.prompt_tokens == answer.usage.total_tokens == tokens
    assert [model.id for model in client.models.list()] == ["tiny-bert"]
    # The SDK's default asks for base64 and decodes it: the same vectors.
    default = client.embeddings.create(model="tiny-bert", input=texts[0])
    np.testing.assert_allclose(default.data[0].embedding, got[0], atol=1e-6)


def test_the_async_sdk_many_concurrent_requests_each_get_their_own(
    serve: Any, encoder_dir: Path
) -> None:
    server = embeddings_server(serve, encoder_dir, "--max-batch-tokens", "256")
    texts = synthetic_texts(40, median=15, sigma=1.2, hi=128, seed=8)

    async def main() -> list[Any]:
        client = openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{server.port}/v1", api_key="x")
        calls = [
            client.embeddings.create(model="m", input=text, encoding_format="float")
            for text in texts
        ]
        return list(await asyncio.gather(*calls))

    answers = asyncio.run(main())
    got = np.array([answer.data[0].embedding for answer in answers])
    np.testing.assert_allclose(got, reference(encoder_dir, texts), atol=1e-4)
    batcher = server.stats()["batcher"]
    assert batcher["batches"] < 40  # concurrent requests shared batches
    assert batcher["items"] == 40


def test_a_bad_request_is_an_openai_error_and_embeddings_answers_without_v1(
    serve: Any, encoder_dir: Path
) -> None:
    server = embeddings_server(serve, encoder_dir, "--max-batch-tokens", "0")
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{server.port}/v1", api_key="x")
    with pytest.raises(openai.BadRequestError, match="token-id inputs are not accepted"):
        client.embeddings.create(model="m", input=[[1, 2, 3]])  # type: ignore[list-item]
    plain = server.post("/embeddings", b'{"input": "hello"}')
    assert plain.status == 200 and len(plain.json()["data"]) == 1
    assert server.predict([1, 2, 3]).status in (200, 500)  # /predict still routes


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--embeddings", "/nonexistent/model"), "not a model folder"),
        (("some:target", "--embeddings", "."), "not both"),
        ((), "needs MODULE:ATTR, or --embeddings"),
    ],
)
def test_embeddings_usage_errors_are_exit_2(
    args: tuple[str, ...], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from batchpilot.cli import main

    if args and args[-1] == ".":
        args = (*args[:-1], str(Path.cwd()))
    assert main(["serve", *args]) == 2
    assert message in capsys.readouterr().err


def test_the_serve_page_example_runs_against_a_real_server(
    serve: Any, encoder_dir: Path, doc_blocks: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    (block,) = [b for b in doc_blocks("docs/serve.md") if "client.embeddings.create" in b.code]
    server = embeddings_server(serve, encoder_dir, "--max-batch-tokens", "0")
    code = block.code.replace("127.0.0.1:8000", f"127.0.0.1:{server.port}")
    exec(compile(code, "docs/serve.md", "exec"), {})
    count, tokens = capsys.readouterr().out.split()
    assert int(count) == 2 and int(tokens) > 2
