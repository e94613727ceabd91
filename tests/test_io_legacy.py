"""docarray 0.21's container layouts: per-Document records and whole-array streams."""

from __future__ import annotations

import io
import pickle
import zlib

import numpy as np
import pytest

from docmill import Document, DocumentArray, FormatError
from docmill.io._files import BinaryReader
from docmill.io._legacy import ArrayWriter, StreamWriter, read_array, read_stream


def _docs(n: int = 3) -> list[Document]:
    return [Document(id=f"d{i}", text=f"text {i}") for i in range(n)]


def _written(writer, docs, protocol, compress) -> bytes:
    buf = io.BytesIO()
    w = writer(buf, protocol, compress)
    w.write_docs(docs)
    w.close()
    return buf.getvalue()


def _stream_bytes(docs, protocol="protobuf", compress=None) -> bytes:
    return _written(StreamWriter, docs, protocol, compress)


def test_stream_layout_is_docarrays() -> None:
    data = _stream_bytes(_docs(2), "pickle")
    assert data[0] == 1 and int.from_bytes(data[1:9], "big") == 2
    first = int.from_bytes(data[9:13], "big")
    assert pickle.loads(data[13 : 13 + first]).id == "d0"


class _Unseekable(io.RawIOBase):
    def __init__(self) -> None:
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        self.data += b
        return len(b)


@pytest.mark.parametrize("compress", [None, "gzip"])
def test_count_is_known_only_at_the_end(compress) -> None:
    # seekable: patched in place; not seekable: spooled to a temporary file first
    seekable = _stream_bytes(iter(_docs(5)), "protobuf", compress)
    sink = _Unseekable()
    w = StreamWriter(sink, "protobuf", compress)  # type: ignore[arg-type]
    w.write_docs(iter(_docs(5)))
    w.close()
    for data in (seekable, bytes(sink.data)):
        assert int.from_bytes(data[1:9], "big") == 5
        out = list(read_stream(BinaryReader(data), "protobuf", compress, expect_eof=True))
        assert [d.id for d in out] == [f"d{i}" for i in range(5)]


def test_stream_errors_name_the_document_and_offset() -> None:
    data = _stream_bytes(_docs(3))
    with pytest.raises(FormatError, match="unknown docarray stream version 7 at offset 0"):
        list(read_stream(BinaryReader(b"\x07" + data[1:]), "protobuf", None, True))
    with pytest.raises(FormatError, match="truncated data: Document 2 at offset"):
        list(read_stream(BinaryReader(data[:-3]), "protobuf", None, True))
    more = data[:1] + (4).to_bytes(8, "big") + data[9:]
    with pytest.raises(FormatError, match="the length of Document 3"):
        list(read_stream(BinaryReader(more), "protobuf", None, True))
    with pytest.raises(FormatError, match="unexpected data at offset"):
        list(read_stream(BinaryReader(data + b"x"), "protobuf", None, True))
    flipped = bytearray(data)
    flipped[14] = 0xFF  # inside Document 0's protobuf bytes
    with pytest.raises(FormatError, match="Document 0 at offset 9"):
        list(read_stream(BinaryReader(bytes(flipped)), "protobuf", None, True))


def test_huge_record_lengths_fail_before_allocating() -> None:
    data = b"\x01" + (1).to_bytes(8, "big") + (2**32 - 1).to_bytes(4, "big") + b"xx"
    with pytest.raises(FormatError, match="needs 4294967295 bytes, only 2 left"):
        list(read_stream(BinaryReader(data), "protobuf", None, True))


def _array_bytes(docs, protocol, compress) -> bytes:
    buf = io.BytesIO()
    w = ArrayWriter(buf, protocol, compress)
    w.write_docs(docs)
    w.close()
    return buf.getvalue()


def test_protobuf_array_is_a_document_array_proto() -> None:
    from docmill.io._protobuf import messages

    data = _array_bytes(_docs(3), "protobuf-array", None)
    msg = messages()["DocumentArrayProto"].FromString(data)
    assert [d.id for d in msg.docs] == ["d0", "d1", "d2"]


def test_protobuf_array_streams_and_skips_unknown_fields() -> None:
    data = _array_bytes(_docs(2), "protobuf-array", None)
    extra = b"\x10\x05" + b"\x1a\x03abc" + b"\x25\x00\x00\x00\x00"  # fields 2 (varint), 3, 4
    out = list(read_array(io.BytesIO(extra + data), "protobuf-array", None, True))
    assert [d.id for d in out] == ["d0", "d1"]
    with pytest.raises(FormatError, match="bad protobuf wire type 3"):
        list(read_array(io.BytesIO(b"\x0b" + data), "protobuf-array", None, True))
    with pytest.raises(FormatError, match="truncated"):
        list(read_array(io.BytesIO(data[:-2]), "protobuf-array", None, True))


