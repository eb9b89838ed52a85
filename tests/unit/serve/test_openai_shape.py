"""The OpenAI embeddings request is checked field by field; the response has the SDK's shape."""

from __future__ import annotations

import base64

import numpy as np
import pytest

from batchpilot.serve.openai_shape import (
    EmbeddingsRequest,
    InvalidRequest,
    embeddings_response,
    models_response,
)


def test_a_string_input_is_one_text_and_a_list_is_many() -> None:
    assert EmbeddingsRequest.parse({"input": "hi"}).texts == ["hi"]
    request = EmbeddingsRequest.parse({"input": ["a", "b"], "model": "m", "dimensions": 2})
    assert (request.texts, request.model, request.base64, request.dimensions) == (
        ["a", "b"],
        "m",
        False,
        2,
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (["a"], "JSON object"),
        ({}, "'input' is required"),
        ({"input": []}, "non-empty"),
        ({"input": 3}, "non-empty string or list"),
        ({"input": [[1, 2]]}, "token-id inputs are not accepted"),
        ({"input": ["ok", ""]}, r"'input'\[1\] is an empty string"),
        ({"input": "a", "encoding_format": "int8"}, "encoding_format"),
        ({"input": "a", "dimensions": 0}, "dimensions"),
        ({"input": "a", "dimensions": True}, "dimensions"),
        ({"input": "a", "model": 5}, "'model' must be a string"),
        ({"input": ["a"] * 2049}, "at most 2048"),
    ],
)
def test_a_bad_request_says_which_field(body: object, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        EmbeddingsRequest.parse(body)


def test_the_response_carries_vectors_in_order_and_real_token_counts() -> None:
    vectors = [np.array([0.5, -1.0, 2.0]), np.array([1.0, 0.0, 0.25])]
    body = embeddings_response(EmbeddingsRequest.parse({"input": ["a", "b"]}), vectors, 7, "m")
    assert body["object"] == "list" and body["model"] == "m"
    assert [row["index"] for row in body["data"]] == [0, 1]
    assert body["data"][0] == {"object": "embedding", "index": 0, "embedding": [0.5, -1.0, 2.0]}
    assert body["usage"] == {"prompt_tokens": 7, "total_tokens": 7}


def test_base64_is_little_endian_float32_and_dimensions_truncate() -> None:
    request = EmbeddingsRequest.parse({"input": "a", "encoding_format": "base64", "dimensions": 2})
    body = embeddings_response(request, [np.array([0.5, -1.0, 2.0])], 3, "m")
    decoded = np.frombuffer(base64.b64decode(body["data"][0]["embedding"]), dtype="<f4")
    np.testing.assert_array_equal(decoded, [0.5, -1.0])


def test_models_lists_the_served_model() -> None:
    assert models_response("tiny", 5)["data"] == [
        {"id": "tiny", "object": "model", "created": 5, "owned_by": "batchpilot"}
    ]
