"""docarray 0.21's file layouts: 'protobuf', 'pickle', 'protobuf-array', 'pickle-array'.

Byte for byte what docarray 0.21.1 wrote (read from its ``binary.py``):

- ``'protobuf'`` / ``'pickle'`` (one record per Document)::

      version u8 = 1 | number of Documents u64 big-endian
      | per Document: length u32 big-endian | the Document's bytes

  each Document's bytes compressed on their own (``compress=`` is not recorded:
  the reader must pass the same one).
- ``'protobuf-array'``: a serialized ``DocumentArrayProto``; ``'pickle-array'``:
  a pickled DocumentArray; both compressed as one stream.

docarray 0.21 silently ignored ``compress='zlib'`` for the two ``*-array``
protocols (it had no zlib stream); docmill compresses as asked, and reading a
``zlib`` ``*-array`` file that is not zlib data (a docarray one) reads it raw.
``'zstd'`` exists only in docmill: docarray 0.21 cannot read such files.

These layouts have no checksums: a flipped byte inside a tensor goes
unnoticed (use the 'docmill' protocol for that). Pickle runs code while it
loads: load pickles only from sources you trust.
"""

from __future__ import annotations

import io
import pickle
import tempfile
from collections.abc import Iterable, Iterator
from typing import IO, Any

from docmill.document import Document
from docmill.errors import FormatError
from docmill.io._compress import (
    DECODE_ERRORS,
    compress_bytes,
    decompress_bytes,
    stream_reader,
    stream_writer,
)
from docmill.io._files import BinaryReader
from docmill.io._format import map_groups

__all__ = [
    "ArrayWriter",
    "StreamWriter",
    "doc_dumps",
    "doc_loads",
    "read_array",
    "read_stream",
]

_STREAM_VERSION = 1
_MAX_RECORD = (1 << 32) - 1


# ---------------------------------------------------------------------- one Document
def doc_dumps(doc: Document, protocol: str) -> bytes:
    """A Document as 'protobuf' or 'pickle' bytes (uncompressed)."""
    if not isinstance(doc, Document):
        raise TypeError(f"expected a Document, got {type(doc).__name__}")
    if protocol == "pickle":
        return pickle.dumps(doc, protocol=5)
    from docmill.io._protobuf import document_to_proto

    return document_to_proto(doc).SerializeToString()


def doc_loads(data: Any, protocol: str) -> Document:
    """Inverse of :func:`doc_dumps`; bad bytes -> :class:`FormatError` (no offset)."""
    if protocol == "protobuf":
        from docmill.io._protobuf import parse_document

        return parse_document(data)
    doc = _unpickle(data)
    if not isinstance(doc, Document):
        raise FormatError(f"the pickle holds a {type(doc).__name__}, not a docmill Document")
    return doc


def _unpickle(data: Any) -> Any:
    try:
        if isinstance(data, bytes | bytearray | memoryview):
            return pickle.loads(data)
        return pickle.load(data)
    except ModuleNotFoundError as e:
        raise FormatError(
            f"the pickle refers to module {e.name!r}, which is not installed; pickles written by "
            "docarray hold docarray objects: save them with protocol='protobuf' to load them here"
        ) from e
    except Exception as e:  # pickle raises almost anything on bad input
        raise FormatError(f"not a valid pickle ({type(e).__name__}: {e})") from e


# ---------------------------------------------------------------------- 'protobuf' / 'pickle'
def _record(doc: Document, protocol: str, compress: str | None) -> tuple[bytes, bytes]:
    """``(length prefix, bytes)`` of one record (two pieces: joining would copy)."""
    data = compress_bytes(doc_dumps(doc, protocol), compress)
    if len(data) > _MAX_RECORD:
        raise ValueError(
            f"Document {doc.id!r} needs {len(data)} bytes, more than the 4 GiB a record of "
            f"protocol {protocol!r} can hold; use protocol='docmill'"
        )
    return len(data).to_bytes(4, "big"), data


