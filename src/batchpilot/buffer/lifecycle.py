"""The buffer's lifecycle as states (as starlette's ``WebSocketState``), without locks.

``OPEN -> CLOSING -> CLOSED | FAILED``: `close` moves an open manager to CLOSING
(the flushers drain what is buffered); a flusher that finds nothing more to do
exits; `close` then releases the manager and it is CLOSED. A `close` whose timeout
passes while a flush runs also makes it CLOSED at once: the running flush makes no
further attempt. User code that raises a `BaseException` that is not an
`Exception` makes it FAILED from any state before the release, and `close`
re-raises that cause. `BatchStateManager` holds its lock around every call here.
"""

from __future__ import annotations

from enum import Enum

from ..errors import ClosedError
from .state import BufferedEntry

__all__ = ["BufferState", "Lifecycle"]


class BufferState(Enum):
    OPEN = "open"  # entries are accepted; triggers start flushes
    CLOSING = "closing"  # close() called: the flushers drain what is buffered, then exit
    CLOSED = "closed"  # close() returned (done, or gave up waiting): no flush attempt starts
    FAILED = "failed"  # user code raised a BaseException: no flush starts, close() re-raises


class Lifecycle:
    """Where a manager is in its life, what stopped it, and what its last close returns."""

    def __init__(self) -> None:
        self.state = BufferState.OPEN  # see BufferState
        self.cause: BaseException | None = None  # what user code raised, once FAILED
        self.held_back: list[BufferedEntry] | None = None  # None until close() released all

    @property
    def open(self) -> bool:
        """Entries are accepted (a manual flush too)."""
        return self.state is BufferState.OPEN

    @property
    def flushing_allowed(self) -> bool:
        """A flusher may start another flush (OPEN, or CLOSING while it drains)."""
        return self.state is BufferState.OPEN or self.state is BufferState.CLOSING

    @property
    def given_up(self) -> bool:
        """close() gave up waiting: a running flush makes no further attempt."""
        return self.state is BufferState.CLOSED

    @property
    def released(self) -> bool:
        """close() joined the flushers and released the journal."""
        return self.held_back is not None

    def begin_close(self) -> bool:
        """OPEN -> CLOSING; False if the manager was not open."""
        if self.state is not BufferState.OPEN:
            return False
        self.state = BufferState.CLOSING
        return True

    def fail(self, cause: BaseException) -> None:
        """-> FAILED; the first cause is the one kept."""
        if self.cause is None:
            self.cause = cause
        self.state = BufferState.FAILED

    def give_up(self) -> None:
        """close() stopped waiting for a running flush: -> CLOSED (FAILED stays)."""
        if self.state is not BufferState.FAILED:
            self.state = BufferState.CLOSED

    def release(self, leftovers: list[BufferedEntry]) -> None:
        """close() released everything; a later close() returns ``leftovers`` if FAILED."""
        if self.state is not BufferState.FAILED:
            self.state = BufferState.CLOSED
            leftovers = []
        self.held_back = leftovers

    def take_held_back(self) -> list[BufferedEntry]:
        """What this close() returns after an earlier one released the manager."""
        held, self.held_back = self.held_back or [], []
        return held

    def refusal(self, name: str) -> ClosedError:
        """The error for a call that needs an open manager."""
        if self.cause is None:
            return ClosedError(f"{name} is closed")
        error = ClosedError(f"{name} stopped: user code raised {self.cause!r}")
        error.__cause__ = self.cause
        return error
