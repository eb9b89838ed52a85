"""Ctrl-C during a run: told apart from a KeyboardInterrupt raised by FUNC, or ending
the process at once (the console command)."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator

from .common import EXIT_FAILED_ITEMS, INTERRUPTED, fail

__all__ = ["exit_on_sigint", "noting_sigint"]


@contextlib.contextmanager
def _on_sigint(handler: Callable[[int, object], None]) -> Iterator[None]:
    """While active, SIGINT calls ``handler`` (on the main thread only).

    Off the main thread no handler is installed: signals reach only the main thread.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def noting_sigint(signalled: threading.Event) -> contextlib.AbstractContextManager[None]:
    """While active, a real Ctrl-C sets ``signalled`` before raising KeyboardInterrupt.

    That tells it from a KeyboardInterrupt raised by FUNC. Off the main thread
    no handler is installed: signals reach only the main thread, so there every
    KeyboardInterrupt comes from FUNC.
    """

    def note(signum: int, frame: object) -> None:
        signalled.set()
        raise KeyboardInterrupt

    return _on_sigint(note)


def exit_on_sigint(progress: bool) -> contextlib.AbstractContextManager[None]:
    """While active, Ctrl-C ends the process at once.

    Waiting for running chunks (a KeyboardInterrupt unwinding through the engine,
    then Python joining its worker threads at exit) could take as long as a chunk;
    the checkpoint makes an immediate exit as safe as ``kill -9``.
    """

    def stop_now(signum: int, frame: object) -> None:
        if progress:
            print(file=sys.stderr)  # end the progress bar's line
        fail(INTERRUPTED, EXIT_FAILED_ITEMS)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(EXIT_FAILED_ITEMS)

    return _on_sigint(stop_now)
