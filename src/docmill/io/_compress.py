"""Compression codecs: one registry (:data:`CODECS`) for every protocol.

Each :class:`Codec` knows how to compress (incrementally or in one call) and
how to make an *incremental, bounded* decompressor. Everything else here is
written once over that interface:

- :func:`compress_pieces` / :func:`decompress_exact` — one docmill frame: the
  payload arrives as several buffers (metadata, then raw ndarray memory) and is
  fed to an incremental compressor piece by piece, so it is never joined;
  decompression returns *writable* memory of the size the frame claims, so
  arrays can be views into it.
- :func:`compress_bytes` / :func:`decompress_bytes` — one legacy Document
  (docarray 0.21 compressed each Document with the library's one-shot call).
- :func:`stream_writer` / :func:`stream_reader` — a whole legacy
  ``*-array`` file compressed as one stream (the same bytes docarray 0.21's
  library file objects wrote).

Untrusted input cannot make docmill allocate what the data does not hold:

- no size a stream *claims* (lz4's and zstd's content-size fields, a docmill
  frame's raw length) is allocated before it is checked. A docmill frame's
  claim above what the codec can encode at all (lz4 < 256x, zlib/gzip < 1033x)
  is refused at once; otherwise at most ``256 x`` the compressed size is
  allocated up front and the rest only as real output arrives;
- output is produced in bounded steps, so a decompression bomb stops one step
  past the size it was expected to have;
- a stream that ends before its codec's end marker is truncated, never "short".

Every failure to decompress becomes :class:`docmill.FormatError`.
"""

from __future__ import annotations

import bz2
import io
import lzma
import zlib
from collections.abc import Iterable
from typing import IO, Any

import zstandard

from docmill.errors import FormatError
from docmill.io._files import writable_buffer, writable_copy

__all__ = [
    "CODECS",
    "CODEC_IDS",
    "CODEC_NAMES",
    "DECODE_ERRORS",
    "Codec",
    "check_compress",
    "compress_bytes",
    "compress_pieces",
    "decompress_bytes",
    "decompress_exact",
    "stream_reader",
    "stream_writer",
]

_STEP = 1 << 20  # output produced per decompression step
_ZSTD_FEED = 4096  # zstd input per step: at most ~128 MB of output even for a crafted frame
_PREALLOC_RATIO = 256  # what decompress_exact allocates before any output exists


class Codec:
    """One compression format. Subclasses set ``name``, ``id`` (the byte recorded
    in docmill files: never renumber) and implement the three factories."""

    name: str = ""
    id: int = 0
    #: a proven bound on decompressed / compressed size (None: no useful bound)
    max_ratio: float | None = None
    #: several concatenated streams form one (gzip members, zstd frames, ...)
    multi_stream: bool = True

    def compressor(self, size: int = 0) -> Any:
        """An object with ``compress(data) -> bytes`` and ``flush() -> bytes``;
        ``size`` is the total input size when known (0: unknown)."""
        raise NotImplementedError

    def decompressor(self) -> Any:
        """An object with ``decompress(data, max_length) -> bytes`` (``data`` may be
        ``b""`` to continue), ``eof``, ``needs_input`` and ``unused_data``, as
        :class:`bz2.BZ2Decompressor` has."""
        raise NotImplementedError

    def compress(self, data: Any) -> bytes:
        """One-shot compression (the library call docarray 0.21 used)."""
        c = self.compressor(memoryview(data).nbytes)
        return c.compress(data) + c.flush()


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


class _Lz4(Codec):
    name, id, max_ratio = "lz4", 1, 256.0  # an lz4 sequence encodes at most ~255 bytes per byte

    def compressor(self, size: int = 0) -> Any:
        return _Lz4Compressor(size)

    def decompressor(self) -> Any:
        import lz4.frame

        return lz4.frame.LZ4FrameDecompressor(return_bytearray=True)

    def compress(self, data: Any) -> bytes:
        import lz4.frame

        return lz4.frame.compress(data)


