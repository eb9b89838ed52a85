"""Worker processes end with the process that started them, even after its SIGKILL.

A pool worker (bulk processes executor) or a server worker (``batchpilot serve
--workers N``) calls `exit_with_owner` once at start: a daemon thread polls the
owner and ends the worker when it is gone, so no orphan keeps running or serving.
"""

from __future__ import annotations

import os
import sys
import threading
import time

__all__ = ["POLL_SECONDS", "exit_with_owner", "is_alive"]

POLL_SECONDS = 0.25
"""How often a worker checks that its owner is alive."""


def is_alive(pid: int) -> bool:
    """Whether process ``pid`` exists and (on Linux) is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if sys.platform != "linux":
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            state = stat.read().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in (b"Z", b"X")


def exit_with_owner(owner: int) -> None:
    """Start a daemon thread that ends this process (exit code 1) once ``owner`` is gone.

    The parent is watched as well as ``owner``: under ``forkserver`` a worker's
    parent is the fork server, which lives as long as its workers do, so only the
    owner's pid tells that the job is gone.
    """
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent and is_alive(owner):
            time.sleep(POLL_SECONDS)
        os._exit(1)

    threading.Thread(target=watch, name="batchpilot-owner-watch", daemon=True).start()
