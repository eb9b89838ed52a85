"""A private event loop on a daemon thread that no user coroutine can kill.

An asyncio task that raises `KeyboardInterrupt` or `SystemExit` stores it as its
result and then raises it out of ``run_forever``; a thread that ran only
``run_forever`` would die there, and every coroutine submitted later would hang.
`LoopThread` logs it and runs the loop again, so the task's future (and the
caller waiting on it) still gets the exception.
"""

from __future__ import annotations

import asyncio
import logging
import threading

_log = logging.getLogger("batchpilot")


class LoopThread:
    """An event loop (``loop``) running on its own daemon thread until `stop`."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        """Run the loop until `stop`; whatever a callback or task raises, run it again."""
        asyncio.set_event_loop(self.loop)
        while not self._stopping:
            try:
                self.loop.run_forever()
            except BaseException:
                _log.exception("the private event loop of an async function stopped; rerun")

    def stop(self, timeout: float | None) -> None:
        """Stop the loop; from another thread, wait up to ``timeout`` and close it."""
        self._stopping = True
        try:
            self.loop.call_soon_threadsafe(self.loop.stop)
        except RuntimeError:  # already closed
            return
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)
            if not self._thread.is_alive():
                self.loop.close()

    def __repr__(self) -> str:
        return f"LoopThread({self._thread.name!r}, running={self._thread.is_alive()})"
