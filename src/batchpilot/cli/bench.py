"""``batchpilot bench``: run the benchmark scripts one after another."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from .common import EXIT_FAILED_ITEMS, EXIT_OK, CliError, fail

__all__ = ["add_command", "benchmark_scripts"]

_MAIN_GUARD = re.compile(r"^if __name__ == [\"']__main__[\"']:", re.MULTILINE)


def add_command(commands: Any) -> None:
    """Add the ``bench`` subparser to ``commands`` (an argparse subparsers action)."""
    bench = commands.add_parser(
        "bench",
        help="run the benchmark scripts in benchmarks/",
        description="Run the benchmark scripts (the benchmarks/*.py files with a __main__ "
        "guard, in the current directory, or in --dir) one after another with this Python, "
        "printing their tables. The scripts ship with batchpilot's source checkout, not with "
        "the installed package: run this in a checkout, or pass --dir.",
    )
    bench.add_argument("names", nargs="*", metavar="NAME", help="only these scripts (stem)")
    bench.add_argument("--dir", type=Path, default=None, help="benchmark directory")
    bench.add_argument("--list", action="store_true", help="list the scripts and exit")
    bench.add_argument(
        "--quick", action="store_true", help="pass --quick to the scripts that take it"
    )
    bench.set_defaults(handler=_bench_command)


def benchmark_scripts(directory: Path | None = None) -> list[Path]:
    """The benchmark scripts, sorted: ``benchmarks/*.py`` with a ``__main__`` guard.

    Files starting with ``_`` and modules without a guard (helpers, harness plugins)
    are not scripts.
    """
    if directory is not None and not directory.is_dir():
        raise CliError(f"benchmark directory not found: {directory}")
    folder = directory or _default_bench_dir()
    if not folder.is_dir():
        raise CliError(
            f"no benchmarks/ in {folder.parent}: the benchmark scripts ship with batchpilot's "
            "source checkout, not with the installed package; run batchpilot bench in a "
            "checkout (a clone of the git repository you installed it from), or pass --dir "
            "FOLDER"
        )
    return sorted(
        path
        for path in folder.glob("*.py")
        if not path.name.startswith("_") and _MAIN_GUARD.search(path.read_text("utf-8"))
    )


def _default_bench_dir() -> Path:
    """``benchmarks/`` of the current directory: a checkout's (the package ships none)."""
    return Path.cwd() / "benchmarks"


def _bench_command(args: argparse.Namespace) -> int:
    scripts = benchmark_scripts(args.dir)
    if args.names:
        unknown = sorted(set(args.names) - {p.stem for p in scripts})
        if unknown:
            raise CliError(f"no benchmark named {', '.join(unknown)}")
        scripts = [p for p in scripts if p.stem in args.names]
    if args.list:
        print("\n".join(str(p) for p in scripts))
        return EXIT_OK
    failed = []
    for script in scripts:
        command = [sys.executable, str(script)]
        if args.quick and "--quick" in script.read_text("utf-8"):
            command.append("--quick")
        print(f"== {script.name}", flush=True)
        if subprocess.run(command, check=False).returncode != 0:
            failed.append(script.name)
    if failed:
        return fail(f"benchmarks failed: {', '.join(failed)}", code=EXIT_FAILED_ITEMS)
    return EXIT_OK
