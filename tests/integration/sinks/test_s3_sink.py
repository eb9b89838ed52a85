"""Part files on a real S3 endpoint (moto's server on 127.0.0.1, through s3fs)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from batchpilot import sinks
from batchpilot.errors import ConfigError

pytestmark = pytest.mark.slow


def keys(bucket: Any, url: str) -> list[str]:
    return sorted(Path(key).name for key in bucket.filesystem().ls(url))


def test_a_part_is_one_object_written_at_commit(s3: Any) -> None:
    url = f"{s3.url}/out/jsonl"
    sink = sinks.jsonl(url, storage_options=s3.storage_options, compression="gzip")
    sink.prepare(resume=False)
    part = sink.open_part(12)
    part.write(pa.table({"id": [1, 2]}))
    part.write(pa.table({"id": [3]}))
    assert keys(s3, s3.url) == []  # nothing under the folder before commit
    info = part.commit()
    assert info.path == f"{url}/part-00012.jsonl.gz" and info.rows == 3

    again = sink.open_part(12)  # the partition redone: its part is replaced
    again.write(pa.table({"id": [4]}))
    sink.finish([again.commit()])

    assert keys(s3, url) == ["_SUCCESS", "_manifest.json", "part-00012.jsonl.gz"]
    fs = s3.filesystem()
    assert gzip.decompress(fs.cat_file(f"{url}/part-00012.jsonl.gz")) == b'{"id": 4}\n'
    manifest = json.loads(fs.cat_file(f"{url}/_manifest.json"))
    assert manifest["rows"] == 1 and manifest["parts"][0]["path"] == "part-00012.jsonl.gz"

    with pytest.raises(ConfigError, match="already holds output"):
        sink.prepare(resume=False)
    sink.prepare(resume=True)
    assert keys(s3, url) == ["part-00012.jsonl.gz"]


def test_finish_deletes_leftover_parts_on_s3(s3: Any) -> None:
    url = f"{s3.url}/out"
    sink = sinks.parquet(url, storage_options=s3.storage_options)
    sink.prepare(resume=False)
    parts = []
    for partition in range(3):
        part = sink.open_part(partition)
        part.write(pa.table({"id": [partition]}))
        parts.append(part.commit())
    sink.finish(parts[1:])
    assert keys(s3, url) == [
        "_SUCCESS",
        "_manifest.json",
        "part-00001.parquet",
        "part-00002.parquet",
    ]
