"""`main`: the ``batchpilot`` parser, its commands, and their errors as exit codes."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from typing import NoReturn

from . import bench, demo, run, serve
from .common import (
    EXIT_FAILED_ITEMS,
    EXIT_USAGE,
    INTERRUPTED,
    CliError,
    StoppedByFunction,
    fail,
)
from .records_io import RecordsFormatError

__all__ = ["main"]

#: The commands, in ``--help`` order: each adds its subparser.
_COMMANDS = (run.add_command, demo.add_command, bench.add_command, serve.add_command)


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line on stderr, exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``batchpilot`` command line; returns the process exit code.

    Without ``argv`` (the console script) Ctrl-C ends the process at once: chunks
    still running are abandoned, as after ``kill -9``, and ``--resume`` reruns them.
    With ``argv`` (in-process callers) they are waited for.
    """
    try:
        args = _build_parser().parse_args(argv)
    except SystemExit as exit_:  # --help, or a usage error already printed
        return exit_.code if isinstance(exit_.code, int) else EXIT_USAGE
    args.console = argv is None
    try:
        return int(args.handler(args))
    except (CliError, RecordsFormatError) as exc:
        return fail(str(exc))
    except StoppedByFunction as exc:
        return fail(str(exc), EXIT_FAILED_ITEMS)
    except KeyboardInterrupt:
        return fail(INTERRUPTED, EXIT_FAILED_ITEMS)
    except SystemExit as exc:  # from code a command ran (the commands themselves return codes)
        return fail(
            f"stopped by SystemExit({exc.code!r}) raised by the code run", EXIT_FAILED_ITEMS
        )
    except Exception as exc:
        if os.environ.get("BATCHPILOT_TRACEBACK"):
            raise
        return fail(f"{type(exc).__name__}: {exc}".replace("\n", " "), EXIT_FAILED_ITEMS)


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="batchpilot",
        description="Adaptive batch processing: run a batch function over a file, "
        "serve a model over HTTP, try the demo, run the benchmarks.",
    )
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    for add_command in _COMMANDS:
        add_command(commands)
    return parser
