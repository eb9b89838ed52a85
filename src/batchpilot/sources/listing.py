"""Files behind a source: paths, folders, globs and fsspec URLs, listed and opened.

A folder is listed recursively in sorted order, skipping every entry whose name,
or the name of a folder between it and the listed folder, starts with ``.`` or
``_`` (``_SUCCESS``, ``_temporary/``, ``.crc`` files), as Spark and Dask do. A
glob's matches skip such names too; a file named directly is always read.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO, Any

__all__ = ["FileEntry", "Paths", "as_paths", "list_files", "open_file", "to_fs"]

#: What a source accepts: one path (a file, folder, glob or URL) or a list of them.
Paths = str | os.PathLike[str] | Sequence[str | os.PathLike[str]]
_GLOB_CHARS = frozenset("*?[")


@dataclass(frozen=True)
class FileEntry:
    """One input file: where it is, its size, and what changes when it does."""

    path: str  # a local path, or an fsspec URL with its protocol
    size: int
    version: str  # the ETag, else the modification time (what `fingerprint` hashes)


def to_fs(path: str, storage_options: dict[str, Any] | None) -> tuple[Any, str]:
    """``(filesystem, path inside it)`` for a local path or an fsspec URL."""
    from fsspec.core import url_to_fs

    return url_to_fs(path, **(storage_options or {}))


def open_file(path: str, storage_options: dict[str, Any] | None, **options: Any) -> IO[bytes]:
    """``path`` (a `FileEntry.path`) opened for reading bytes; ``options`` go to ``fs.open``
    (e.g. ``block_size``, the bytes a remote file fetches per read)."""
    fs, inner = to_fs(path, storage_options)
    return fs.open(inner, "rb", **options)


def as_paths(paths: Paths) -> tuple[str, ...]:
    """``paths`` as a tuple of strings."""
    if isinstance(paths, (str, os.PathLike)):
        return (os.fspath(paths),)
    return tuple(os.fspath(path) for path in paths)


def list_files(paths: Sequence[str], storage_options: dict[str, Any] | None) -> list[FileEntry]:
    """Every file ``paths`` names, in order: each folder or glob sorted by path.

    Raises:
        FileNotFoundError: A path does not exist, or a folder or glob holds no file.
    """
    entries: list[FileEntry] = []
    for path in paths:
        fs, inner = to_fs(path, storage_options)
        if _GLOB_CHARS & set(inner):
            found = {
                name: fs.info(name)
                for name in fs.glob(inner)
                if not _hidden(name.rsplit("/", 1)[-1])
            }
        elif fs.isdir(inner):
            root = inner.rstrip("/") + "/"
            found = {
                name: info
                for name, info in fs.find(inner, detail=True).items()
                if not any(_hidden(part) for part in name[len(root) :].split("/"))
            }
        elif fs.isfile(inner):
            found = {inner: fs.info(inner)}
        else:
            raise FileNotFoundError(f"input not found: {path}")
        files = [(name, info) for name, info in sorted(found.items()) if info["type"] == "file"]
        if not files:
            raise FileNotFoundError(f"no input files in {path}")
        entries.extend(
            FileEntry(_url(fs, name), int(info["size"]), _version(info)) for name, info in files
        )
    return entries


def _hidden(name: str) -> bool:
    return name.startswith((".", "_"))


def _url(fs: Any, name: str) -> str:
    """A local file as its path; any other as a URL that names its protocol."""
    protocols = (fs.protocol,) if isinstance(fs.protocol, str) else fs.protocol
    return name if "file" in protocols else str(fs.unstrip_protocol(name))


def _version(info: dict[str, Any]) -> str:
    for key in ("ETag", "etag", "mtime", "LastModified", "last_modified", "created"):
        if info.get(key) is not None:
            return str(info[key])
    return ""
