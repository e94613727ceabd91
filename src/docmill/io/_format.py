"""The 'docmill' binary format: a header, then length-prefixed, checksummed frames.

::

    file         = header, frame*, end frame, [nothing]
    header       (32 bytes)  magic b"\\x89DOCMILL" | version u16 | codec u8 | checksum u8
                             | 16 zero bytes | crc32 of the 28 bytes before   (u32)
    frame header (32 bytes)  kind u8 | codec u8 | 2 zero bytes | count u32
                             | stored_len u64 | raw_len u64
                             | checksum of the stored payload u32 | crc32 of the 28 bytes before u32
    frame        = frame header, stored payload (stored_len bytes), zero pad to 32

All integers are little-endian. ``kind`` 1 holds ``count`` Documents: its
payload (see :mod:`docmill.io._docpack`) is compressed with the frame's
``codec`` (0 none, 1 lz4, 2 zstd, 3 zlib, 4 gzip, 5 bz2, 6 lzma) to
``stored_len`` bytes and decompresses to ``raw_len``. A frame that compression
would not shrink is stored raw (codec 0), so incompressible tensors cost
nothing to decode; a 256 KB sample decides that before the whole frame is
compressed (see ``_worth_compressing``). ``kind`` 2 ends the file: count 0, no payload, and
``raw_len`` holds the total number of Documents (so a file cut at a frame
boundary is detected too). The header's codec is the writer's setting; each
frame records what it really used, so readers never need a ``compress=``.

Payload checksums use the header's ``checksum`` algorithm: 1 = XXH3-64 (its
low 32 bits; ~30 GB/s, written whenever the ``xxhash`` package is installed),
0 = CRC-32 (zlib; ~7 GB/s, the fallback). Headers always use CRC-32.

Why this shape: frames make streaming possible both ways (write a ``map``
result as it comes, read one frame at a time: memory is bounded by the frame
size, ~8 MB or one large Document) and let compression run on several frames
in parallel. Checksums in every header stop a flipped length from sending
the reader off into a huge allocation; the payload checksum catches any other
flipped byte. The 32-byte alignment of headers, payloads and buffers keeps
ndarrays aligned when they are decoded as views of the file's bytes.

Versions: readers keep a decoder per version they ever wrote; a newer file
than the reader knows raises :class:`FormatError` asking to upgrade.

Sans-IO: :class:`FrameEncoder` turns Documents into the format's bytes and
:class:`FrameDecoder` turns bytes, fed in chunks of any size, back into
Documents; neither does any IO. Everything else is a thin driver over them:
:class:`FrameWriter` (a ``write`` callable), :func:`encode_docs` (an iterator of
bytes, e.g. an HTTP request body) and :func:`read_docs` (bytes or a file object,
exact-size reads so nothing past the end frame is consumed).
"""

from __future__ import annotations

import itertools
import re
import struct
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, NamedTuple

from docmill.document import Document, approx_nbytes
from docmill.errors import FormatError, MissingExtra
from docmill.io._compress import (
    CODEC_IDS,
    CODEC_NAMES,
    compress_bytes,
    compress_pieces,
    decompress_exact,
)
from docmill.io._docpack import ALIGN, decode_payload, encode_payload
from docmill.io._files import readinto_exact, writable_buffer, writable_copy

__all__ = [
    "CHECKSUM_CRC32",
    "CHECKSUM_XXH3",
    "DEFAULT_CHECKSUM",
    "MAGIC",
    "VERSION",
    "EncodedFrame",
    "FrameBudget",
    "FrameDecoder",
    "FrameEncoder",
    "FrameWriter",
    "encode_docs",
    "encode_frame",
    "group_docs",
    "map_groups",
    "payload_checksum",
    "read_docs",
    "thread_map",
]

MAGIC = b"\x89DOCMILL"
VERSION = 1
_SUPPORTED_VERSIONS = (1,)
_HEADER = struct.Struct("<8sHBB16xI")
CHECKSUM_CRC32, CHECKSUM_XXH3 = 0, 1
try:  # ~4x faster than CRC-32: the checksum is most of the cost of an uncompressed frame
    import xxhash
