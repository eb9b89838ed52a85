"""Record files by suffix: their format, and ``.gz`` (gzip) or ``.zst`` (Zstandard) compression.

`FILE_FORMATS` maps a file suffix to its format; only text formats may be
compressed (``data.csv.gz``); ``.zst`` needs ``zstandard``.

A compressed file is read as one decompressed byte stream, whatever number of
gzip members or Zstandard frames it holds. It is written as independent pieces
(`compress`), each a complete member or frame, so a file can grow by appending
and be cut back at any piece boundary and still be valid.
"""

from __future__ import annotations

import gzip
import io
from pathlib import Path, PurePath
from typing import IO, Any, cast

__all__ = [
    "CODECS",
    "FILE_FORMATS",
    "TEXT_FORMATS",
    "codec_of",
    "compress",
    "decompressing",
    "open_decompressed",
    "strip_codec",
]

#: File suffix -> codec name.
CODECS = {".gz": "gzip", ".zst": "zstd"}
#: File suffix -> format of a record file.
FILE_FORMATS = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
    ".tsv": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
}
#: Formats that are lines of text, so may be compressed.
TEXT_FORMATS = frozenset({"jsonl", "csv", "tsv"})


def codec_of(path: PurePath) -> str | None:
    """The codec ``path``'s last suffix names, or None for a plain file."""
    return CODECS.get(path.suffix.lower())


def strip_codec(path: PurePath) -> PurePath:
    """``path`` without its compression suffix (``a.csv.gz`` -> ``a.csv``)."""
    return path.with_suffix("") if codec_of(path) else path


def _zstandard() -> object:
    try:
        import zstandard
    except ImportError:
        raise ImportError(".zst files need zstandard: pip install zstandard") from None
    return zstandard


def open_decompressed(path: Path, codec: str | None) -> IO[bytes]:
    """Open ``path`` for reading bytes, decompressing with ``codec``."""
    return decompressing(path.open("rb"), codec)


def decompressing(raw: IO[bytes], codec: str | None) -> IO[bytes]:
    """``raw``'s bytes decompressed with ``codec`` (closing the result closes ``raw``)."""
    if codec is None:
        return raw
    if codec == "gzip":
        return cast(IO[bytes], _GzipReader(raw))
    zstandard: Any = _zstandard()
    reader = zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
    return io.BufferedReader(reader)


class _GzipReader(gzip.GzipFile):
    """A gzip stream over an open file that, unlike `gzip.GzipFile`, closes that file."""

    def __init__(self, raw: IO[bytes]) -> None:
        super().__init__(fileobj=raw, mode="rb")
        self._raw = raw

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._raw.close()


def compress(data: bytes, codec: str | None) -> bytes:
    """``data`` as one self-contained piece of a file compressed with ``codec``."""
    if codec is None:
        return data
    if codec == "gzip":
        return gzip.compress(data, compresslevel=6, mtime=0)
    zstandard: Any = _zstandard()
    return bytes(zstandard.ZstdCompressor().compress(data))
