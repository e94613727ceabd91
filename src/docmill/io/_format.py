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
"""

from __future__ import annotations

import itertools
import re
import struct
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, NamedTuple

from docmill.document import Document
from docmill.errors import FormatError, MissingExtra
from docmill.io._compress import (
    CODEC_IDS,
    CODEC_NAMES,
    compress_bytes,
    compress_pieces,
    decompress_exact,
)
from docmill.io._docpack import ALIGN, decode_payload, encode_payload
from docmill.io._files import BinaryReader, writable_copy

__all__ = [
    "CHECKSUM_CRC32",
    "CHECKSUM_XXH3",
    "DEFAULT_CHECKSUM",
    "MAGIC",
    "VERSION",
    "EncodedFrame",
    "FrameWriter",
    "approx_nbytes",
    "encode_frame",
    "frame_is_full",
    "group_docs",
    "payload_checksum",
    "read_docs",
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

#: an encoded frame: the buffers to write in order and their total size
EncodedFrame = tuple[list[Any], int, int]


def file_header(compress: str | None, checksum: int) -> bytes:
    head = struct.pack("<8sHBB16x", MAGIC, VERSION, CODEC_IDS[compress], checksum)
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


def approx_nbytes(d: Document) -> int:
    """A Document's rough encoded size (its arrays, blob and text), to cut frames."""
    if not isinstance(d, Document):
        return 64  # encode_payload reports it
    n = 64
    for v in (d.tensor, d.embedding, d.blob, d.text):
        if v is not None:
            n += getattr(v, "nbytes", None) or (len(v) if isinstance(v, bytes | str) else 0)
    for nested in (d._chunks, d._matches):
        if nested:
            n += sum(approx_nbytes(c) for c in nested)
    return n


def frame_is_full(group: list[Document]) -> bool:
    """A frame closed by the size limits: more of the same is likely to follow."""
    return len(group) >= FRAME_DOCS or sum(map(approx_nbytes, group)) >= FRAME_BYTES


def group_docs(docs: Iterable[Document]) -> Iterator[tuple[list[Document], int]]:
    """Split a stream of Documents into frames: ``(docs, index of the first)``."""
    group: list[Document] = []
    size = first = 0
    for i, d in enumerate(docs):
        group.append(d)
        size += approx_nbytes(d)
        if size >= FRAME_BYTES or len(group) >= FRAME_DOCS:
            yield group, first
            group, size, first = [], 0, i + 1
    if group:
        yield group, first


class FrameWriter:
    """Writes a docmill stream through ``write`` (a file's ``write`` or ``list.append``).

    ``write_docs`` may be called several times; :meth:`close` writes the end frame.
    """

    def __init__(
        self, write: Callable[[Any], Any], compress: str | None, checksum: int | None = None
    ) -> None:
        self._write = write
        self.compress = compress
        self.checksum = DEFAULT_CHECKSUM if checksum is None else checksum
        self.count = 0
        self.nbytes = _HEADER.size
        self._closed = False
        write(file_header(compress, self.checksum))

    def write_frame(self, frame: EncodedFrame) -> None:
        pieces, nbytes, count = frame
        for p in pieces:
            self._write(p)
        self.count += count
        self.nbytes += nbytes

    def write_docs(self, docs: Iterable[Document], parallel: bool = True) -> None:
        """Encode and write ``docs``. With compression, once frames are full-sized (big
        data), they are encoded, checksummed and compressed on worker threads while
        earlier ones are written (ordered, bounded look-ahead)."""
        groups = group_docs(docs)
        first = next(groups, None)
        if first is None:
            return
        compress, checksum = self.compress, self.checksum
        groups = itertools.chain([first], groups)
        # threads pay for compression only: uncompressed frames are a checksum and a
        # copy, which the memory bus bounds, and threads only add contention there
        if parallel and compress is not None and frame_is_full(first[0]):
            from docmill.io._threads import ordered_thread_map

            frames: Iterable[EncodedFrame] = ordered_thread_map(
                lambda gi: encode_frame(gi[0], compress, gi[1], checksum), groups
            )
        else:
            frames = (encode_frame(g, compress, i, checksum) for g, i in groups)
        for f in frames:
            self.write_frame(f)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        head = _FRAME.pack(KIND_END, 0, 0, 0, self.count, 0, 0)[:-4]
        self._write(head + struct.pack("<I", zlib.crc32(head)))
        self.nbytes += _FRAME.size


