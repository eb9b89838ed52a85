"""Option tables in the docs list every option the code has."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from batchpilot._engine.options import EngineOptions
from batchpilot.cli import main

DOCS = Path(__file__).resolve().parents[3] / "docs"


def table_rows(page: str) -> set[str]:
    """The first-column names (`` `name` ``) of every table row of a docs page."""
    return set(re.findall(r"^\| `([\w-]+)`", (DOCS / page).read_text(encoding="utf-8"), re.M))


def test_the_online_parameter_table_has_every_engine_option() -> None:
    fields = {field.name for field in dataclasses.fields(EngineOptions)}
    assert sorted(fields - table_rows("online.md")) == []


def help_text(capsys: pytest.CaptureFixture[str], *command: str) -> str:
    assert main([*command, "--help"]) == 0
    return capsys.readouterr().out


def test_every_command_is_in_the_help_summary_the_cli_page_and_the_index(
    capsys: pytest.CaptureFixture[str],
) -> None:
    text = help_text(capsys)
    commands = re.findall(r"^    (\w+)  ", text, re.M)
    assert {"run", "demo", "bench", "serve"} <= set(commands), text
    description = " ".join(text.split("options:")[0].split("\n\n", 1)[1].split())
    summary = (DOCS / "cli.md").read_text(encoding="utf-8").split("```")[1]
    index = (DOCS / "index.md").read_text(encoding="utf-8").split("[Command line](cli.md)")[1]
    for command in commands:
        assert command in description, (command, description)
        assert f"batchpilot {command} " in summary, (command, summary)
        assert f"{command}`" in index.split("\n*")[0], command


def test_the_serve_page_lists_every_option_of_serve(capsys: pytest.CaptureFixture[str]) -> None:
    options = set(re.findall(r"(?<![\w-])--[a-z][a-z-]+", help_text(capsys, "serve"))) - {"--help"}
    assert len(options) > 5, options
    page = (DOCS / "serve.md").read_text(encoding="utf-8")
    rows = "\n".join(line for line in page.splitlines() if line.startswith("|"))
    assert sorted(o for o in options if f"`{o}" not in rows) == []


def test_the_index_counts_the_jobs_the_readme_lists() -> None:
    readme = (DOCS.parent / "README.md").read_text(encoding="utf-8")
    (count,) = re.findall(r"batchpilot does (\w+) jobs", readme)
    jobs = readme.split("| job | module | for |")[1].split("\n\n")[0]
    assert len(re.findall(r"^\| [a-z]", jobs, re.M)) == {"four": 4}[count]
    assert f"It covers {count} jobs" in (DOCS / "index.md").read_text(encoding="utf-8")