except ImportError:  # pragma: no cover - depends on the environment
    xxhash = None
#: the payload checksum new files get
DEFAULT_CHECKSUM = CHECKSUM_CRC32 if xxhash is None else CHECKSUM_XXH3
_FRAME = struct.Struct("<BBxxIQQII")
KIND_DOCS, KIND_END = 1, 2

#: a frame is closed once its arrays/blobs reach this many bytes ...
FRAME_BYTES = 8 << 20
#: ... or it holds this many Documents
FRAME_DOCS = 4096

_ZEROS = bytes(ALIGN)

#: an encoded frame: the buffers to write in order, their total size, the Document count
EncodedFrame = tuple[list[Any], int, int]


# ---------------------------------------------------------------------- cutting frames
class FrameBudget:
    """Collects Documents for one frame and says when it is full (``FRAME_BYTES`` of
    data or ``FRAME_DOCS`` Documents): the one place that decides where frames end."""

    __slots__ = ("docs", "nbytes")

    def __init__(self) -> None:
        self.docs: list[Document] = []
        self.nbytes = 0

    def add(self, d: Document) -> bool:
        """Add ``d``; True when the frame is now full."""
        self.docs.append(d)
        self.nbytes += approx_nbytes(d)
        return self.nbytes >= FRAME_BYTES or len(self.docs) >= FRAME_DOCS

    def take(self) -> list[Document]:
        docs, self.docs, self.nbytes = self.docs, [], 0
        return docs


def group_docs(docs: Iterable[Document]) -> Iterator[tuple[list[Document], int, bool]]:
    """Split a stream of Documents into frames: ``(docs, index of the first, full)``
    (``full``: closed by the size limits, so more of the same is likely to follow)."""
    budget = FrameBudget()
    first = 0
    for i, d in enumerate(docs):
        if budget.add(d):
            yield budget.take(), first, True
            first = i + 1
    if budget.docs:
        yield budget.take(), first, False


def thread_map(func: Callable[[Any], Any], items: Iterable[Any]) -> Iterator[Any]:
    """``func`` over ``items`` on the engine's worker threads, in order, a few ahead
    (the window bounds what is held). The engine is imported only here, when there
    are full frames to compress: ``import docmill.io`` does not load it."""
    from docmill import parallel

    # one frame per task: a frame is already a big unit of work (~8 MB)
    return parallel.map(func, items, backend="thread", chunksize=1)


def map_groups(
    encode: Callable[[tuple[list[Document], int, bool]], Any],
    docs: Iterable[Document],
    compress: str | None,
    threads: bool | None = None,
) -> Iterator[Any]:
    """``encode`` over the frames of ``docs``, in order: on worker threads when there
    are at least two full frames to compress (big data), else in this thread.
    Threads pay for compression only: an uncompressed frame is a checksum and a copy,
    which the memory bus bounds, and threads only add contention there.
    ``threads=True``: always on threads (a sender whose consumer waits on the network:
    the next frames are encoded meanwhile); ``False``: never."""
    groups = group_docs(docs)
    if threads is not None:
        return thread_map(encode, groups) if threads else map(encode, groups)
    head = list(itertools.islice(groups, 2))
    frames = itertools.chain(head, groups)
    if compress is not None and len(head) == 2 and head[0][2]:
        return thread_map(encode, frames)
    return map(encode, frames)


# ---------------------------------------------------------------------- encoding
def file_header(compress: str | None, checksum: int) -> bytes:
    head = struct.pack("<8sHBB16x", MAGIC, VERSION, CODEC_IDS[compress], checksum)
    return head + struct.pack("<I", zlib.crc32(head))


def end_frame(count: int) -> bytes:
    """The frame that ends a stream of ``count`` Documents."""
    head = _FRAME.pack(KIND_END, 0, 0, 0, count, 0, 0)[:-4]
    return head + struct.pack("<I", zlib.crc32(head))


