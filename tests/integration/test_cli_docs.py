"""Every ``bash`` example of docs/cli.md runs as written, in order, in an empty folder;
the docs name every option of ``batchpilot run`` and the README every install extra."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "cli.md"


def examples() -> list[str]:
    return re.findall(r"^```bash\n(.*?)^```", DOC.read_text(encoding="utf-8"), re.M | re.S)


def test_the_docs_have_examples_for_each_part_of_run() -> None:
    text = "\n".join(examples())
    options = ("--if-exists", "--schema", "--line-column", "--resume", "--retry-failed", "-i -")
    for option in (*options, ".zst", "for f in daily/*.csv"):  # several files: a loop
        assert option in text, option


def test_the_option_table_has_every_option_of_run() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "batchpilot", "run", "--help"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    options = set(re.findall(r"(?<![\w-])--[a-z][a-z-]+", done.stdout)) - {"--help"}
    assert len(options) > 10, done.stdout
    rows = re.findall(r"^\| `(--[a-z-]+)", DOC.read_text(encoding="utf-8"), re.M)
    assert sorted(options - set(rows)) == []


def test_the_readme_says_which_extra_each_feature_needs() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    table = pyproject.split("[project.optional-dependencies]\n")[1].split("\n[")[0]
    extras = set(re.findall(r"^([a-z-]+) = ", table, re.M))  # no tomllib on Python 3.10
    assert {"io", "serve", "all"} <= extras, table
    install = (ROOT / "README.md").read_text(encoding="utf-8").split("## Install it into")[1]
    section = install.split("\n## ")[0]
    assert "python -m build" in section and "git+https://" in section
    named = set(re.findall(r"^\|[^|]*\| `([a-z-]+)`", section, re.M))
    assert sorted(extras - {"dev"} - named) == []


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
    scored = (tmp_path / "all-scores.jsonl").read_text(encoding="utf-8").splitlines()
    assert sorted(json.loads(line)["id"] for line in scored) == [1, 2, 3]  # one per daily file
    for name in ("scores.sqlite", "scores.tsv.zst", "totals.jsonl", "resumed.jsonl"):
        assert (tmp_path / name).exists(), name
