"""Graceful shutdown of seed 002's BatchProcessor in a real subprocess.

SIGINT (routed to ``processor.shutdown`` with ``loop.add_signal_handler``) stops the
run at a chunk boundary with every stored chunk intact; SIGKILL mid-run leaves only
whole chunks on disk (writes are atomic renames). The child signals readiness on
stdout once its first chunk is stored; the remaining chunks wait on a gate the
SIGINT handler opens, so nothing depends on timing.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from batchpilot.chunked import ResultStorage

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]

CHILD = textwrap.dedent(
    """
    import asyncio, json, signal, sys, threading
    from batchpilot.chunked import BatchProcessor, ChunkConfig

    storage_dir = sys.argv[1]
    processor = BatchProcessor(ChunkConfig(
        chunk_size=5, max_concurrent_chunks=2, storage_dir=storage_dir, result_format="json"
    ))
    gate = threading.Event()

    def work(target):
        if target >= 5:
            gate.wait(30)  # later chunks wait until the signal arrives
        return {"target": target, "square": target * target}

    def announce(results):
        if results and results[0]["target"] == 0:
            print("READY", processor.stats.run_id, flush=True)

    def on_sigint():
        processor.shutdown()
        gate.set()

    async def main():
        asyncio.get_running_loop().add_signal_handler(signal.SIGINT, on_sigint)
        processor.result_storage.add_result_processor(announce)
        results = await processor.process_targets(range(1000), work, "parallel")
        print(json.dumps({"results": results, "stats": processor.stats.to_dict()}), flush=True)

    asyncio.run(main())
    """
)


def _start(tmp_path: Path) -> tuple[subprocess.Popen[str], str]:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    child = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path / "results")],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert child.stdout is not None
    line = child.stdout.readline().split()
    assert line[0] == "READY", line
    return child, line[1]


def test_sigint_stops_at_a_chunk_boundary_with_results_intact(tmp_path: Path) -> None:
    child, run_id = _start(tmp_path)
    child.send_signal(signal.SIGINT)
    output, _ = child.communicate(timeout=30)
    assert child.returncode == 0
    report = json.loads(output.strip().splitlines()[-1])
    stats = report["stats"]
    assert stats["interrupted"] is True
    resume_at = stats["next_target_index"]
    assert 5 <= resume_at < 1000 and resume_at % 5 == 0
    expected = [{"target": t, "square": t * t} for t in range(resume_at)]
    assert report["results"] == expected
    storage = ResultStorage(tmp_path / "results", "json")
    assert storage.load_results(run_id) == expected
    assert stats["persisted_chunks"] == resume_at // 5


def test_sigkill_leaves_only_whole_chunks(tmp_path: Path) -> None:
    child, run_id = _start(tmp_path)
    child.kill()
    child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    storage = ResultStorage(tmp_path / "results", "json")
    chunks = storage.list_chunks(run_id)
    assert chunks[0] == 0
    for chunk_id in chunks:  # every stored chunk decodes completely
        record = storage.load_chunk(run_id, chunk_id)
        assert len(record["results"]) == 5
    assert storage.load_results(run_id)[:5] == [{"target": t, "square": t * t} for t in range(5)]