# ---------------------------------------------------------------------- reading
def read_header(r: BinaryReader) -> tuple[int, int]:
    """Check the file header; returns ``(version, checksum kind)``."""
    raw = r.read(_HEADER.size, "the docmill file header")
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
    return version, checksum


def read_docs(r: BinaryReader, expect_eof: bool) -> Iterator[Document]:
    """Yield the Documents of a docmill stream, a frame at a time.

    ``expect_eof``: data after the end frame is an error (paths, bytes); for a
    caller's file object reading stops right after the end frame. Frames are
    read on this thread; compressed full-sized frames are checksummed,
    decompressed and decoded on worker threads (zlib's CRC and the codecs
    release the GIL) a few frames ahead, so memory stays bounded by a handful
    of frames. Uncompressed frames stay on this thread: a checksum and a copy
    are bound by memory bandwidth, and measured slower with threads.
    """
    _, checksum = read_header(r)
    frames = _raw_frames(r, expect_eof, checksum)
    first = next(frames, None)
    if first is None:
        return
    frames = itertools.chain([first], frames)
    if first.codec != 0 and first.raw_len >= FRAME_BYTES // 2:
        from docmill.io._threads import ordered_thread_map

        decoded = ordered_thread_map(_decode_frame, frames)
        try:
            for docs in decoded:
                yield from docs
        finally:  # abandoned by the caller: stop the workers before the file closes
            close = getattr(decoded, "close", None)
            if close is not None:
                close()
    else:
        for f in frames:
            yield from _decode_frame(f)


class _RawFrame(NamedTuple):
    checksum_kind: int
    at: int
    codec: int
    count: int
    raw_len: int
    crc: int
    payload: Any  # writable buffer, or a read-only view the decoder copies


def _raw_frames(r: BinaryReader, expect_eof: bool, checksum: int) -> Iterator[_RawFrame]:
    """Check every frame header and read the payloads; ends after a valid end frame."""
    seen = 0
    while True:
        at = r.offset
        raw = r.read(_FRAME.size, "a frame header")
        kind, codec, count, stored_len, raw_len, crc, head_crc = _FRAME.unpack(raw)
        if head_crc != zlib.crc32(raw[:-4]):
            raise FormatError(f"corrupt frame header at offset {at}: checksum mismatch")
        if kind == KIND_END:
            if raw_len != seen:
                raise FormatError(
                    f"end frame at offset {at} says {raw_len} Documents, the file holds {seen}"
                )
            if expect_eof and r.read_some(1):
                raise FormatError(f"unexpected data after the end frame, at offset {r.offset - 1}")
            return
        if kind != KIND_DOCS:
            raise FormatError(f"unknown frame kind {kind} at offset {at}; expected 1 or 2")
        if codec not in CODEC_NAMES:
            raise FormatError(f"unknown compression code {codec} in the frame at offset {at}")
        if codec == 0 and raw_len != stored_len:
            raise FormatError(
                f"bad frame at offset {at}: raw frame says {raw_len} bytes but stores {stored_len}"
            )
        left = r.remaining()
        if left is not None and stored_len > left:
            raise FormatError(
                f"truncated data: the frame at offset {at} needs {stored_len} bytes, "
                f"only {left} left"
            )
        # raw frames of read-only memory are copied by the decoder (on a worker thread)
        payload = r.payload(stored_len, f"the payload of the frame at offset {at}", copy=codec != 0)
        pad = -stored_len % ALIGN
        if pad and r.read(pad, f"the padding of the frame at offset {at}") != _ZEROS[:pad]:
            raise FormatError(
                f"corrupt frame at offset {at}: its padding at offset {r.offset - pad} is not zero"
            )
        seen += count
        yield _RawFrame(checksum, at, codec, count, raw_len, crc, payload)


def _decode_frame(f: _RawFrame) -> list[Document]:
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
