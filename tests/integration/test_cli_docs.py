"""Every ``bash`` example of docs/cli.md runs as written, in order, in an empty folder."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "cli.md"


def examples() -> list[str]:
    return re.findall(r"^```bash\n(.*?)^```", DOC.read_text(encoding="utf-8"), re.M | re.S)


def test_the_docs_have_examples_for_each_part_of_run() -> None:
    text = "\n".join(examples())
    options = ("--if-exists", "--schema", "--line-column", "--resume", "--retry-failed", "-i -")
    for option in (*options, ".zst"):
        assert option in text, option


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_every_example_of_the_cli_docs_runs_as_written(tmp_path: Path) -> None:
    script = "\n".join(examples())
    bin_dir = str(Path(sys.executable).parent)
    if not (Path(bin_dir) / "batchpilot").exists():
        pytest.skip(f"console script not installed next to {sys.executable}")
    env = {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")}
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=280, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    out = done.stdout + done.stderr
    assert "[('customers',), ('scores',)]" in out
    assert '{"line": 1, "id": 0, "score": 15}' in out
    assert '{"id": 1, "total": 5.0}' in out
    assert "stopped early: the first 10 records all failed with KeyError" in out
    assert "resumed from the checkpoint" in out
    assert "3 items (retried from the failures list)" in out
    assert sorted(json.loads(line)["id"] for line in (tmp_path / "prices.jsonl").open()) == [
        1, 2, 3, 4, 5,
    ]  # fmt: skip
    assert not (tmp_path / "prices.jsonl.errors.jsonl").exists()
    for name in ("scores.sqlite", "scores.tsv.zst", "totals.jsonl", "resumed.jsonl"):
        assert (tmp_path / name).exists(), name
