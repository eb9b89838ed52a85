"""An output folder on a local disk or an object store, and how a file appears in it whole.

On a local (POSIX) filesystem a file is written under a hidden temporary name in
the folder itself (``.part-00007.parquet.<random>.tmp``) and renamed onto its
final name (`os.replace`, atomic), after ``fsync`` of the file and then of the
folder. On any other filesystem (``s3://``, ``gs://``, ``memory://``) it is
written to a local temporary file and uploaded in one ``put`` at publish time: an
object store shows an object only once its upload completed, so the final key
never holds half a file. A writer killed before publishing leaves its hidden
temporary file (in the folder, or in the worker's temporary directory for an
object store), never a file under its final name.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import re
import secrets
import tempfile
from collections.abc import Mapping
from typing import Any

__all__ = ["TEMP_NAME", "Place"]

#: Temporary files of unfinished writes (hidden, so dataset readers skip them).
TEMP_NAME = re.compile(r"^\.(part-|_).*\.tmp$")


class Place:
    """A folder, given as a local path or an fsspec URL, on its filesystem."""

    def __init__(self, url: str, storage_options: Mapping[str, Any]) -> None:
        from fsspec.core import url_to_fs
        from fsspec.implementations.local import LocalFileSystem

        self.url = url
        self.fs, self.root = url_to_fs(url, **storage_options)
        self.root = self.root.rstrip("/")
        self.local = isinstance(self.fs, LocalFileSystem)

    def path(self, name: str) -> str:
        """The full path of ``name`` in the folder, for the filesystem."""
        return posixpath.join(self.root, name) if not self.local else os.path.join(self.root, name)

    def location(self, name: str) -> str:
        """Where ``name`` is, as a user would open it: a local path or a URL."""
        path = self.path(name)
        return path if self.local else str(self.fs.unstrip_protocol(path))

    def make(self) -> None:
        """Create the folder (and its parents) unless it exists."""
        self.fs.makedirs(self.root, exist_ok=True)

    def files(self) -> dict[str, int]:
        """The files in the folder, name to size (an absent folder has none)."""
        self.fs.invalidate_cache(self.root)  # s3fs caches listings; parts came from elsewhere
        try:
            entries = self.fs.ls(self.root, detail=True)
        except FileNotFoundError:
            return {}
        return {
            posixpath.basename(entry["name"].rstrip("/")): int(entry.get("size") or 0)
            for entry in entries
            if entry.get("type") == "file"
        }

    def temporary(self, name: str) -> str:
        """A new local file to write ``name``'s content into before `publish`."""
        hidden = f".{name}."
        if self.local:
            return os.path.join(self.root, f"{hidden}{secrets.token_hex(6)}.tmp")
        descriptor, path = tempfile.mkstemp(prefix=hidden, suffix=".tmp")
        os.close(descriptor)
        return path

    def publish(self, temporary: str, name: str) -> None:
        """Make the finished local file ``temporary`` appear as ``name``, whole, and drop it."""
        if self.local:
            _fsync(temporary, os.O_RDONLY)
            os.replace(temporary, self.path(name))
            _fsync(self.root, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
            return
        try:
            self.fs.put_file(temporary, self.path(name))
        finally:
            discard(temporary)

    def write(self, name: str, data: bytes) -> None:
        """Publish a small file holding ``data`` (a manifest, a marker)."""
        temporary = self.temporary(name)
        try:
            with open(temporary, "wb") as file:
                file.write(data)
        except BaseException:
            discard(temporary)
            raise
        self.publish(temporary, name)

    def remove(self, name: str) -> None:
        """Delete ``name`` from the folder; an absent file is no error."""
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(self.path(name))


def discard(path: str) -> None:
    """Delete the local file ``path`` if it exists."""
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)


def _fsync(path: str, flags: int) -> None:
    descriptor = os.open(path, flags)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
