"""``python -m batchpilot.serve.worker FD SPEC``: one worker process of a supervisor."""

from __future__ import annotations

import sys

from .server import _worker_main

if __name__ == "__main__":
    sys.exit(_worker_main(sys.argv[1:]))