class _ZstdDecompressor:
    """zstandard's decompressobj, made to produce bounded output: its ``decompress``
    returns all output of the input it is given, so input goes in small slices."""

    def __init__(self) -> None:
        self._d = zstandard.ZstdDecompressor().decompressobj()
        self._input = memoryview(b"")
        self._out = b""

    @property
    def eof(self) -> bool:
        return self._d.eof and not self._out

    @property
    def needs_input(self) -> bool:
        return not self._input and not self._out and not self._d.eof

    @property
    def unused_data(self) -> bytes:
        return self._d.unused_data + bytes(self._input) if self._d.eof else b""

    def decompress(self, data: Any, max_length: int = -1) -> bytes:
        if memoryview(data).nbytes:
            data = memoryview(data).cast("B")
            self._input = memoryview(bytes(self._input) + bytes(data)) if self._input else data
        out = self._out
        while (max_length < 0 or len(out) < max_length) and self._input and not self._d.eof:
            piece, self._input = self._input[:_ZSTD_FEED], self._input[_ZSTD_FEED:]
            out += self._d.decompress(piece)
        if max_length >= 0 and len(out) > max_length:
            out, self._out = out[:max_length], out[max_length:]
        else:
            self._out = b""
        return out


class _Zstd(Codec):
    name, id = "zstd", 2  # RLE blocks reach ~30,000x: no useful bound

    def compressor(self, size: int = 0) -> Any:
        # size lets zstd record the content size in the frame
        return zstandard.ZstdCompressor().compressobj(size=size if size else -1)

    def decompressor(self) -> Any:
        return _ZstdDecompressor()

    def compress(self, data: Any) -> bytes:
        return zstandard.ZstdCompressor().compress(data)


class _ZlibDecompressor:
    """zlib's decompressobj with the ``bz2`` interface (it keeps its own unconsumed input)."""

    def __init__(self, wbits: int) -> None:
        self._d = zlib.decompressobj(wbits=wbits)

    @property
    def eof(self) -> bool:
        return self._d.eof

    @property
    def needs_input(self) -> bool:
        return not self._d.unconsumed_tail and not self._d.eof

    @property
    def unused_data(self) -> bytes:
        return self._d.unused_data

    def decompress(self, data: Any, max_length: int = -1) -> bytes:
        tail = self._d.unconsumed_tail
        if tail:
            data = tail + bytes(data)
        return self._d.decompress(data, max(max_length, 0))


class _Zlib(Codec):
    name, id, max_ratio, multi_stream = "zlib", 3, 1033.0, False  # deflate: <= 258 bytes / 2 bits
    wbits = 15

    def compressor(self, size: int = 0) -> Any:
        return zlib.compressobj(wbits=self.wbits)

    def decompressor(self) -> Any:
        return _ZlibDecompressor(self.wbits)


class _Gzip(_Zlib):
    name, id, multi_stream = "gzip", 4, True
    wbits = 31  # 16 + 15: a gzip member, as gzip.compress writes


class _Bz2(Codec):
    name, id = "bz2", 5

    def compressor(self, size: int = 0) -> Any:
        return bz2.BZ2Compressor()

    def decompressor(self) -> Any:
        return bz2.BZ2Decompressor()


class _Lzma(Codec):
    name, id = "lzma", 6

    def compressor(self, size: int = 0) -> Any:
        return lzma.LZMACompressor()

    def decompressor(self) -> Any:
        return lzma.LZMADecompressor()


#: codec name -> codec; a new codec is one class plus one entry (ids are recorded in files)
CODECS: dict[str, Codec] = {c.name: c for c in (_Lz4(), _Zstd(), _Zlib(), _Gzip(), _Bz2(), _Lzma())}
CODEC_IDS: dict[str | None, int] = {None: 0, **{c.name: c.id for c in CODECS.values()}}
CODEC_NAMES: dict[int, str | None] = {v: k for k, v in CODEC_IDS.items()}

