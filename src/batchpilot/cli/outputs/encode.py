"""JSON Lines text of results (the encoder, `JSON`, is shared: `batchpilot._core.jsonrows`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..._core.jsonrows import JSON
from ..records_io import to_row

__all__ = ["jsonl_text"]


def jsonl_text(results: Sequence[Any]) -> str:
    """JSON Lines text (one line per result, see `to_row`)."""
    encode = JSON.encode
    try:  # the encoder itself handles dicts, tuples and numpy values: no to_row copy
        return "".join(encode(v if type(v) is dict else {"result": v}) + "\n" for v in results)
    except TypeError:  # e.g. a key JSON cannot hold: to_row makes every key a str
        return "".join(encode(to_row(v)) + "\n" for v in results)
