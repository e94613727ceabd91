"""Compression codecs: one registry for every protocol.

Three shapes of use, all with the same names (``None``, 'lz4', 'zstd', 'zlib',
'gzip', 'bz2', 'lzma'):

- :func:`compress_pieces` / :func:`decompress_exact` — one docmill frame: the
  payload arrives as several buffers (metadata, then raw ndarray memory) and is
  fed to an incremental compressor piece by piece, so it is never joined (nor
  is the compressed output: the chunks are written one after the other);
  decompression returns *writable* memory of a size known in advance,
  so arrays can be views into it.
- :func:`compress_bytes` / :func:`decompress_bytes` — one legacy Document
  (docarray 0.21 compressed each Document with the library's one-shot call).
- :func:`stream_writer` / :func:`stream_reader` — a whole legacy
  ``*-array`` file compressed as one stream (docarray 0.21 used the
  libraries' file objects; the bytes are the same).

Every failure to decompress becomes :class:`docmill.FormatError`.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import zlib
from collections.abc import Iterable
from typing import IO, Any

import zstandard

from docmill.errors import FormatError
from docmill.io._files import writable_buffer, writable_copy

__all__ = [
    "CODEC_IDS",
    "CODEC_NAMES",
    "check_compress",
    "compress_bytes",
    "compress_pieces",
    "decompress_bytes",
    "decompress_exact",
    "stream_reader",
    "stream_writer",
]

#: codec name -> the byte that records it in a docmill file (never renumber: files keep them)
CODEC_IDS: dict[str | None, int] = {
    None: 0,
    "lz4": 1,
    "zstd": 2,
    "zlib": 3,
    "gzip": 4,
    "bz2": 5,
    "lzma": 6,
}
CODEC_NAMES: dict[int, str | None] = {v: k for k, v in CODEC_IDS.items()}

# Errors the codec libraries raise on bad input (lz4 raises RuntimeError, zstd ZstdError).
_DECODE_ERRORS: tuple[type[BaseException], ...] = (
    zlib.error,
    OSError,
    EOFError,
    lzma.LZMAError,
    RuntimeError,
    ValueError,
    zstandard.ZstdError,
)


def check_compress(compress: Any) -> str | None:
    """Validate a ``compress=`` argument; returns it (``None`` means no compression)."""
    if compress is None or (isinstance(compress, str) and compress in CODEC_IDS):
        return compress
    valid = ", ".join(repr(k) for k in CODEC_IDS)
    raise ValueError(f"compress={compress!r} is not supported; use one of: {valid}")


class _Lz4Compressor:
    """``lz4.frame.LZ4FrameCompressor`` with the compressobj interface (header on first call)."""

    def __init__(self, source_size: int = 0) -> None:
        import lz4.frame

        self._c = lz4.frame.LZ4FrameCompressor()
        self._head: bytes | None = self._c.begin(source_size=source_size)

    def compress(self, data: Any) -> bytes:
        out = self._c.compress(data)
        if self._head is not None:
            out, self._head = self._head + out, None
        return out

    def flush(self) -> bytes:
        head, self._head = self._head or b"", None
        return head + self._c.flush()


def _compressor(name: str, size: int = 0) -> Any:
    """An object with ``compress(data) -> bytes`` and ``flush() -> bytes``."""
    if name == "lz4":
        return _Lz4Compressor(size)
    if name == "zstd":
        # size lets zstd record the content size, so the reader can size its buffer
        return zstandard.ZstdCompressor().compressobj(size=size if size else -1)
    if name == "zlib":
        return zlib.compressobj()
    if name == "gzip":
        return zlib.compressobj(wbits=31)  # 16 + 15: a gzip member, as gzip.compress writes
    if name == "bz2":
        return bz2.BZ2Compressor()
    if name == "lzma":
        return lzma.LZMACompressor()
    raise ValueError(f"unknown compression {name!r}")  # pragma: no cover - checked first


def compress_pieces(name: str, pieces: Iterable[Any], size: int) -> list[bytes]:
    """Compress the concatenation of ``pieces`` (``size`` bytes in all) without joining them;
    returns the compressed stream as chunks (joining them would be one more copy)."""
    c = _compressor(name, size)
    out = [c.compress(p) for p in pieces]
    out.append(c.flush())
    return [chunk for chunk in out if chunk]


def decompress_exact(name: str, data: Any, size: int) -> bytearray | memoryview:
    """Decompress one docmill frame payload into a new writable buffer of exactly ``size`` bytes.

    Raises :class:`FormatError` (without an offset; the caller adds it) when the
    data does not decompress or has another length.
    """
    try:
        if name == "lz4":
            import lz4.frame

            out = lz4.frame.decompress(data, return_bytearray=True)
        elif name == "zstd":
            out = writable_buffer(size)
            with zstandard.ZstdDecompressor().stream_reader(data) as r:
                n = _readinto_full(r, out)
                if n != size or r.read(1):
                    raise FormatError(f"zstd data holds {'more' if n == size else n} bytes")
        elif name in ("zlib", "gzip", "bz2", "lzma"):
            if name in ("zlib", "gzip"):
                d: Any = zlib.decompressobj(wbits=31 if name == "gzip" else 15)
            elif name == "bz2":
                d = bz2.BZ2Decompressor()
            else:
                d = lzma.LZMADecompressor()
            # max_length stops a bad size field from inflating without bound
            out = writable_copy(d.decompress(data, size + 1))
            if not d.eof:
                raise FormatError(f"{name} stream is incomplete")
        else:  # pragma: no cover - codec ids are checked first
            raise FormatError(f"unknown codec {name!r}")
    except FormatError:
        raise
    except _DECODE_ERRORS as e:
        raise FormatError(f"{name} data does not decompress ({type(e).__name__}: {e})") from e
    if len(out) != size:
        raise FormatError(f"{name} data decompressed to {len(out)} bytes, expected {size}")
    return out


def _readinto_full(r: Any, view: memoryview) -> int:
    n = 0
    while n < len(view):
        k = r.readinto(view[n:])
        if not k:
            break
        n += k
    return n


# ---------------------------------------------------------------------- legacy, per Document
def compress_bytes(data: bytes, name: str | None) -> bytes:
    """One-shot compression with the calls docarray 0.21 used per Document."""
    if name is None:
        return data
    if name == "lz4":
        import lz4.frame

        return lz4.frame.compress(data)
    if name == "zstd":
        return zstandard.ZstdCompressor().compress(data)
    if name == "zlib":
        return zlib.compress(data)
    if name == "gzip":
        return gzip.compress(data)
    if name == "bz2":
        return bz2.compress(data)
    if name == "lzma":
        return lzma.compress(data)
    raise ValueError(f"unknown compression {name!r}")  # pragma: no cover


def decompress_bytes(data: bytes, name: str | None) -> bytes:
    """Inverse of :func:`compress_bytes`; bad data -> :class:`FormatError` (no offset)."""
    if name is None:
        return data
    try:
        if name == "lz4":
            import lz4.frame

            return lz4.frame.decompress(data)
        if name == "zstd":
            return zstandard.ZstdDecompressor().decompress(data)
        if name == "zlib":
            return zlib.decompress(data)
        if name == "gzip":
            return gzip.decompress(data)
        if name == "bz2":
            return bz2.decompress(data)
        if name == "lzma":
            return lzma.decompress(data)
    except _DECODE_ERRORS as e:
        raise FormatError(f"{name} data does not decompress ({type(e).__name__}: {e})") from e
    raise ValueError(f"unknown compression {name!r}")  # pragma: no cover


# ---------------------------------------------------------------------- legacy, whole stream
class _CompressWriter(io.RawIOBase):
    """A write-only file object that compresses into ``raw`` (left open on close)."""

    def __init__(self, raw: IO[bytes], name: str) -> None:
        self._raw = raw
        self._c = _compressor(name)

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        out = self._c.compress(data)
        if out:
            self._raw.write(out)
        return memoryview(data).nbytes

    def close(self) -> None:
        if not self.closed:
            self._raw.write(self._c.flush())
        super().close()


def stream_writer(raw: IO[bytes], name: str | None) -> IO[bytes]:
    """A file object compressing everything written to it into ``raw``; close it to finish.

    Closing it does not close ``raw``. With ``name=None`` writes pass through.
    """
    if name is None:
        return _Passthrough(raw)  # type: ignore[return-value]
    return _CompressWriter(raw, name)  # type: ignore[return-value]


class _Passthrough:
    def __init__(self, raw: IO[bytes]) -> None:
        self._raw = raw

    def write(self, data: Any) -> int:
        return self._raw.write(data)

    def close(self) -> None:
        pass


class _ZlibReader(io.RawIOBase):
    """Incremental zlib decompression as a readable file object (the stdlib has none)."""

    def __init__(self, raw: IO[bytes]) -> None:
        self._raw = raw
        self._d = zlib.decompressobj()
        self._buf = b""

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        while not self._buf:
            if self._d.eof:
                return 0
            chunk = self._d.unconsumed_tail or self._raw.read(1 << 16)
            if not chunk:
                raise EOFError("zlib stream ends before its end marker")
            self._buf = self._d.decompress(chunk, 1 << 20)
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n


def stream_reader(raw: IO[bytes], name: str | None) -> IO[bytes]:
    """A readable file object that decompresses ``raw`` incrementally (memory stays bounded).

    Read errors surface as the libraries' exceptions; callers map them to
    :class:`FormatError` with :data:`DECODE_ERRORS`.
    """
    if name is None:
        return raw
    if name == "lz4":
        import lz4.frame

        return lz4.frame.LZ4FrameFile(raw, "rb")  # type: ignore[return-value]
    if name == "zstd":
        return zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
    if name == "zlib":
        return io.BufferedReader(_ZlibReader(raw), 1 << 16)  # type: ignore[return-value]
    if name == "gzip":
        return gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]
    if name == "bz2":
        return bz2.BZ2File(raw, "rb")  # type: ignore[return-value]
    if name == "lzma":
        return lzma.LZMAFile(raw, "rb")  # type: ignore[return-value]
    raise ValueError(f"unknown compression {name!r}")  # pragma: no cover


#: exceptions a :func:`stream_reader` may raise on corrupt data
DECODE_ERRORS = _DECODE_ERRORS
