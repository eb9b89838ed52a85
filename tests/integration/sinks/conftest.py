"""A real S3 endpoint for the sink tests: moto's server on 127.0.0.1, used through s3fs.

`s3_endpoint` starts one ``ThreadedMotoServer`` per session on a free port of
127.0.0.1; `s3_bucket` makes a new bucket per test and gives the ``s3://`` URL
and the fsspec ``storage_options`` that reach it (also from a child process).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest


@dataclass(frozen=True)
class S3Bucket:
    """A bucket of the test S3 endpoint."""

    url: str  # s3://bucket
    storage_options: dict[str, Any]

    def fs(self) -> Any:
        """An s3fs filesystem on the endpoint (listings not cached)."""
        import s3fs

        return s3fs.S3FileSystem(**self.storage_options, skip_instance_cache=True)


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """``http://127.0.0.1:PORT`` of a moto S3 server, for the whole session."""
    pytest.importorskip("s3fs")
    server_module = pytest.importorskip("moto.server")
    server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3_bucket(s3_endpoint: str) -> S3Bucket:
    """A new, empty bucket."""
    options = {
        "key": "testing",
        "secret": "testing",
        "client_kwargs": {"endpoint_url": s3_endpoint, "region_name": "eu-west-1"},
    }
    bucket = S3Bucket(f"s3://test-{uuid.uuid4().hex[:12]}", options)
    bucket.fs().mkdir(bucket.url)
    return bucket