class StreamWriter:
    """Writes the per-Document layout to ``f``.

    The header holds the number of Documents, known only at the end for an
    iterator: it is patched in place when ``f`` is seekable, else the records
    are spooled to a temporary file first.
    """

    def __init__(
        self, f: IO[bytes], protocol: str, compress: str | None, count: int | None = None
    ) -> None:
        self._f, self._protocol, self._compress = f, protocol, compress
        self.count = 0
        self._expected = count
        self._start: int | None = None
        if count is not None:  # known up front (an array): no patching, no spooling
            self._out: IO[bytes] = f
            f.write(self._header(count))
            return
        try:
            self._start = f.tell() if f.seekable() else None
        except (AttributeError, OSError):
            self._start = None
        if self._start is None:
            self._out = tempfile.TemporaryFile()  # noqa: SIM115 - closed in close()
        else:
            self._out = f
            f.write(self._header(0))

    def _header(self, n: int) -> bytes:
        return bytes([_STREAM_VERSION]) + n.to_bytes(8, "big")

    def write_docs(self, docs: Iterable[Document]) -> None:
        protocol, compress = self._protocol, self._compress

        def encode(group: tuple[list[Document], int, bool]) -> list[tuple[bytes, bytes]]:
            return [_record(d, protocol, compress) for d in group[0]]

        for records in map_groups(encode, docs, compress):
            for prefix, data in records:
                self._out.write(prefix)
                self._out.write(data)
            self.count += len(records)

    def close(self) -> None:
        if self._expected is not None:
            if self.count != self._expected:
                raise ValueError(
                    f"the header announced {self._expected} Documents but {self.count} came"
                )
            return
        if self._start is not None:
            end = self._f.tell()
            self._f.seek(self._start)
            self._f.write(self._header(self.count))
            self._f.seek(end)
            return
        self._f.write(self._header(self.count))
        self._out.seek(0)
        while chunk := self._out.read(1 << 20):
            self._f.write(chunk)
        self._out.close()


def read_stream(
    r: BinaryReader, protocol: str, compress: str | None, expect_eof: bool
) -> Iterator[Document]:
    """Yield the Documents of a per-Document file, one at a time."""
    head = r.read(9, "the docarray stream header (version and count)")
    if head[0] != _STREAM_VERSION:
        raise FormatError(
            f"unknown docarray stream version {head[0]} at offset {r.offset - 9}; expected "
            f"{_STREAM_VERSION} (is this a {protocol!r} file? docmill files load with "
            "protocol='docmill')"
        )
    n = int.from_bytes(head[1:], "big")
    for i in range(n):
        at = r.offset
        size = int.from_bytes(r.read(4, f"the length of Document {i}"), "big")
        # read-only is fine: decompression and parsing copy anyway
        data = r.payload(size, f"Document {i}", copy=False)
        try:
            yield doc_loads(decompress_bytes(data, compress), protocol)
        except FormatError as e:
            raise FormatError(f"Document {i} at offset {at}: {e}") from e
    if expect_eof and r.read_some(1):
        raise FormatError(
            f"unexpected data at offset {r.offset - 1} after the {n} Documents the header announced"
        )


# ---------------------------------------------------------------------- '*-array'
def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


class ArrayWriter:
    """Writes 'protobuf-array' (streamed Document by Document) or 'pickle-array'
    (collected, pickled at :meth:`close`) through one compression stream."""

    def __init__(self, f: IO[bytes], protocol: str, compress: str | None) -> None:
        self._z = stream_writer(f, compress)
        self._protocol = protocol
        self._pending: list[Document] = []
        self.count = 0

    def write_docs(self, docs: Iterable[Document]) -> None:
        if self._protocol == "pickle-array":
            n = len(self._pending)
            self._pending.extend(docs)
            self.count += len(self._pending) - n
            return
        from docmill.io._protobuf import document_to_proto

        for d in docs:
            if not isinstance(d, Document):
                raise TypeError(f"expected a Document, got {type(d).__name__}")
            data = document_to_proto(d).SerializeToString()
            # DocumentArrayProto field 1 (docs), wire type 2: tag 0x0a, length, message
            self._z.write(b"\x0a" + _varint(len(data)))
            self._z.write(data)
            self.count += 1

    def close(self) -> None:
        if self._protocol == "pickle-array":
            from docmill.array import DocumentArray

            pickle.dump(DocumentArray(self._pending), self._z, protocol=5)  # type: ignore[arg-type]
        self._z.close()


