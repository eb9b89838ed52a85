"""Text outputs: JSON Lines, CSV and TSV, optionally compressed (``.gz``, ``.zst``).

Each write appends one self-contained (compressed) piece to the run's segment
file; `TextTarget.finish` concatenates the committed pieces after a header.
"""

from __future__ import annotations

import csv
import io
import math
import os
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, BinaryIO

from ..._core.compression import compress, open_decompressed
from ..._core.jsonrows import JSON
from ..records_io import CSV_FIELD_LIMIT, RecordsFormatError, to_row
from .base import AppendedSegment, Segment, Target
from .encode import jsonl_text

__all__ = ["TextTarget"]

_DELIMITERS = {"csv": ",", "tsv": "\t"}


class TextTarget(Target):
    """A ``.jsonl``/``.ndjson``, ``.csv`` or ``.tsv`` file (``kind`` says which)."""

    def open_segment(self, parts: Path, number: int, columns: list[str] | None) -> Segment:
        return _TextSegment(_piece(parts, number), self, columns)

    def finish(
        self, parts: Path, committed: dict[int, int], columns: list[str] | None, if_exists: str
    ) -> None:
        pieces = [_piece(parts, number) for number in sorted(committed)]
        append = if_exists == "append" and self.path.exists() and self.path.stat().st_size > 0
        header = b""
        if self.kind in _DELIMITERS:
            if append:
                self._check_header(columns)
            elif columns is not None:
                header = compress(_csv_text([columns], _DELIMITERS[self.kind]).encode(), self.codec)
        if append:
            with self.path.open("ab") as out:
                _copy(pieces, out)
            return
        partial = self.files()[1]
        with partial.open("wb") as out:
            out.write(header)
            _copy(pieces, out)
        os.replace(partial, self.path)

    def _check_header(self, columns: list[str] | None) -> None:
        with open_decompressed(self.path, self.codec) as file:
            first = io.TextIOWrapper(file, encoding="utf-8-sig", newline="").readline()
        csv.field_size_limit(CSV_FIELD_LIMIT)
        existing = next(csv.reader([first], delimiter=_DELIMITERS[self.kind]), [])
        if columns is not None and existing != columns:
            raise RecordsFormatError(
                f"cannot append to {self.path}: its header is {existing}, the results have "
                f"columns {columns}"
            )


def _piece(parts: Path, number: int) -> Path:
    """The file of the text segment ``number`` in ``parts``."""
    return parts / f"{number:05d}.part"


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return JSON.encode(value)
    if isinstance(value, float) and math.isnan(value):
        return ""
    return str(value)


def _csv_text(rows: Iterable[Sequence[str]], delimiter: str) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, delimiter=delimiter, lineterminator="\n").writerows(rows)
    return buffer.getvalue()


def _copy(pieces: Iterable[Path], out: BinaryIO) -> None:
    for piece in pieces:
        with piece.open("rb") as file:
            shutil.copyfileobj(file, out, 1 << 20)


class _TextSegment(AppendedSegment):
    """JSON Lines or CSV/TSV text, appended as one compressed piece per write."""

    def __init__(self, path: Path, target: Target, columns: list[str] | None) -> None:
        super().__init__(path)
        self._kind = target.kind  # jsonl, csv or tsv
        self._codec = target.codec  # each piece is compressed on its own
        self.columns = columns  # the CSV/TSV header, fixed by the first rows

    def write(self, results: Sequence[Any]) -> bool:
        if not results:
            return True
        return self.append(compress(self._encode(results).encode("utf-8"), self._codec))

    def _encode(self, results: Sequence[Any]) -> str:
        if self._kind == "jsonl":
            return jsonl_text(results)
        rows = [to_row(value) for value in results]
        if self.columns is None:
            self.columns = list(dict.fromkeys(key for row in rows for key in row))
        known = set(self.columns)
        extra = {key for row in rows for key in row} - known
        if extra:
            raise RecordsFormatError(
                f"results gained columns {sorted(extra)} after the {self._kind.upper()} header "
                f"was fixed to {self.columns}; write JSON Lines, SQLite or Parquet instead"
            )
        return _csv_text(([_cell(row.get(name)) for name in self.columns] for row in rows),
                         _DELIMITERS[self._kind])  # fmt: skip