def payload_checksum(kind: int, pieces: Iterable[Any]) -> int:
    """The 32-bit checksum of the concatenation of ``pieces``; releases the GIL."""
    if kind == CHECKSUM_XXH3:
        if xxhash is None:
            raise MissingExtra(
                "this docmill file has XXH3 checksums: install the 'xxhash' package to read "
                "it (pip install xxhash)"
            )
        h = xxhash.xxh3_64()
        for p in pieces:
            h.update(p)
        return h.intdigest() & 0xFFFFFFFF
    crc = 0
    for p in pieces:
        crc = zlib.crc32(p, crc)
    return crc


def encode_frame(
    docs: Sequence[Document],
    compress: str | None,
    first: int = 0,
    checksum: int = CHECKSUM_CRC32,
) -> EncodedFrame:
    """Encode one frame of ``docs``: ``(buffers, nbytes, count)``; thread-safe.

    ``first`` is the index of ``docs[0]`` in the whole stream (for error messages).
    """
    try:
        pieces, raw_len = encode_payload(docs)
    except (TypeError, ValueError, OverflowError) as e:
        raise _renumber(e, first) from e
    codec = 0
    if compress is not None and _worth_compressing(compress, pieces):
        packed = compress_pieces(compress, pieces, raw_len)
        if sum(map(len, packed)) < raw_len:  # else store raw: incompressible data decodes free
            pieces, codec = packed, CODEC_IDS[compress]
    stored_len = sum(memoryview(p).nbytes for p in pieces)
    crc = payload_checksum(checksum, pieces)
    head = _FRAME.pack(KIND_DOCS, codec, len(docs), stored_len, raw_len, crc, 0)[:-4]
    pieces.insert(0, head + struct.pack("<I", zlib.crc32(head)))
    pad = -stored_len % ALIGN
    if pad:
        pieces.append(_ZEROS[:pad])
    return pieces, _FRAME.size + stored_len + pad, len(docs)


_SAMPLE = 64 << 10


