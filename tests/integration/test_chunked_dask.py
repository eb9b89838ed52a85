"""Seed 002's chunked processor on a real Dask LocalCluster (ChunkConfig.executor="dask")."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from batchpilot.chunked import BatchProcessor, ChunkConfig, ChunkStrategy

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


def checked_square(target: int) -> int:
    if target == 17:
        raise ValueError("target 17")
    return target * target


def test_chunks_run_on_a_dask_cluster_with_failures_isolated(tmp_path: Path) -> None:
    config = ChunkConfig(
        chunk_size=10, max_concurrent_chunks=2, executor="dask", storage_dir=tmp_path
    )
    processor = BatchProcessor(config)
    results = asyncio.run(
        processor.process_targets(range(50), checked_square, "parallel", ChunkStrategy.FIXED)
    )
    assert results == [t * t for t in range(50) if t != 17]
    assert [f.index for f in processor.failures] == [17]
    assert processor.result_storage.load_results(processor.stats.run_id) == results
