"""Part files in a folder: ``part-00007.parquet`` per partition, then ``_manifest.json`` and
``_SUCCESS`` (the Hadoop/Spark convention)."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from typing import Any

from ..errors import ConfigError
from .encoders import JsonlFormat, ParquetFormat, PartFormat
from .files import FilePart, part_name
from .part import PartInfo
from .place import TEMP_NAME, Place

__all__ = ["MANIFEST", "SUCCESS", "FolderSink", "jsonl", "parquet"]

SUCCESS = "_SUCCESS"  # empty; written last, once every part is in place
MANIFEST = "_manifest.json"  # the parts and their rows and bytes

_ANY_PART = re.compile(r"^part-")  # ours or another writer's (Spark: part-00000-<uuid>...)


class FolderSink:
    """A `Sink` writing one part file per partition into a folder (see `parquet`)."""

    def __init__(
        self, folder: str | os.PathLike[str], part_format: PartFormat, storage_options: Any
    ) -> None:
        url = os.fspath(folder)
        if not isinstance(url, str):
            raise ConfigError(f"folder must be a path or a URL string, got {folder!r}")
        if storage_options is not None and not isinstance(storage_options, Mapping):
            raise ConfigError(f"storage_options must be a dict, got {storage_options!r}")
        # A local path is made absolute here, on the driver: workers may run elsewhere.
        self.folder = url if "://" in url else os.path.abspath(os.path.expanduser(url))
        self.part_format = part_format
        self.storage_options = dict(storage_options or {})
        self._ours = re.compile(r"^part-\d{5,}" + re.escape(part_format.suffix) + "$")

    def prepare(self, resume: bool) -> None:
        """Create the folder; refuse one holding output unless ``resume``.

        A new run refuses a folder with ``_SUCCESS`` or any ``part-*`` file
        (`ConfigError`). ``resume`` keeps the parts there (each is replaced when its
        partition is redone) and removes ``_SUCCESS`` and the manifest until
        `finish` writes them again. Either way, temporary files of writes that
        never committed (``.part-*.tmp``) are deleted.
        """
        place = self._place()
        place.make()
        files = place.files()
        if not resume:
            held = sorted(name for name in files if name == SUCCESS or _ANY_PART.match(name))
            if held:
                shown = ", ".join(held[:3]) + (
                    f" and {len(held) - 3} more" if len(held) > 3 else ""
                )
                raise ConfigError(
                    f"output folder {self.folder} already holds output ({shown}): resume "
                    f"its job, or remove it, or write to another folder"
                )
        stale = [name for name in files if TEMP_NAME.match(name)]
        if resume:
            stale += [name for name in (SUCCESS, MANIFEST) if name in files]
        for name in stale:
            place.remove(name)

    def open_part(self, partition: int) -> FilePart:
        """A writer for ``partition``'s part file (on a worker)."""
        return FilePart(self._place(), partition, self.part_format)

    def finish(self, parts: list[PartInfo]) -> None:
        """Write ``_manifest.json`` then ``_SUCCESS``; delete parts not in ``parts``.

        ``parts`` is every partition's `PartInfo`, this run's and those a resumed
        job committed earlier. A part file of this format whose partition is not
        among them (a leftover of an earlier attempt) is deleted, so the folder
        holds exactly the manifest's parts. Raises `ValueError` when a part of
        ``parts`` is missing from the folder, or a partition is listed twice.
        """
        place = self._place()
        ordered = sorted(parts, key=lambda part: part.partition)
        partitions = [part.partition for part in ordered]
        if len(set(partitions)) != len(partitions):
            raise ValueError(f"a partition is listed twice in parts: {partitions}")
        listed = [part for part in ordered if part.path is not None]
        names = {
            part.partition: part_name(part.partition, self.part_format.suffix) for part in listed
        }
        files = place.files()
        missing = [place.location(name) for name in names.values() if name not in files]
        if missing:
            raise ValueError(f"committed parts are missing from {self.folder}: {missing}")
        keep = set(names.values())
        for name in files:
            if (self._ours.match(name) and name not in keep) or TEMP_NAME.match(name):
                place.remove(name)
        manifest = {
            "format": self.part_format.suffix.lstrip("."),
            "partitions": len(ordered),
            "rows": sum(part.rows for part in ordered),
            "bytes": sum(part.bytes for part in listed),
            "parts": [
                {
                    "partition": part.partition,
                    "path": names[part.partition],
                    "rows": part.rows,
                    "bytes": part.bytes,
                }
                for part in listed
            ],
        }
        place.write(MANIFEST, (json.dumps(manifest, indent=1) + "\n").encode())
        place.write(SUCCESS, b"")

    def _place(self) -> Place:
        return Place(self.folder, self.storage_options)

    def __repr__(self) -> str:
        return f"FolderSink({self.folder!r}, {self.part_format!r})"


def parquet(
    folder: str | os.PathLike[str],
    *,
    storage_options: Mapping[str, Any] | None = None,
    compression: str | None = "snappy",
    row_group_rows: int = 1 << 20,
) -> FolderSink:
    """Parquet part files in ``folder``: ``part-00007.parquet`` for partition 7.

    Args:
        folder: a local path or an fsspec URL (``s3://bucket/out``, ``file://``,
            ``memory://``).
        storage_options: passed to the fsspec filesystem (credentials,
            ``client_kwargs={"endpoint_url": ...}``).
        compression: the Parquet codec (``"snappy"``, ``"zstd"``, ``"gzip"``, None).
        row_group_rows: rows per row group (pyarrow's default); batches are gathered
            up to this many rows, or 64 MiB, before a row group is written.
    """
    return FolderSink(
        folder, ParquetFormat(compression, row_group_rows), storage_options=storage_options
    )


def jsonl(
    folder: str | os.PathLike[str],
    *,
    storage_options: Mapping[str, Any] | None = None,
    compression: str | None = None,
) -> FolderSink:
    """JSON Lines part files in ``folder``: ``part-00007.jsonl`` (``.jsonl.gz``, ``.jsonl.zst``).

    Args:
        folder: a local path or an fsspec URL (see `parquet`).
        storage_options: passed to the fsspec filesystem.
        compression: None, ``"gzip"`` or ``"zstd"``.
    """
    return FolderSink(folder, JsonlFormat(compression), storage_options=storage_options)
