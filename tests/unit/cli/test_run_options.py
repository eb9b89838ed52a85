"""`RunOptions`: the one list of ``batchpilot run``'s settings (issue 24 item 6)."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

from batchpilot.cli import CliError, run_job
from batchpilot.cli.command import _build_parser
from batchpilot.cli.run_options import RunOptions


def test_run_job_takes_exactly_the_fields_of_run_options() -> None:
    parameters = inspect.signature(run_job).parameters
    names = [field.name for field in dataclasses.fields(RunOptions)]
    assert list(parameters) == names
    assert [p.name for p in parameters.values() if p.kind is p.POSITIONAL_OR_KEYWORD] == [
        "function",
        "input_path",
        "output_path",
    ]
    for field in dataclasses.fields(RunOptions):
        assert parameters[field.name].default == (
            inspect.Parameter.empty if field.default is dataclasses.MISSING else field.default
        )


def test_options_are_frozen_and_checked_once_when_built() -> None:
    options = RunOptions("m:f", "in.jsonl", "out.jsonl", executor="dask", address="tcp://h:1")
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.workers = 2  # type: ignore[misc]
    with pytest.raises(CliError, match="--address needs --executor dask or ray"):
        RunOptions("m:f", "in.jsonl", "out.jsonl", address="tcp://h:1")
    with pytest.raises(CliError, match="--address needs --executor dask or ray"):
        run_job("m:f", "in.jsonl", "out.jsonl", address="tcp://h:1")


def test_the_command_line_fills_every_option() -> None:
    args = _build_parser().parse_args(
        ["run", "m:f", "-i", "in.csv", "-o", "out.parquet", "--workers", "3", "--no-progress",
         "--batch-size", "7", "--table", "t", "--fail-fast"]
    )  # fmt: skip
    args.console = True
    options = RunOptions.from_arguments(args)
    assert options == RunOptions(
        "m:f", "in.csv", "out.parquet", workers=3, progress=False, batch_size=7, table="t",
        fail_fast=True, abandon_on_interrupt=True,
    )  # fmt: skip