def test_zlib_arrays_from_docarray_are_read_raw() -> None:
    # docarray 0.21 ignored compress='zlib' for '*-array'; docmill compresses, and reads both
    raw = _array_bytes(_docs(2), "protobuf-array", None)
    packed = _array_bytes(_docs(2), "protobuf-array", "zlib")
    assert zlib.decompress(packed) == raw
    for data in (raw, packed):
        out = list(read_array(io.BytesIO(data), "protobuf-array", "zlib", True))
        assert [d.id for d in out] == ["d0", "d1"]


def test_pickle_array_collects_then_pickles() -> None:
    docs = [Document(id="a", tensor=np.arange(3))]
    data = _array_bytes(iter(docs), "pickle-array", "lz4")
    out = list(read_array(io.BytesIO(data), "pickle-array", "lz4", True))
    assert out == docs
    with pytest.raises(FormatError, match="LZ4F_decompress failed"):
        list(read_array(io.BytesIO(b"garbage!"), "pickle-array", "lz4", True))


def test_doc_records_over_4gib_are_refused(monkeypatch) -> None:
    from docmill.io import _legacy

    monkeypatch.setattr(_legacy, "_MAX_RECORD", 10)
    with pytest.raises(ValueError, match="more than the 4 GiB a record of protocol 'pickle'"):
        _stream_bytes([Document(id="big", text="x" * 100)], "pickle")


def test_legacy_protocols_through_the_array_api() -> None:
    da = DocumentArray(_docs(4))
    for protocol in ("protobuf", "pickle", "protobuf-array", "pickle-array"):
        for compress in (None, "bz2"):
            assert (
                DocumentArray.from_bytes(da.to_bytes(protocol, compress), protocol, compress) == da
            )


def test_a_count_given_up_front_is_checked() -> None:
    buf = io.BytesIO()
    w = StreamWriter(buf, "pickle", None, count=3)
    w.write_docs(_docs(2))
    with pytest.raises(ValueError, match="announced 3 Documents but 2 came"):
        w.close()
    assert buf.getvalue()[1:9] == (3).to_bytes(8, "big")  # written before the records


def _array_bytes(docs, protocol="protobuf-array", compress=None) -> bytes:
    return _written(ArrayWriter, docs, protocol, compress)


@pytest.mark.parametrize("compress", ["zstd", "lz4", "zlib", "gzip", "bz2", "lzma"])
@pytest.mark.parametrize("protocol", ["protobuf-array", "pickle-array"])
def test_every_cut_of_a_compressed_array_file_is_detected(protocol, compress) -> None:
    # a compressed stream has an end marker: a cut anywhere is detectable
    data = _array_bytes(_docs(4), protocol, compress)
    # an empty 'zlib' file is docarray's (uncompressed) empty array: the one cut left
    for cut in range(1 if compress == "zlib" else 0, len(data)):
        with pytest.raises(FormatError):
            list(read_array(io.BytesIO(data[:cut]), protocol, compress, expect_eof=True))


def test_cuts_of_an_uncompressed_protobuf_array_are_detected_inside_documents() -> None:
    # protobuf has no end marker: a cut between two Documents reads as fewer Documents
    # (the README says so); a cut anywhere else raises
    docs = _docs(3)
    data = _array_bytes(docs)
    boundaries = {0}
    pos = 0
    for d in docs:  # each record: tag, length varint, the DocumentProto
        n = len(_array_bytes([d]))
        pos += n
        boundaries.add(pos)
    for cut in range(len(data)):
        reading = read_array(io.BytesIO(data[:cut]), "protobuf-array", None, expect_eof=True)
        if cut in boundaries:
            assert len(list(reading)) == sorted(boundaries).index(cut)
        else:
            with pytest.raises(FormatError):
                list(reading)


@pytest.mark.parametrize("compress", [None, "zstd", "lz4"])
def test_every_cut_of_a_per_document_file_is_detected(compress) -> None:
    # the header announces the count: a cut anywhere is detectable
    data = _stream_bytes(_docs(3), "protobuf", compress)
    for cut in range(len(data)):
        with pytest.raises(FormatError):
            list(read_stream(BinaryReader(data[:cut]), "protobuf", compress, expect_eof=True))


def test_a_file_read_with_the_wrong_protocol_is_rejected() -> None:
    # a 'protobuf' file (version byte, count, records) read as 'protobuf-array' used
    # to yield Documents with random ids; field number 0 cannot occur in protobuf
    data = _stream_bytes(_docs(2), "protobuf")
    with pytest.raises(FormatError, match="field number 0"):
        list(read_array(io.BytesIO(data), "protobuf-array", None, expect_eof=True))
    for bad in (b"\x00", b"\x0b", b"\x0e\x01", b"\x0f\x01"):  # field 0; wire types 3, 6, 7
        with pytest.raises(FormatError):
            list(read_array(io.BytesIO(bad), "protobuf-array", None, expect_eof=True))
