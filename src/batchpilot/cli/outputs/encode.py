"""The one JSON encoder of every output: JSON Lines text, and JSON cells of CSV and SQLite."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ..records_io import to_row

__all__ = ["JSON", "jsonl_text"]


def _json_default(value: Any) -> Any:
    """numpy values as plain numbers and lists; anything else JSON cannot hold as str()."""
    if hasattr(value, "tolist") and type(value).__module__ == "numpy":
        return value.tolist()
    return str(value)


#: One encoder for every JSON value written.
JSON = json.JSONEncoder(default=_json_default)


def jsonl_text(results: Sequence[Any]) -> str:
    """JSON Lines text (one line per result, see `to_row`)."""
    encode = JSON.encode
    try:  # the encoder itself handles dicts, tuples and numpy values: no to_row copy
        return "".join(encode(v if type(v) is dict else {"result": v}) + "\n" for v in results)
    except TypeError:  # e.g. a key JSON cannot hold: to_row makes every key a str
        return "".join(encode(to_row(v)) + "\n" for v in results)
