"""The OpenAI embeddings API's request and response, as plain functions.

``POST /v1/embeddings`` takes ``{"input": str | [str, ...], "model": str,
"encoding_format": "float" | "base64", "dimensions": int?, "user": str?}`` and
answers ``{"object": "list", "data": [{"object": "embedding", "index": i,
"embedding": [...] | "base64"}], "model": str, "usage": {"prompt_tokens": n,
"total_tokens": n}}``. Base64 is the float32 little-endian bytes of each vector,
which is what the ``openai`` SDK decodes. Token-id inputs (lists of ints) are
refused: the server tokenises, so that usage counts are its own.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

__all__ = [
    "EmbeddingsRequest",
    "InvalidRequest",
    "embeddings_response",
    "models_response",
    "openai_error",
]

MAX_INPUTS = 2048
"""The most inputs one request may carry (OpenAI's own limit)."""


class InvalidRequest(ValueError):
    """A request the client must fix; the message says what, in OpenAI's words."""


@dataclass(frozen=True)
class EmbeddingsRequest:
    """A checked embeddings request."""

    texts: list[str]  # one per input, in order
    model: str | None  # the model the client named, if any
    base64: bool  # encoding_format == "base64"
    dimensions: int | None  # truncate each vector to this many, if set

    @classmethod
    def parse(cls, body: Any) -> EmbeddingsRequest:
        """Check a decoded JSON body; `InvalidRequest` says what is wrong."""
        if not isinstance(body, dict):
            raise InvalidRequest("the body must be a JSON object with an 'input' field")
        if "input" not in body:
            raise InvalidRequest("'input' is required: a string or a list of strings")
        raw = body["input"]
        texts = [raw] if isinstance(raw, str) else raw
        if not isinstance(texts, list) or not texts:
            raise InvalidRequest("'input' must be a non-empty string or list of strings")
        if len(texts) > MAX_INPUTS:
            raise InvalidRequest(f"'input' may hold at most {MAX_INPUTS} items, got {len(texts)}")
        for index, text in enumerate(texts):
            if not isinstance(text, str):
                raise InvalidRequest(
                    f"'input'[{index}] must be a string (token-id inputs are not accepted),"
                    f" got {type(text).__name__}"
                )
            if not text:
                raise InvalidRequest(f"'input'[{index}] is an empty string")
        encoding = body.get("encoding_format", "float")
        if encoding not in ("float", "base64"):
            raise InvalidRequest(f"'encoding_format' must be 'float' or 'base64', got {encoding!r}")
        dimensions = body.get("dimensions")
        if dimensions is not None and (
            isinstance(dimensions, bool) or not isinstance(dimensions, int) or dimensions < 1
        ):
            raise InvalidRequest(f"'dimensions' must be a positive integer, got {dimensions!r}")
        model = body.get("model")
        if model is not None and not isinstance(model, str):
            raise InvalidRequest(f"'model' must be a string, got {type(model).__name__}")
        return cls(texts, model, encoding == "base64", dimensions)


def embeddings_response(
    request: EmbeddingsRequest, vectors: Sequence[np.ndarray], tokens: int, model: str
) -> dict[str, Any]:
    """The response body for ``request``: one vector per input, and the tokens counted."""
    data = []
    for index, vector in enumerate(vectors):
        row = np.asarray(vector, dtype=np.float32)
        if request.dimensions is not None:
            row = row[: request.dimensions]
        encoded: Any = (
            base64.b64encode(row.astype("<f4").tobytes()).decode("ascii")
            if request.base64
            else row.tolist()
        )
        data.append({"object": "embedding", "index": index, "embedding": encoded})
    return {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def models_response(model: str, created: int) -> dict[str, Any]:
    """``GET /v1/models``: the one model this server serves."""
    return {
        "object": "list",
        "data": [{"id": model, "object": "model", "created": created, "owned_by": "batchpilot"}],
    }


def openai_error(message: str) -> bytes:
    """An error body in OpenAI's shape, which its SDK shows as the exception's message."""
    error = {"message": " ".join(message.split()), "type": "invalid_request_error"}
    return orjson.dumps({"error": {**error, "param": None, "code": None}})
