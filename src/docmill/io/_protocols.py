"""The registry of binary protocols: each name says how to write a stream of Documents
to a file, read one back, and (for per-Document protocols) dump and load one Document.

:mod:`docmill.io._binary`'s entry points (``save_binary``, ``load_binary``,
``to_bytes``, streaming) look a protocol up here and never branch on its name.
A writer is anything with the small :class:`Writer` interface.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any
from typing import Protocol as _Interface

from docmill.document import Document
from docmill.errors import FormatError
from docmill.io import _format, _legacy
from docmill.io._compress import compress_bytes, decompress_bytes
from docmill.io._files import BinaryReader

__all__ = ["PROTOCOLS", "Protocol", "Writer", "get_protocol", "register_protocol"]


class Writer(_Interface):
    """What a protocol's writer does: take Documents (any number of calls), then close."""

    #: Documents written so far
    count: int

    def write_docs(self, docs: Iterable[Document]) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Protocol:
    name: str
    #: ``writer(file, compress, count)``: ``count`` is the number of Documents when known
    writer: Callable[[IO[bytes], str | None, int | None], Writer]
    #: ``reader(bytes or file, compress, expect_eof)``: the Documents, lazily
    reader: Callable[[Any, str | None, bool], Iterator[Document]]
    #: one Document to bytes and back (None: this protocol stores arrays only)
    dumps: Callable[[Document, str | None], bytes] | None = None
    loads: Callable[[Any, str | None], Document] | None = None
    #: loading runs code from the data (pickle): only when the caller names it
    unpickles: bool = False


PROTOCOLS: dict[str, Protocol] = {}


def register_protocol(protocol: Protocol) -> None:
    PROTOCOLS[protocol.name] = protocol


def get_protocol(name: Any, one_document: bool = False) -> Protocol:
    """The protocol called ``name``; ``ValueError`` listing the valid names otherwise."""
    p = PROTOCOLS.get(name) if isinstance(name, str) else None
    if p is None or (one_document and p.dumps is None):
        valid = [n for n, q in PROTOCOLS.items() if q.dumps is not None or not one_document]
        raise ValueError(
            f"protocol={name!r} is not supported; use one of: {', '.join(map(repr, valid))}"
        )
    return p


# ---------------------------------------------------------------------- 'docmill'
def _docmill_dumps(doc: Document, compress: str | None) -> bytes:
    out = io.BytesIO()
    w = _format.FrameWriter(out.write, compress)
    w.write_docs([doc])
    w.close()
    return out.getvalue()


def _docmill_loads(data: Any, compress: str | None) -> Document:
    docs = list(_format.read_docs(data, expect_eof=True))
    if len(docs) != 1:
        raise FormatError(
            f"the data holds {len(docs)} Documents, expected 1 "
            "(use DocumentArray.from_bytes for arrays)"
        )
    return docs[0]


register_protocol(
    Protocol(
        "docmill",
        writer=lambda f, compress, count: _format.FrameWriter(f.write, compress),
        reader=lambda source, compress, expect_eof: _format.read_docs(source, expect_eof),
        dumps=_docmill_dumps,
        loads=_docmill_loads,
    )
)


# ---------------------------------------------------------------------- docarray 0.21's layouts
def _not_docmill(source: Any, name: str) -> None:
    if (
        isinstance(source, bytes | bytearray | memoryview)
        and bytes(memoryview(source)[:8]) == _format.MAGIC
    ):
        raise FormatError(
            f"this is a docmill file, not protocol {name!r}: load it with protocol='docmill'"
        )


def _per_document(name: str) -> Protocol:
    def reader(source: Any, compress: str | None, expect_eof: bool) -> Iterator[Document]:
        _not_docmill(source, name)
        return _legacy.read_stream(BinaryReader(source), name, compress, expect_eof)

    return Protocol(
        name,
        writer=lambda f, compress, count: _legacy.StreamWriter(f, name, compress, count=count),
        reader=reader,
        dumps=lambda doc, compress: compress_bytes(_legacy.doc_dumps(doc, name), compress),
        loads=lambda data, compress: _legacy.doc_loads(decompress_bytes(data, compress), name),
        unpickles=name == "pickle",
    )


def _whole_array(name: str) -> Protocol:
    def reader(source: Any, compress: str | None, expect_eof: bool) -> Iterator[Document]:
        _not_docmill(source, name)
        if isinstance(source, bytes | bytearray | memoryview):
            source = io.BytesIO(source)
        return _legacy.read_array(source, name, compress, expect_eof)

    return Protocol(
        name,
        writer=lambda f, compress, count: _legacy.ArrayWriter(f, name, compress),
        reader=reader,
        unpickles=name == "pickle-array",
    )


for _name in ("protobuf", "pickle"):
    register_protocol(_per_document(_name))
for _name in ("protobuf-array", "pickle-array"):
    register_protocol(_whole_array(_name))
