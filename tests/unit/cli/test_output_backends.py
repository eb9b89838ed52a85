"""Each output backend is one `Target` subclass in its own module (issue 24 item 5)."""

from __future__ import annotations

from pathlib import Path

import pytest

from batchpilot.cli.outputs import Target, output_target
from batchpilot.cli.outputs.parquet import DatasetTarget, ParquetTarget
from batchpilot.cli.outputs.sqlite import SqliteTarget
from batchpilot.cli.outputs.stdout import StdoutTarget
from batchpilot.cli.outputs.text import TextTarget


@pytest.mark.parametrize(
    ("name", "backend"),
    [
        ("out.jsonl", TextTarget),
        ("out.csv.gz", TextTarget),
        ("out.tsv", TextTarget),
        ("out.db", SqliteTarget),
        ("out.pq", ParquetTarget),
        ("lake/", DatasetTarget),
    ],
)
def test_a_path_names_its_backend(tmp_path: Path, name: str, backend: type[Target]) -> None:
    assert type(output_target(f"{tmp_path}/{name}")) is backend


def test_standard_output_is_a_backend_that_stages_nothing() -> None:
    target = output_target("-")
    assert type(target) is StdoutTarget
    assert (target.staged, target.files(), target.exists(), str(target)) == (
        False,
        [],
        False,
        "standard output",
    )


def test_the_protocol_itself_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="abstract"):
        Target("jsonl", tmp_path / "out.jsonl")  # type: ignore[abstract]
