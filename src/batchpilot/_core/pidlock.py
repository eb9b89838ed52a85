"""One run per file: an exclusive, non-blocking ``flock`` on ``PATH.lock`` naming its holder.

The lock file holds the holder's pid, so the second run can say who has it. The
OS drops a ``flock`` when its holder dies, even by SIGKILL, so a stale lock file
never blocks. The file is removed on release while still locked, and `acquire`
retries when the file it locked is no longer the one at the path (its holder
removed it in between). Where ``fcntl`` does not exist (Windows), no lock is taken.
"""

from __future__ import annotations

import contextlib
import os
import sys

__all__ = ["LockHeldError", "PidLock"]


class LockHeldError(Exception):
    """Another process holds the lock; ``pid`` is its pid, or None if it did not say."""

    def __init__(self, path: str, pid: int | None) -> None:
        super().__init__(f"{path} is held by pid {pid if pid is not None else '?'}")
        self.path = path
        self.pid = pid


class PidLock:
    """The lock of ``PATH`` (the file ``PATH.lock``); `acquire` once, `release` when done."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path) + ".lock"
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock."""
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock; no-op if already held.

        Raises:
            LockHeldError: another process (or another `PidLock`) holds it.
            OSError: the lock file cannot be created.
        """
        if sys.platform == "win32" or self._fd is not None:
            return
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                current = self._lock(fd)
                if current:
                    os.ftruncate(fd, 0)
                    os.write(fd, str(os.getpid()).encode("ascii"))
            except BaseException:
                os.close(fd)  # never leak the descriptor, whatever failed
                raise
            if current:
                self._fd = fd
                return
            os.close(fd)  # its holder removed it as we opened it: lock the new one

    def _lock(self, fd: int) -> bool:
        """Lock ``fd``; True if it is still the file at ``path``."""
        import fcntl

        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.read(fd, 32).decode("ascii", "replace").strip()
            raise LockHeldError(self.path, int(text) if text.isdigit() else None) from None
        try:
            return os.stat(self.path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            return False

    def release(self) -> None:
        """Remove the lock file and unlock; idempotent."""
        if self._fd is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
            os.close(self._fd)
            self._fd = None

    def __repr__(self) -> str:
        return f"PidLock({self.path!r}, held={self.held})"
