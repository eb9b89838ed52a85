"""Whole lines of a text file: the ones a byte range owns, in groups, with their numbers.

A byte range ``[start, end)`` owns every line that starts at an offset in it:
the reader backs up one byte, skips to the first line start at or after
``start``, and reads on until the line that starts before ``end`` is complete.
Neighbouring ranges therefore share no line and miss none, and the driver never
looks inside the file.

Line numbers of a range that starts mid-file need the count of the lines before
it, which only a read of the file's prefix can give. That read is done lazily
(`LineBase`): at most once per partition, and only when a number is asked for, by
a malformed row or a failed one; a healthy partition never reads its prefix.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import IO, Any, overload

import numpy as np

from .listing import to_fs

__all__ = ["LineBase", "LineNumbers", "align", "line_groups", "nonblank", "owned_blocks"]

_BLOCK = 4 << 20
_BOM = b"\xef\xbb\xbf"
_NEWLINE = 10
_RETURN = 13


class LineBase:
    """The number of lines before byte ``offset`` of a file, counted on first use."""

    def __init__(
        self,
        path: str,
        storage_options: dict[str, Any] | None,
        offset: int,
        count: int | None = None,
    ) -> None:
        self.path, self.storage_options, self.offset = path, storage_options, offset
        self._count = count

    @classmethod
    def known(cls, count: int) -> LineBase:
        """A base whose count is already known (a range at the file's start)."""
        return cls("", None, 0, count)

    def __call__(self) -> int:
        if self._count is None:
            # ranged reads, not a second open handle: fsspec's memory:// shares one
            fs, inner = to_fs(self.path, self.storage_options)
            self._count = sum(
                fs.cat_file(inner, start=start, end=min(start + _BLOCK, self.offset)).count(b"\n")
                for start in range(0, self.offset, _BLOCK)
            )
        return self._count

    def __repr__(self) -> str:
        count = "not counted" if self._count is None else self._count
        return f"LineBase({self.path!r}, offset={self.offset}, count={count})"


class LineNumbers(Sequence[int]):
    """1-based line numbers of a batch's rows: a shared `LineBase` plus each row's line.

    Cheap to make (no Python object per row); the base is counted on the first lookup.
    """

    __slots__ = ("_base", "_relative")

    def __init__(self, base: LineBase, relative: np.ndarray) -> None:
        self._base, self._relative = base, relative

    def __len__(self) -> int:
        return len(self._relative)

    @overload
    def __getitem__(self, index: int) -> int: ...
    @overload
    def __getitem__(self, index: slice) -> LineNumbers: ...
    def __getitem__(self, index: int | slice) -> int | LineNumbers:
        if isinstance(index, slice):
            return LineNumbers(self._base, self._relative[index])
        return self._base() + int(self._relative[index]) + 1

    def __iter__(self) -> Iterator[int]:
        base = self._base() + 1
        return (base + line for line in self._relative.tolist())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and list(self) == list(other)

    def __repr__(self) -> str:
        return (
            f"LineNumbers({list(self)!r})"
            if len(self) <= 10
            else f"LineNumbers(<{len(self)} lines>)"
        )


def align(file: IO[bytes], start: int) -> int:
    """Position ``file`` at the first line start at or after ``start``; return that offset."""
    if start <= 0:
        return 0
    file.seek(start - 1)
    return start - 1 + len(file.readline())


def owned_blocks(file: IO[bytes], position: int, end: int | None) -> Iterator[bytes]:
    """Blocks of whole lines from ``position`` (a line start) that start before ``end``.

    ``end`` None reads to the end of the file. The last line of a file may lack its
    newline. A byte order mark at the file's start is dropped.
    """
    base, carry, first = position, b"", position == 0
    while end is None or base < end:
        data = file.read(_BLOCK)
        if first:
            data, first = data.removeprefix(_BOM), False
        if not data:
            if carry:
                yield carry
            return
        buffer = carry + data
        cut = buffer.rfind(b"\n") + 1
        if end is not None and base + cut > end:  # lines from `end` on belong to the next range
            yield buffer[: buffer.find(b"\n", end - base - 1) + 1]
            return
        if cut:
            yield buffer[:cut]
        carry, base = buffer[cut:], base + cut


def line_groups(
    blocks: Iterable[bytes], lines: int, quote: bytes | None = None
) -> Iterator[tuple[bytes, int]]:
    """``(text, first)``: runs of ``lines`` whole lines (fewer at the end), ``first`` the
    0-based number of the run's first line.

    With ``quote``, a run ends only where it holds an even number of quote
    characters, so a quoted value with newlines in it is never cut (such a run
    holds more lines).
    """
    pending, first = b"", 0
    for block in blocks:
        buffer = pending + block
        array = np.frombuffer(buffer, np.uint8)
        ends = np.flatnonzero(array == _NEWLINE) + 1  # the offset after each line
        position = 0
        for cut in _cuts(array, ends, lines, quote):
            yield buffer[position:cut], first
            first += buffer.count(b"\n", position, cut)
            position = cut
        pending = buffer[position:]
    if pending:
        yield pending, first


def _cuts(array: np.ndarray, ends: np.ndarray, lines: int, quote: bytes | None) -> list[int]:
    """Offsets that end runs of at least ``lines`` lines, outside quotes when ``quote``."""
    if quote is not None:
        quotes = np.flatnonzero(array == quote[0])  # quotes before each line end, by search
        outside = np.searchsorted(quotes, ends) % 2 == 0
        if not outside.all():  # a value spans lines: cut only at line ends outside quotes
            cuts, last = [], 0
            for line, end in zip(
                np.flatnonzero(outside).tolist(), ends[outside].tolist(), strict=True
            ):
                if line + 1 - last >= lines:
                    cuts.append(end)
                    last = line + 1
            return cuts
    return ends[lines - 1 :: lines].tolist()


def nonblank(text: bytes) -> np.ndarray:
    """0-based numbers of the lines of ``text`` that hold more than a line break."""
    array = np.frombuffer(text, np.uint8)
    newlines = np.flatnonzero(array == _NEWLINE)
    ends = newlines if text.endswith(b"\n") else np.append(newlines, len(text))
    starts = np.concatenate(([0], newlines + 1))[: len(ends)]
    lengths = ends - starts
    returns = (
        (lengths > 0) & (array[np.maximum(ends - 1, 0)] == _RETURN) if len(array) else lengths > 0
    )
    return np.flatnonzero(lengths - returns > 0)
