"""Every snippet of README.md, docs/serve.md and docs/buffer.md that a user would copy
runs as written (docs/cli.md has its own test, test_cli_docs.py).

* ``python`` blocks: each page's blocks run in order in one fresh interpreter, in an
  empty folder, sharing one namespace as a reader following the page would, after a
  short prelude that defines only the placeholders the page leaves to the reader
  (``llm``, ``rss_entry``, ...).
* ``sh`` blocks: the README's CLI example runs in bash; the serve.md quick start runs
  against a real ``batchpilot serve`` process (tests/integration/serve/test_serve_docs.py).
* ``sql``: the quarantine replay of buffer.md runs on a real journal.
* A block that cannot run here carries ``<!-- docs-test: skip: REASON -->``; the set
  of those is pinned below, so a new one is a decision, not an accident.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest

from batchpilot.buffer import BatchStateManager

ROOT = Path(__file__).resolve().parents[2]
PAGES = ("README.md", "docs/serve.md", "docs/buffer.md", "docs/tokens.md")
COPYABLE = {"python", "sh", "bash", "sql"}

#: The only blocks that do not run, by page and reason.
SKIPPED = {
    ("README.md", "installs from a git host or a built wheel"),
    (
        "README.md",
        "sets up .venv from the network; make test is this test suite, "
        "tests/integration/test_demo.py runs the demo",
    ),
    ("docs/serve.md", "installs from a git host"),
    (
        "docs/serve.md",
        "needs Ray Serve; tests/integration/serve/test_ray_serve.py mounts the app in it",
    ),
    ("docs/buffer.md", "the signature with its defaults, not a program"),
    (
        "docs/serve.md",
        "needs an embeddings server; tests/integration/serve/test_embeddings_server.py "
        "runs it against one",
    ),
}

#: What each page leaves to the reader, defined before its first block.
PRELUDES = {
    "README.md": "",
    "docs/serve.md": "",
    "docs/tokens.md": "",
    "docs/buffer.md": """
class llm:  # the reader's LLM client
    @staticmethod
    def summarise(texts):
        print("summarised", len(texts), "entries")

rss_entry, alert_entry, urgent_entry = {"t": "rss"}, {"t": "alert"}, {"t": "urgent"}
entry_id, alert_id, urgent_id = "rss-1", "alert-1", "urgent-1"

def write_rows(entries):
    print("wrote", len(entries), "rows")
""",
}

#: Runs ``[[where, code], ...]`` (a JSON file) in order in one namespace.
DRIVER = """
import json, sys
namespace = {"__name__": "__main__"}
for where, code in json.load(open(sys.argv[1], encoding="utf-8")):
    print("--- block", where, flush=True)
    exec(compile(code, where, "exec"), namespace)
