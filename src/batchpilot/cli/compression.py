"""Compressed record files: ``.gz`` (gzip) and ``.zst`` (Zstandard, needs ``zstandard``).

A compressed file is read as one decompressed byte stream, whatever number of
gzip members or Zstandard frames it holds. It is written as independent pieces
(`compress`), each a complete member or frame, so a file can grow by appending
and be cut back at any piece boundary and still be valid.
"""

from __future__ import annotations

import gzip
import io
from pathlib import Path
from typing import IO, Any, cast

__all__ = ["CODECS", "codec_of", "compress", "open_decompressed", "strip_codec"]

#: File suffix -> codec name.
CODECS = {".gz": "gzip", ".zst": "zstd"}


def codec_of(path: Path) -> str | None:
    """The codec ``path``'s last suffix names, or None for a plain file."""
    return CODECS.get(path.suffix.lower())


def strip_codec(path: Path) -> Path:
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
    if codec is None:
        return path.open("rb")
    if codec == "gzip":
        return cast(IO[bytes], gzip.open(path, "rb"))
    zstandard: Any = _zstandard()
    raw = path.open("rb")
    reader = zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
    return io.BufferedReader(reader)


def compress(data: bytes, codec: str | None) -> bytes:
    """``data`` as one self-contained piece of a file compressed with ``codec``."""
    if codec is None:
        return data
    if codec == "gzip":
        return gzip.compress(data, compresslevel=6, mtime=0)
    zstandard: Any = _zstandard()
    return bytes(zstandard.ZstdCompressor().compress(data))
