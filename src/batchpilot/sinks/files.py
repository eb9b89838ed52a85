"""A part file: written under a hidden temporary name, published whole at `FilePart.commit`."""

from __future__ import annotations

import contextlib
import os
from typing import Any

from ..errors import ClosedError
from .encoders import PartFormat
from .part import PartInfo
from .place import Place, discard

__all__ = ["FilePart", "part_name"]


def part_name(partition: int, suffix: str) -> str:
    """The file name of ``partition``'s part: ``part-00007.parquet``."""
    return f"part-{partition:05d}{suffix}"


class FilePart:
    """The `PartWriter` of a folder sink: one partition's part file.

    Nothing appears under the part's name before `commit`, which replaces any part
    the same partition committed before (a partition redone after a crash). A
    part that received no rows is no file: `commit` removes an earlier one.
    """

    def __init__(self, place: Place, partition: int, part_format: PartFormat) -> None:
        self._place = place
        self._partition = partition
        self._name = part_name(partition, part_format.suffix)
        self._temporary = place.temporary(self._name)
        self._file = part_format.open(self._temporary)
        self._rows = 0
        self._state = "open"  # "open", then "committed" or "aborted"

    def write(self, table: Any) -> None:
        """Append a ``pyarrow.Table`` of output rows."""
        self._check_open()
        self._file.write(table)
        self._rows += table.num_rows

    def commit(self) -> PartInfo:
        """Publish the part under its final name, atomically, and say what it holds."""
        self._check_open()
        try:
            self._file.close()
            size = os.path.getsize(self._temporary) if self._rows else 0
            if self._rows:
                self._place.publish(self._temporary, self._name)
            else:
                discard(self._temporary)
                self._place.remove(self._name)
        except BaseException:
            self.abort()
            raise
        self._state = "committed"
        location = self._place.location(self._name) if self._rows else None
        return PartInfo(self._partition, location, self._rows, size)

    def abort(self) -> None:
        """Drop what was written; idempotent, and a no-op after `commit`."""
        if self._state != "open":
            return
        self._state = "aborted"
        with contextlib.suppress(Exception):  # the file is dropped whatever state it is in
            self._file.close()
        discard(self._temporary)

    def _check_open(self) -> None:
        if self._state != "open":
            raise ClosedError(f"part {self._name} was {self._state} already")
