"""``batchpilot serve MODULE:ATTR --max-batch-cost``: a model's cost hook and a budget
from the command line (issue 21, Deliver 1: the same names on every entry point)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.timeout(90)

# Ragged lengths; 50 is over the budget on its own and must run alone.
LENGTHS = [3, 9, 4, 8, 2, 10, 50, 5, 7, 6, 3, 9, 1, 10, 4, 8] * 4


def test_batches_never_exceed_the_budget_given_on_the_command_line(serve: Any) -> None:
    server = serve(
        "serve_models:Tokens",
        "--max-batch-cost", "40", "--padded", "--sort-window", "64", "--max-batch-size", "64",
    )  # fmt: skip
    with ThreadPoolExecutor(32) as pool:
        replies = list(pool.map(lambda n: server.predict([1] * n), LENGTHS))
    assert [r.status for r in replies] == [200] * len(LENGTHS)
    assert [r.json() for r in replies] == LENGTHS
    batches = [tuple(map(int, line.split()[1:])) for line in server.log_lines()]
    assert sum(size for size, _ in batches) == len(LENGTHS)
    # Every batch within 40 padded tokens, but the over-budget item alone.
    assert all(padded <= 40 or size == 1 for size, padded in batches)
    assert (1, 50) in batches
    assert any(size > 1 for size, _ in batches)  # requests queued behind the first batch
    stats = server.stats()["batcher"]
    assert stats["cost_cap"] == 40
    assert stats["padded_cost"] == sum(padded for _, padded in batches)
    assert server.terminate() == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("serve_models:double", "--max-batch-cost", "10"), "has no cost(self, item) method"),
        (("serve_models:Tokens", "--padded"), "give --max-batch-cost"),
        (("serve_models:Tokens", "--sort-window", "8"), "give --max-batch-cost"),
        (("serve_models:Tokens", "--max-batch-cost", "-1"), "expected a number >= 0"),
    ],
)
def test_cost_usage_errors_are_exit_2(
    args: tuple[str, ...],
    message: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from batchpilot.cli import main

    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    try:
        code = main(["serve", *args])
    except SystemExit as exit_:  # argparse refuses a bad number itself
        code = int(exit_.code or 0)
    assert code == 2
    assert message in capsys.readouterr().err


def test_max_batch_tokens_is_the_same_option(serve: Any) -> None:
    server = serve("serve_models:Tokens", "--max-batch-tokens", "12")
    assert server.predict([1, 2]).json() == 2
    assert server.stats()["batcher"]["cost_cap"] == 12
    assert server.terminate() == 0


def test_a_sort_window_of_0_without_a_budget_counts_items(serve: Any) -> None:
    # first in, first out is what counting items does: the perf-tokens 'bp-count' command
    server = serve("serve_models:Tokens", "--max-batch-cost", "0", "--sort-window", "0")
    assert server.predict([1, 2]).json() == 2
    assert server.stats()["batcher"]["cost_cap"] is None  # counting items, no budget
    assert server.terminate() == 0
