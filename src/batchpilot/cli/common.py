"""What every ``batchpilot`` command shares: exit codes, the user error, argument types."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Literal

__all__ = [
    "EXIT_FAILED_ITEMS",
    "EXIT_OK",
    "EXIT_USAGE",
    "INTERRUPTED",
    "CliError",
    "StoppedByFunction",
    "auto_or_positive_int",
    "fail",
    "port_number",
    "positive_float",
    "positive_int",
    "same_file",
]

EXIT_OK = 0
EXIT_FAILED_ITEMS = 1
EXIT_USAGE = 2
INTERRUPTED = "interrupted (rerun a job with --resume to continue it)"


class CliError(Exception):
    """A problem the user can fix; printed as one line, exit code 2."""


class StoppedByFunction(Exception):
    """FUNC raised SystemExit or KeyboardInterrupt itself: the run stopped; exit code 1.

    User code never ends the command with success: ``sys.exit(0)`` in FUNC is an error.
    """


def fail(message: str, code: int = EXIT_USAGE) -> int:
    """Print ``message`` as the one-line ``batchpilot: error:`` and return ``code``."""
    print(f"batchpilot: error: {message}", file=sys.stderr)
    return code


def same_file(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """Whether ``a`` and ``b`` name one file: the same inode when both exist (symlinks
    and hard links followed), else the same path once symlinks are resolved."""
    try:
        first, second = os.stat(a), os.stat(b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)
    return (first.st_dev, first.st_ino) == (second.st_dev, second.st_ino)


def non_empty(text: str) -> str:
    """An argparse type: any text but the empty one (an unset shell variable)."""
    if not text:
        raise argparse.ArgumentTypeError("expected a value, got ''")
    return text


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1."""
    return _int_at_least(text, 1, "a positive integer")


def non_negative_int(text: str) -> int:
    """An argparse type: an integer >= 0."""
    return _int_at_least(text, 0, "an integer >= 0")


def _int_at_least(text: str, minimum: int, expected: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = minimum - 1
    if value < minimum:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """An argparse type: a number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def non_negative_float(text: str) -> float:
    """An argparse type: a finite number >= 0."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


def port_number(text: str) -> int:
    """An argparse type: a TCP port number, 0 for any free port."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number 0-65535, got {text!r}")
    return value


def auto_or_positive_int(text: str) -> int | Literal["auto"]:
    """An argparse type: ``auto`` or a positive integer."""
    if text == "auto":
        return "auto"
    try:
        return positive_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"expected 'auto' or a positive integer, got {text!r}"
        ) from None