def _worth_compressing(compress: str, pieces: list[Any]) -> bool:
    """Early abort for incompressible frames (the ZFS/btrfs heuristic): compress 64 KB
    from the middle of up to 4 large buffers spread over the frame; when that sample
    does not shrink by 3%, the frame is stored raw without compressing all of it.

    Random-looking float tensors do not compress, and trying costs as much as the rest
    of encoding together. Frames whose big buffers all look incompressible in the
    middle but compress elsewhere are stored raw: a loss of space, never of data.
    """
    big = [p for p in pieces if memoryview(p).nbytes >= 2 * _SAMPLE]
    if not big:
        return True  # small frames: just try
    step = max(1, len(big) // 4)
    sample = []
    for p in big[::step][:4]:
        view = memoryview(p).cast("B")
        mid = (len(view) - _SAMPLE) // 2
        sample.append(view[mid : mid + _SAMPLE])
    data = b"".join(sample)
    return len(compress_bytes(data, compress)) < 0.97 * len(data)


def _renumber(e: Exception, first: int) -> Exception:
    """Shift the index in a payload error ('Document i ...', 'item i ...') by the frame's
    first index, so it counts from the start of the stream."""
    msg = str(e)
    m = re.match(r"(Document|item) (\d+)\b", msg)
    if first and m:
        msg = f"{m[1]} {int(m[2]) + first}{msg[m.end() :]}"
    try:
        return type(e)(msg)
    except Exception:  # an exception type with a different constructor
        return TypeError(msg)


class FrameEncoder:
    """Sans-IO encoder: Documents in, the format's bytes out (no IO of its own)::

        enc = FrameEncoder(compress="lz4")
        out = [enc.header(), *enc.encode(docs), *enc.encode(more), enc.end()]

    :meth:`encode` may be called any number of times; ``count`` and ``nbytes``
    are what was encoded so far.
    """

    def __init__(self, compress: str | None = None, checksum: int | None = None) -> None:
        self.compress = compress
        self.checksum = DEFAULT_CHECKSUM if checksum is None else checksum
        self.count = 0
        self.nbytes = 0

    def header(self) -> bytes:
        self.nbytes += _HEADER.size
        return file_header(self.compress, self.checksum)

    def encode(self, docs: Iterable[Document], threads: bool | None = None) -> Iterator[Any]:
        """The buffers of the frames of ``docs`` (lazily: one frame at a time, or a few
        ahead on worker threads when compressing big data; see :func:`map_groups` for
        ``threads``)."""
        compress, checksum, base = self.compress, self.checksum, self.count

        def encode(group: tuple[list[Document], int, bool]) -> EncodedFrame:
            return encode_frame(group[0], compress, base + group[1], checksum)

        for pieces, nbytes, count in map_groups(encode, docs, compress, threads):
            yield from pieces
            self.count += count
            self.nbytes += nbytes

    def end(self) -> bytes:
        self.nbytes += _FRAME.size
        return end_frame(self.count)


def encode_docs(
    docs: Iterable[Document],
    compress: str | None = None,
    checksum: int | None = None,
    threads: bool | None = None,
) -> Iterator[Any]:
    """A whole docmill stream of ``docs`` as an iterator of buffers (bytes-like), built
    as it is consumed: an HTTP request body, a socket, any sink. ``threads=True``
    encodes the next frames on worker threads while the consumer sends earlier ones
    (what push does)."""
    enc = FrameEncoder(compress, checksum)
    yield enc.header()
    yield from enc.encode(docs, threads)
    yield enc.end()


class FrameWriter:
    """Writes a docmill stream through ``write`` (a file's ``write`` or ``list.append``).

    ``write_docs`` may be called several times; :meth:`close` writes the end frame.
    """

    def __init__(
        self, write: Callable[[Any], Any], compress: str | None, checksum: int | None = None
    ) -> None:
        self._write = write
        self._enc = FrameEncoder(compress, checksum)
        self._closed = False
        write(self._enc.header())

    @property
    def count(self) -> int:
        return self._enc.count

    @property
    def nbytes(self) -> int:
        return self._enc.nbytes

    def write_docs(self, docs: Iterable[Document]) -> None:
        for piece in self._enc.encode(docs):
            self._write(piece)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._write(self._enc.end())


# ---------------------------------------------------------------------- decoding
class RawFrame(NamedTuple):
    """A frame whose header was checked, not yet checksummed or decoded."""

    checksum_kind: int
    at: int
    codec: int
    count: int
    raw_len: int
    crc: int
    payload: Any  # writable buffer, or a read-only view the decoder copies


class FrameDecoder:
    """Sans-IO decoder: feed bytes in chunks of any size, get Documents back::

        dec = FrameDecoder()
        for chunk in response.iter_bytes():
            for doc in dec.feed(chunk):
                ...
        dec.close()          # FormatError if the stream ended early

    Every header is checked as soon as its 32 bytes are in; a bad one raises
    :class:`FormatError` naming its offset in the stream. Memory is bounded by
    one frame: a frame's payload is collected only as its bytes arrive (a
    claimed length allocates nothing). Data after the end frame is an error.

    A writable chunk (``bytearray``, writable ``memoryview``) that holds a whole
    frame is decoded in place: arrays of the Documents are views into it, so
    pass a fresh buffer each time; ``bytes`` are copied where arrays need
    writable memory. :attr:`wants` is how many bytes complete the element being
    read (a driver that can read exact sizes reads that many, into a fresh
    buffer, and never reads past the end frame).
    """

    def __init__(self) -> None:
        self.offset = 0  # bytes consumed so far
        self.done = False
        self._checksum: int | None = None  # from the file header
        self._seen = 0  # Documents in the frames so far
        self._need = _HEADER.size  # bytes of the element being read
        self._head: tuple | None = None  # the frame header whose payload is being read
        self._partial = bytearray()

    @property
    def wants(self) -> int:
        """Bytes needed to complete the element being read (0 once done)."""
        return 0 if self.done else self._need - len(self._partial)

    def feed(self, data: Any) -> list[Document]:
        """Take the next bytes; return the Documents of the frames they complete."""
        return [d for f in self.feed_frames(data) for d in decode_frame(f)]

    def feed_frames(self, data: Any) -> list[RawFrame]:
        """Like :meth:`feed`, but return the completed frames undecoded (a driver then
        decodes them with :func:`decode_frame`, possibly on worker threads)."""
        view = memoryview(data).cast("B")
        out: list[RawFrame] = []
        pos, n = 0, len(view)
        while pos < n:
            if self.done:
                raise FormatError(f"unexpected data after the end frame, at offset {self.offset}")
            need = self._need
            if self._partial or n - pos < need:  # an element split across chunks
                take = min(need - len(self._partial), n - pos)
                self._partial += view[pos : pos + take]
                pos += take
                if len(self._partial) < need:
                    break
                element: memoryview = memoryview(self._partial)
                self._partial = bytearray()
            else:
                element = view[pos : pos + need]
                pos += need
            frame = self._element(element)
            if frame is not None:
                out.append(frame)
        return out

    def close(self) -> None:
        """The stream ended: :class:`FormatError` unless the end frame was read."""
        if self.done:
            return
        have = len(self._partial)
        if self._checksum is None:
            what = "the docmill file header at offset 0"
        elif self._head is None:
            what = f"a frame header at offset {self.offset}"
        else:
            what = f"the frame at offset {self._head[0]}"
            have += self.offset - self._head[0] - _FRAME.size
        raise FormatError(f"truncated data: {what} needs {self._need} bytes, only {have} left")

    # -- one complete element: the file header, a frame header, a payload (+ padding)
    def _element(self, raw: memoryview) -> RawFrame | None:
        at = self.offset
        self.offset += len(raw)
        if self._checksum is None:
            self._checksum = _check_header(bytes(raw))
            self._need = _FRAME.size
            return None
        if self._head is None:
            return self._frame_header(bytes(raw), at)
        start, codec, count, stored_len, raw_len, crc = self._head
        self._head, self._need = None, _FRAME.size
        pad = len(raw) - stored_len
        if pad and raw[stored_len:] != _ZEROS[:pad]:
            raise FormatError(
                f"corrupt frame at offset {start}: its padding at offset {at + stored_len} "
                f"is not zero"
            )
        self._seen += count
        return RawFrame(self._checksum, start, codec, count, raw_len, crc, raw[:stored_len])

    def _frame_header(self, raw: bytes, at: int) -> None:
        kind, codec, count, stored_len, raw_len, crc, head_crc = _FRAME.unpack(raw)
        if head_crc != zlib.crc32(raw[:-4]):
            raise FormatError(f"corrupt frame header at offset {at}: checksum mismatch")
        if kind == KIND_END:
            if raw_len != self._seen:
                raise FormatError(
                    f"end frame at offset {at} says {raw_len} Documents, the file holds "
                    f"{self._seen}"
                )
            self.done = True
            return
        if kind != KIND_DOCS:
            raise FormatError(f"unknown frame kind {kind} at offset {at}; expected 1 or 2")
        if codec not in CODEC_NAMES:
            raise FormatError(f"unknown compression code {codec} in the frame at offset {at}")
        if codec == 0 and raw_len != stored_len:
            raise FormatError(
                f"bad frame at offset {at}: raw frame says {raw_len} bytes but stores {stored_len}"
            )
        self._head = (at, codec, count, stored_len, raw_len, crc)
        self._need = stored_len + (-stored_len % ALIGN)
        if self._need == 0:  # an empty payload: complete already
            self._head = None
            self._need = _FRAME.size
            self._seen += count
            raise FormatError(f"bad frame at offset {at}: a frame of Documents with no payload")


def _check_header(raw: bytes) -> int:
    """Check the file header; returns the checksum kind."""
    magic, version, codec, checksum, crc = _HEADER.unpack(raw)
    if magic != MAGIC:
        raise FormatError(
            f"not a docmill file: expected the magic bytes {MAGIC!r} at offset 0, found "
            f"{raw[:8]!r}; files written by docarray 0.21 load with protocol='protobuf', "
            "'protobuf-array', 'pickle' or 'pickle-array' and their compress="
        )
    if crc != zlib.crc32(raw[:-4]):
        raise FormatError("corrupt docmill file header at offset 0: checksum mismatch")
    if version not in _SUPPORTED_VERSIONS:
        raise FormatError(
            f"docmill file version {version} at offset 8 is not supported: this docmill reads "
            f"versions {', '.join(map(str, _SUPPORTED_VERSIONS))}; upgrade docmill to read it"
        )
    if codec not in CODEC_NAMES:
        raise FormatError(f"unknown compression code {codec} in the file header at offset 10")
    if checksum not in (CHECKSUM_CRC32, CHECKSUM_XXH3):
        raise FormatError(f"unknown checksum algorithm {checksum} in the file header at offset 11")
    if checksum == CHECKSUM_XXH3:
        payload_checksum(checksum, ())  # MissingExtra now, rather than at the first frame
    return checksum


def decode_frame(f: RawFrame) -> list[Document]:
    """Checksum, decompress and decode one frame; thread-safe."""
    if payload_checksum(f.checksum_kind, (f.payload,)) != f.crc:
        n = memoryview(f.payload).nbytes
        raise FormatError(
            f"corrupt frame at offset {f.at}: payload checksum mismatch "
            f"(bytes {f.at + _FRAME.size}..{f.at + _FRAME.size + n} changed)"
        )
    name = CODEC_NAMES[f.codec]
    try:
        if name is not None:
            payload = decompress_exact(name, f.payload, f.raw_len)
        elif memoryview(f.payload).readonly:
            payload = writable_copy(f.payload)  # the one copy that makes arrays writable
        else:
            payload = f.payload
        return decode_payload(payload, f.count)
    except FormatError as e:
        raise FormatError(f"bad frame at offset {f.at}: {e}") from e


# ---------------------------------------------------------------------- the read driver
_READ_CHUNK = 1 << 20  # reads of unknown-size streams grow by this much


def read_docs(source: Any, expect_eof: bool) -> Iterator[Document]:
    """Yield the Documents of a docmill stream in ``source`` (bytes-like or a binary file
    object), a frame at a time.

    ``expect_eof``: data after the end frame is an error (paths, bytes); a caller's
    file object is read exactly up to the end frame. Compressed full-sized frames
    are checksummed, decompressed and decoded on worker threads (zlib's CRC and the
    codecs release the GIL) a few frames ahead, so memory stays bounded by a
    handful of frames. Uncompressed frames stay on this thread: a checksum and a
    copy are bound by memory bandwidth, and measured slower with threads.
    """
    raw = _raw_frames(source, expect_eof)
    first = next(raw, None)
    if first is None:
        return
    frames = itertools.chain([first], raw)
    if first.codec != 0 and first.raw_len >= FRAME_BYTES // 2:
        decoded = thread_map(decode_frame, frames)
        try:
            for docs in decoded:
                yield from docs
        finally:  # abandoned by the caller: stop the workers before the file closes
            decoded.close()  # type: ignore[attr-defined]
    else:
        for f in frames:
            yield from decode_frame(f)


def _raw_frames(source: Any, expect_eof: bool) -> Iterator[RawFrame]:
    dec = FrameDecoder()
    if isinstance(source, bytes | bytearray | memoryview):
        view = memoryview(source).cast("B")  # frames are views of the caller's buffer
        pos = 0
        while not dec.done and pos < len(view):
            n = dec.wants
            yield from dec.feed_frames(view[pos : pos + n])
            pos += n
        dec.close()
        if expect_eof and pos < len(view):
            raise FormatError(f"unexpected data after the end frame, at offset {pos}")
        return
    left = _size_left(source)
    while not dec.done:
        n = dec.wants
        if left is not None and n > left:  # a claimed length past the end of the file
            n = left
        if n > _READ_CHUNK and left is None:
            chunk: Any = source.read(_READ_CHUNK)  # grow with the data that is there
        else:
            buf = writable_buffer(n)
            chunk = buf[: readinto_exact(source, buf)]
        if not chunk:
            dec.close()  # raises: the stream ended early
        if left is not None:
            left -= len(chunk)
        yield from dec.feed_frames(chunk)
    if expect_eof and source.read(1):
        raise FormatError(f"unexpected data after the end frame, at offset {dec.offset}")


def _size_left(f: Any) -> int | None:
    """Bytes left in a seekable file (so a bad length fails before any allocation)."""
    try:
        if f.seekable():
            pos = f.tell()
            end = f.seek(0, 2)
            f.seek(pos)
            return end - pos
    except (AttributeError, OSError, ValueError):
        pass
    return None