print("--- all blocks ran", flush=True)
"""

Blocks = Callable[[str], list]


def python_env() -> dict[str, str]:
    """The environment of a snippet: this checkout's batchpilot first."""
    import batchpilot

    source = str(Path(batchpilot.__file__).resolve().parents[1])
    path = os.pathsep.join(p for p in (source, os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path}


def test_only_the_named_blocks_are_skipped(doc_blocks: Blocks) -> None:
    blocks = [b for page in PAGES for b in doc_blocks(page) if b.lang in COPYABLE]
    assert len(blocks) > 15
    assert {(b.page, b.skip) for b in blocks if b.skip} == SKIPPED
    assert len([b for b in blocks if b.skip]) == len(SKIPPED)


def test_every_copyable_block_has_a_runner(doc_blocks: Blocks) -> None:
    """python: the page runner; sh: the README CLI run or the serve quick start; sql: replay."""
    unrun = [
        b.where
        for page in PAGES
        for b in doc_blocks(page)
        if b.lang in COPYABLE
        and not b.skip
        and b.lang != "python"
        and not (b.page == "README.md" and "batchpilot run" in b.code)
        and not (b.page == "docs/serve.md" and "batchpilot serve" in b.code)
        and not (b.page == "docs/buffer.md" and b.lang == "sql")
    ]
    assert unrun == []


@pytest.mark.timeout(300)
@pytest.mark.parametrize("page", PAGES)
def test_the_python_blocks_of_a_page_run_in_order(
    doc_blocks: Blocks, page: str, tmp_path: Path
) -> None:
    blocks = [b for b in doc_blocks(page) if b.lang == "python" and not b.skip]
    assert blocks, page
    program = [[f"{page} prelude", PRELUDES[page]]] + [[b.where, b.code] for b in blocks]
    (tmp_path / "blocks.json").write_text(json.dumps(program), encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-c", DRIVER, "blocks.json"],
        cwd=tmp_path, env=python_env(), capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    out = done.stdout + done.stderr
    assert done.returncode == 0 and "--- all blocks ran" in done.stdout, out[-4000:]
    expected = {
        "README.md": ["ItemFailure(index=13", "\n1000\n"],
        "docs/serve.md": [],
        "docs/buffer.md": ["summarised 3 entries", "Throughput: ", "Processing Time: "],
        "docs/tokens.md": ["\n3.0\n"],
    }[page]
    for text in expected:
        assert text in out, (text, out[-4000:])
    if page == "README.md":  # the buffer example: 61 entries queued, 61 flushed
        assert sum(int(n) for n in re.findall(r"^flushed (\d+) entries", out, re.M)) == 61, out


@pytest.mark.timeout(120)
def test_the_readme_cli_example_runs_as_written(doc_blocks: Blocks, tmp_path: Path) -> None:
    (block,) = [b for b in doc_blocks("README.md") if "batchpilot run" in b.code]
    venv_bin = tmp_path / ".venv" / "bin"  # the README runs .venv/bin/batchpilot
    venv_bin.mkdir(parents=True)
    wrapper = venv_bin / "batchpilot"
    source = python_env()["PYTHONPATH"]
    wrapper.write_text(
        f'#!/bin/sh\nPYTHONPATH="$PYTHONPATH:{source}" exec {sys.executable} -m batchpilot "$@"\n'
    )
    wrapper.chmod(0o755)
    done = subprocess.run(
        ["bash", "-eu", "-c", block.code],
        cwd=tmp_path, capture_output=True, text=True, timeout=100, check=False,
    )  # fmt: skip
    out = done.stdout + done.stderr
    assert done.returncode == 1, out  # one record failed, as the block says
    promised = next(line for line in block.code.splitlines() if line.startswith("# batchpilot:"))
    assert promised.removeprefix("# ").removesuffix("...)") in out, (promised, out)
    rows = [json.loads(line) for line in (tmp_path / "totals.jsonl").open(encoding="utf-8")]
    assert rows == [{"id": 1, "total": 10.0}, {"id": 2, "total": 3.0}]


def test_the_quarantine_replay_sql_of_the_buffer_page_works(
    doc_blocks: Blocks, tmp_path: Path
) -> None:
    """A trusted old entry (a datetime, which the json codec refuses) is quarantined,
    moved back by the page's SQL, and recovered with ``serializer="pickle"``."""
    (block,) = [b for b in doc_blocks("docs/buffer.md") if b.lang == "sql"]
    path = tmp_path / "feeds.journal"
    stamp = datetime(2024, 1, 2, 3, 4, 5)
    with BatchStateManager(journal_path=path, serializer="pickle") as manager:
        manager.queue_entry(stamp, "rss_feed", "old-1")  # no callback: it stays in the file
    flushed: list = []
    with BatchStateManager(flush_callback=flushed.extend, journal_path=path) as manager:
        assert manager.get_detailed_stats()["counters"]["quarantined_entries"] == 1
    assert flushed == []
    with sqlite3.connect(path) as db:
        db.executescript(block.code)
    with BatchStateManager(
        flush_callback=flushed.extend, journal_path=path, serializer="pickle"
    ) as manager:
        pass
    assert [(item.uuid, item.entry) for item in flushed] == [("old-1", stamp)]
