"""The ``batchpilot`` command: run a batch function over a file, serve a model over HTTP,
the demo, the benchmarks.

Each command lives in its own module (`run`, `serve`, `demo`, `bench`), which exposes
``add_command(commands)`` to add its subparser; `command.main` lists them.
The handler a subparser sets (``handler=``) runs the command and returns its exit code.

Exit codes: 0 when every record succeeded; 1 when some records failed, or the
run was interrupted or stopped by an unexpected error (also a ``sys.exit`` or a
``KeyboardInterrupt`` raised by user code, which never ends a command with
success); 2 for bad usage or bad input; 3 for a run stopped early
(`run.EXIT_STOPPED`). Errors are one line on stderr, never a traceback (set
``BATCHPILOT_TRACEBACK=1`` to see one for an unexpected error).
"""

from __future__ import annotations

from .._core.exports import publish
from .bench import benchmark_scripts
from .command import main
from .common import CliError
from .functions import load_function
from .job import errors_path, job_path
from .runner import RunSummary, run_job

__all__ = [
    "CliError",
    "RunSummary",
    "benchmark_scripts",
    "errors_path",
    "job_path",
    "load_function",
    "main",
    "run_job",
]

publish(__name__, globals(), __all__)