# Errors the codec libraries raise on bad input (lz4 raises RuntimeError, zstd ZstdError).
DECODE_ERRORS: tuple[type[BaseException], ...] = (
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
    if compress is None or (isinstance(compress, str) and compress in CODECS):
        return compress
    valid = ", ".join(repr(k) for k in CODEC_IDS)
    raise ValueError(f"compress={compress!r} is not supported; use one of: {valid}")


# ---------------------------------------------------------------------- decompression
class _Inflater(io.RawIOBase):
    """The decompressed bytes of ``source`` (a buffer, or a file object read in 64 KiB
    pieces) as a readable file object, produced in bounded steps. Raises
    ``EOFError`` when the input ends before the codec's end marker."""

    def __init__(self, codec: Codec, source: Any) -> None:
        self._codec = codec
        self._d = codec.decompressor()
        if hasattr(source, "read"):
            self._raw: Any = source
            self._input: Any = b""
        else:
            self._raw = None
            self._input = memoryview(source).cast("B")
        self._chunk: Any = b""  # the latest decompressed step ...
        self._pos = 0  # ... and how much of it was handed out (no re-slicing copies)
        self._done = False

    def readable(self) -> bool:
        return True

    def _more_input(self) -> Any:
        if self._raw is not None:
            return self._raw.read(1 << 16)
        data, self._input = self._input, b""
        return data

    def _fill(self) -> int:
        """Decompress the next step if the current one is used up; bytes available."""
        while self._pos == len(self._chunk) and not self._done:
            d = self._d
            if d.eof:
                rest = d.unused_data or self._more_input()
                if not rest:
                    self._done = True
                    break
                if not self._codec.multi_stream:
                    raise ValueError(
                        f"unexpected data after the end of the {self._codec.name} stream"
                    )
                self._d = d = self._codec.decompressor()  # the next member / frame
                data = rest
            else:
                data = self._more_input() if d.needs_input else b""
                if d.needs_input and not memoryview(data).nbytes:
                    raise EOFError(
                        f"the {self._codec.name} stream ends before its end marker (truncated)"
                    )
            self._chunk, self._pos = d.decompress(data, _STEP), 0
        return len(self._chunk) - self._pos

    def readinto(self, b: Any) -> int:
        n = min(len(b), self._fill())
        b[:n] = memoryview(self._chunk)[self._pos : self._pos + n]
        self._pos += n
        return n

    def read(self, size: int = -1) -> Any:
        """Up to ``size`` bytes (a bytes-like object; the whole step when it fits, uncopied)."""
        if size is None or size < 0:
            return self.readall()
        n = min(size, self._fill())
        if self._pos == 0 and n == len(self._chunk):
            out = self._chunk
        else:
            out = bytes(memoryview(self._chunk)[self._pos : self._pos + n])
        self._pos += n
        return out

    def readall(self) -> bytes:
        parts = []
        while piece := self.read(_STEP):
            parts.append(piece)
        return b"".join(parts)


def _readinto_full(r: Any, view: memoryview) -> int:
    n = 0
    while n < len(view):
        k = r.readinto(view[n:])
        if not k:
            break
        n += k
    return n


def decompress_exact(name: str, data: Any, size: int) -> memoryview | bytearray:
    """Decompress one docmill frame payload into writable memory of exactly ``size`` bytes.

    Raises :class:`FormatError` (without an offset; the caller adds it) when the
    data does not decompress, has another length, or claims a size the codec
    cannot produce from it. Memory follows the output actually produced (for zstd,
    at most ``256 x len(data)`` is allocated before it exists).
    """
    codec = CODECS.get(name)
    if codec is None:  # pragma: no cover - codec ids are checked first
        raise FormatError(f"unknown codec {name!r}")
    n_in = memoryview(data).nbytes
    if codec.max_ratio is not None and size > codec.max_ratio * n_in + 1024:
        raise FormatError(
            f"{name} data of {n_in} bytes claims {size} bytes decompressed, more than {name} "
            f"can encode in that space"
        )
    try:
        if name != "zstd":
            # One call bounded by size + 1: these decompressors grow their output as it
            # is produced, so memory follows real output, never the claim.
            d = codec.decompressor()
            out: Any = d.decompress(data, size + 1)
            if len(out) != size:
                raise FormatError(f"{name} data decompressed to {len(out)}+ bytes, expected {size}")
            if not d.eof or d.unused_data:
                raise FormatError(f"{name} stream is incomplete or has trailing data")
            # lz4 hands back a bytearray: writable already
            return out if isinstance(out, bytearray) else writable_copy(out)
        # zstd's reader fills a buffer in place (no copy), but a buffer must exist first:
        # at most 256 x the input, then grow only as real output arrives
        r = zstandard.ZstdDecompressor().stream_reader(data)
        first = min(size, _PREALLOC_RATIO * n_in + _STEP)
        out = writable_buffer(first)
        n = _readinto_full(r, out)
        if n == first < size:  # a high ratio
            parts = [out]
            while n < size and (piece := r.read(min(size - n, 16 * _STEP))):
                parts.append(piece)
                n += len(piece)
            if n == size:
                out = writable_buffer(size)
                pos = 0
                for p in parts:
                    out[pos : pos + len(p)] = p
                    pos += len(p)
        if n != size or r.read(1):
            raise FormatError(
                f"{name} data holds {'more' if n == size else n} bytes, expected {size}"
            )
        return out
    except FormatError:
        raise
    except DECODE_ERRORS as e:
        raise FormatError(f"{name} data does not decompress ({type(e).__name__}: {e})") from e


# ---------------------------------------------------------------------- legacy, per Document
def compress_pieces(name: str, pieces: Iterable[Any], size: int) -> list[bytes]:
    """Compress the concatenation of ``pieces`` (``size`` bytes in all) without joining them;
    returns the compressed stream as chunks (joining them would be one more copy)."""
    c = CODECS[name].compressor(size)
    out = [c.compress(p) for p in pieces]
    out.append(c.flush())
    return [chunk for chunk in out if chunk]


def compress_bytes(data: Any, name: str | None) -> bytes:
    """One-shot compression with the calls docarray 0.21 used per Document."""
    return bytes(data) if name is None else CODECS[name].compress(data)


def decompress_bytes(data: Any, name: str | None) -> Any:
    """Inverse of :func:`compress_bytes`; bad data -> :class:`FormatError` (no offset).
    Memory grows only with real output (no claimed size is trusted)."""
    if name is None:
        return data
    try:
        return _Inflater(CODECS[name], data).readall()
    except DECODE_ERRORS as e:
        raise FormatError(f"{name} data does not decompress ({type(e).__name__}: {e})") from e


# ---------------------------------------------------------------------- legacy, whole stream
class _CompressWriter(io.RawIOBase):
    """A write-only file object that compresses into ``raw`` (left open on close)."""

    def __init__(self, raw: IO[bytes], name: str) -> None:
        self._raw = raw
        self._c = CODECS[name].compressor()

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


class _Passthrough:
    def __init__(self, raw: IO[bytes]) -> None:
        self._raw = raw

    def write(self, data: Any) -> int:
        return self._raw.write(data)

    def close(self) -> None:
        pass


def stream_writer(raw: IO[bytes], name: str | None) -> IO[bytes]:
    """A file object compressing everything written to it into ``raw``; close it to finish.

    Closing it does not close ``raw``. With ``name=None`` writes pass through.
    """
    if name is None:
        return _Passthrough(raw)  # type: ignore[return-value]
    return _CompressWriter(raw, name)  # type: ignore[return-value]


def stream_reader(raw: IO[bytes], name: str | None) -> IO[bytes]:
    """A readable file object that decompresses ``raw`` incrementally (memory stays
    bounded); a stream cut before its end marker raises ``EOFError``.

    Read errors surface as the libraries' exceptions; callers map them to
    :class:`FormatError` with :data:`DECODE_ERRORS`.
    """
    if name is None:
        return raw
    return io.BufferedReader(_Inflater(CODECS[name], raw), 1 << 16)  # type: ignore[return-value]