def _looks_like_zlib(head: bytes) -> bool:
    return len(head) >= 2 and head[0] & 0x0F == 8 and (head[0] << 8 | head[1]) % 31 == 0


def read_array(
    f: IO[bytes], protocol: str, compress: str | None, expect_eof: bool
) -> Iterator[Document]:
    """Yield the Documents of a '*-array' file (protobuf: one at a time; pickle: all at once)."""
    if compress == "zlib":
        f = io.BufferedReader(f) if not hasattr(f, "peek") else f  # type: ignore[arg-type]
        if not _looks_like_zlib(f.peek(2)[:2]):  # type: ignore[attr-defined]
            compress = None  # docarray 0.21 wrote '*-array' + zlib uncompressed
    z = stream_reader(f, compress)
    try:
        if protocol == "pickle-array":
            from docmill.array import DocumentArray

            da = _unpickle(z)
            if not isinstance(da, DocumentArray):
                raise FormatError(f"the pickle holds a {type(da).__name__}, not a DocumentArray")
            # pickle stops at its STOP opcode: read on, so a compressed stream's end
            # marker (and any trailing garbage) is checked too
            if z.read(1) and expect_eof:
                raise FormatError("unexpected data after the pickled DocumentArray")
            yield from da
        else:
            yield from _read_array_proto(BinaryReader(z, probe_size=z is f))
    except DECODE_ERRORS as e:
        if isinstance(e, FormatError):
            raise
        raise FormatError(f"{compress} data does not decompress ({type(e).__name__}: {e})") from e


def _read_varint(r: BinaryReader, what: str, optional: bool = False) -> int | None:
    """A varint; ``None`` at the end of the data when ``optional`` (a next tag)."""
    n = shift = 0
    for i in range(10):
        b = r.read_some(1)
        if not b:
            if i == 0 and optional:
                return None
            raise FormatError(f"truncated data: {what} ends at offset {r.offset}")
        n |= (b[0] & 0x7F) << shift
        if b[0] < 0x80:
            return n
        shift += 7
    raise FormatError(f"bad varint in {what} at offset {r.offset}")


def _read_array_proto(r: BinaryReader) -> Iterator[Document]:
    from docmill.io._protobuf import parse_document

    i = 0
    while True:
        at = r.offset
        tag = _read_varint(r, "a field tag", optional=True)
        if tag is None:
            return
        field, wire = tag >> 3, tag & 7
        if field == 0:  # impossible in protobuf: not a 'protobuf-array' file (or a corrupt one)
            raise FormatError(
                f"field number 0 at offset {at} (decompressed data): this is not "
                "'protobuf-array' data (a 'protobuf' file starts with a version byte 1: "
                "load it with protocol='protobuf')"
            )
        if wire == 0:
            _read_varint(r, f"field {field}")
            continue
        if wire in (1, 5):
            r.read(8 if wire == 1 else 4, f"field {field}")
            continue
        if wire != 2:
            raise FormatError(f"bad protobuf wire type {wire} at offset {at} (decompressed data)")
        size = _read_varint(r, f"the length of field {field}")
        data = r.payload(size, f"field {field}")
        if field != 1:
            continue  # unknown field: skipped, as protobuf does
        try:
            yield parse_document(data)
        except FormatError as e:
            raise FormatError(f"Document {i} at offset {at} (decompressed data): {e}") from e
        i += 1
