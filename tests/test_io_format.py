"""The 'docmill' container: header, frames, checksums, versions, bad input."""

from __future__ import annotations

import io
import itertools
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from docmill import Document, DocumentArray, FormatError, MissingExtra
from docmill.io import _format
from docmill.io._format import (
    MAGIC,
    FrameDecoder,
    FrameWriter,
    encode_docs,
    encode_frame,
    group_docs,
    read_docs,
)

FIXTURES = Path(__file__).parent / "fixtures" / "docmill"


def _encode(docs, compress=None, checksum=None) -> bytes:
    pieces: list = []
    w = FrameWriter(pieces.append, compress, checksum)
    w.write_docs(docs)
    w.close()
    return b"".join(pieces)


def _decode(data, expect_eof=True) -> list[Document]:
    return list(read_docs(data, expect_eof))


def _docs(n=3) -> list[Document]:
    return [
        Document(id=f"d{i}", modality=f"t{i}", tensor=np.full((2, 3), i, dtype=np.float32))
        for i in range(n)
    ]


def test_header_layout() -> None:
    data = _encode(_docs(1), "zstd")
    magic, version, codec, checksum, crc = struct.unpack("<8sHBB16xI", data[:32])
    assert (magic, version, codec, checksum) == (MAGIC, 1, 2, _format.DEFAULT_CHECKSUM)
    assert crc == zlib.crc32(data[:28])
    # the end frame carries the total number of Documents
    kind, _, count, stored, raw, _, _ = struct.unpack("<BBxxIQQII", data[-32:])
    assert (kind, count, stored, raw) == (2, 0, 0, 1)


def test_frames_and_payloads_are_32_byte_aligned() -> None:
    docs = [Document(id=str(i), tensor=np.arange(i + 1, dtype=np.int8)) for i in range(5)]
    data = _encode(docs)
    assert len(data) % 32 == 0
    out = _decode(bytearray(data))  # zero-copy views: alignment is visible in the pointers
    for d in out:
        assert d.tensor.ctypes.data % 16 == 0


def test_incompressible_frames_are_stored_raw() -> None:
    rng = np.random.default_rng(0)
    docs = [Document(tensor=rng.random(10_000))]
    frame = encode_frame(docs, "lz4")[0]
    assert frame[0][1] == 0  # codec byte of the frame header: raw
    zeros = encode_frame([Document(tensor=np.zeros(10_000))], "lz4")[0]
    assert zeros[0][1] == 1  # lz4
    assert sum(len(p) for p in zeros[1:]) < 1000


def test_incompressible_big_frames_skip_compression(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = _format.compress_pieces
    monkeypatch.setattr(_format, "compress_pieces", lambda *a: calls.append(1) or real(*a))
    rng = np.random.default_rng(0)
    noise = [Document(tensor=rng.random(100_000)) for _ in range(3)]  # 800 KB each
    assert encode_frame(noise, "lz4")[0][0][1] == 0 and calls == []  # sampled, stored raw
    mixed = [*noise, Document(tensor=np.zeros(100_000))]
    assert encode_frame(mixed, "lz4")[0][0][1] == 1 and calls == [1]  # the sample shrank
    assert _decode(_encode(mixed, "lz4")) == mixed


def test_group_docs_bounds_frame_bytes_and_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_format, "FRAME_BYTES", 10_000)
    big = [Document(tensor=np.zeros(1000)) for _ in range(5)]  # 8 KB each
    groups = list(group_docs(big))
    assert [len(g) for g, _, _ in groups] == [2, 2, 1]
    assert [first for _, first, _ in groups] == [0, 2, 4]
    assert [full for _, _, full in groups] == [True, True, False]
    monkeypatch.setattr(_format, "FRAME_DOCS", 3)
    assert [len(g) for g, _, _ in group_docs(Document() for _ in range(7))] == [3, 3, 1]


def test_many_frames_round_trip(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_format, "FRAME_DOCS", 4)
    docs = _docs(10)
    for compress in (None, "lz4"):
        assert _decode(_encode(docs, compress)) == docs


def test_zero_copy_from_writable_buffer() -> None:
    data = bytearray(_encode(_docs(1)))
    d = _decode(data)[0]
    d.tensor[0, 0] = 42.0  # writable, and a view of `data`
    assert np.frombuffer(data, np.float32).tolist().count(42.0) == 1


def test_arrays_from_immutable_bytes_are_writable_copies() -> None:
    data = _encode(_docs(1))
    d = _decode(data)[0]
    assert d.tensor.flags.writeable
    d.tensor += 1  # does not touch `data` (bytes are immutable)
    assert _decode(data)[0].tensor[0, 0] == 0


# ---------------------------------------------------------------------- bad input
def test_wrong_magic_names_offset_and_hint() -> None:
    with pytest.raises(FormatError, match=r"magic bytes .* at offset 0.*protocol='protobuf'"):
        _decode(b"\x01" + bytes(60))


def test_newer_version_asks_to_upgrade() -> None:
    head = struct.pack("<8sHBB16x", MAGIC, 2, 0, 0)
    data = head + struct.pack("<I", zlib.crc32(head)) + bytes(32)
    with pytest.raises(FormatError, match=r"version 2 .* upgrade docmill"):
        _decode(data)


def test_unknown_codec_in_header() -> None:
    head = struct.pack("<8sHBB16x", MAGIC, 1, 99, 0)
    with pytest.raises(FormatError, match="unknown compression code 99"):
        _decode(head + struct.pack("<I", zlib.crc32(head)))


def _frame_header(kind, codec, count, stored, raw, crc) -> bytes:
    head = struct.pack("<BBxxIQQI", kind, codec, count, stored, raw, crc)
    return head + struct.pack("<I", zlib.crc32(head))


def test_unknown_frame_kind_and_codec() -> None:
    start = _encode([])[:32]
    with pytest.raises(FormatError, match="unknown frame kind 7 at offset 32"):
        _decode(start + _frame_header(7, 0, 0, 0, 0, 0))
    with pytest.raises(FormatError, match="unknown compression code 9 in the frame at offset 32"):
        _decode(start + _frame_header(1, 9, 0, 0, 0, 0))


def test_end_frame_count_mismatch() -> None:
    data = bytearray(_encode(_docs(2)))
    data[-32:] = _frame_header(2, 0, 0, 0, 5, 0)
    with pytest.raises(FormatError, match="says 5 Documents, the file holds 2"):
        _decode(data)


def test_trailing_data_is_an_error_for_whole_inputs_only() -> None:
    data = _encode(_docs(1))
    with pytest.raises(FormatError, match=f"after the end frame, at offset {len(data)}"):
        _decode(data + b"x")
    assert len(_decode(data + b"x", expect_eof=False)) == 1


def test_huge_length_in_a_valid_header_fails_before_allocating() -> None:
    start = _encode([])[:32]
    with pytest.raises(FormatError, match="truncated data: the frame at offset 32 needs"):
        _decode(start + _frame_header(1, 0, 1, 1 << 60, 1 << 60, 0))


@pytest.mark.parametrize("compress", [None, "lz4", "zstd"])
def test_every_truncation_is_a_format_error(compress) -> None:
    data = _encode(_docs(2), compress)
    for cut in range(len(data)):
        with pytest.raises(FormatError, match=r"truncated|offset"):
            _decode(data[:cut])


_needs_xxhash = pytest.mark.skipif(_format.xxhash is None, reason="the xxhash package is absent")
CHECKSUMS = [
    pytest.param(_format.CHECKSUM_CRC32, id="crc32"),
    pytest.param(_format.CHECKSUM_XXH3, id="xxh3", marks=_needs_xxhash),
]


@pytest.mark.parametrize("checksum", CHECKSUMS)
@pytest.mark.parametrize("compress", [None, "zlib"])
def test_every_flipped_byte_is_detected_with_its_offset(compress, checksum) -> None:
    data = _encode(_docs(2), compress, checksum)
    for i in range(len(data)):
        bad = bytearray(data)
        bad[i] ^= 0x10
        with pytest.raises(FormatError, match=r"offset \d+"):
            _decode(bytes(bad))


def test_checksum_message_names_the_changed_range() -> None:
    data = bytearray(_encode(_docs(1)))
    data[100] ^= 1
    with pytest.raises(FormatError, match=r"corrupt frame at offset 32: payload checksum"):
        _decode(data)


def _with_payload(payload: bytes, count: int, raw_len: int | None = None) -> bytes:
    """A file whose one frame has a valid checksum over ``payload`` (so decoding is reached)."""
    start = _encode([])[:32]
    pad = -len(payload) % 32
    crc = _format.payload_checksum(_format.DEFAULT_CHECKSUM, [payload])
    head = _frame_header(1, 0, count, len(payload), raw_len or len(payload), crc)
    end = _frame_header(2, 0, 0, 0, count, 0)
    return start + head + payload + bytes(pad) + end


def test_valid_checksum_but_inconsistent_payload_is_a_format_error() -> None:
    import msgpack

    cases = {
        "too short": b"\x01",
        "meta longer than payload": struct.pack("<I", 1000),
        "not msgpack": struct.pack("<I", 2) + b"\xc1\xc1",
        "wrong count": struct.pack("<I", 1) + msgpack.packb([]),
        "no id": struct.pack("<I", 3) + msgpack.packb([{}]),
        "unknown field": struct.pack("<I", 12) + msgpack.packb([{"id": "x", "color": 1}]),
        "bad chunks": struct.pack("<I", 17) + msgpack.packb([{"id": "x", "chunks": 5}]),
        "bad ndarray": struct.pack("<I", 30)
        + msgpack.packb([{"id": "x", "tensor": msgpack.ExtType(1, msgpack.packb(["<f4", [9], False, 0, 36]))}]),
        "object dtype": struct.pack("<I", 30)
        + msgpack.packb([{"id": "x", "tensor": msgpack.ExtType(1, msgpack.packb(["|O", [1], False, 0, 8]))}]),
        "unknown ext": struct.pack("<I", 12) + msgpack.packb([{"id": "x", "t": msgpack.ExtType(77, b"")}]),
    }  # fmt: skip
    for what, payload in cases.items():
        with pytest.raises(FormatError, match="bad frame at offset 32"):
            _decode(_with_payload(payload.ljust(32 * ((len(payload) + 31) // 32), b"\0"), 1))
        del what


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_raise_only_format_error(data: bytes) -> None:
    with pytest.raises(FormatError):
        _decode(data)


@settings(max_examples=150, deadline=None)
@given(st.binary(min_size=1, max_size=200), st.integers(0, 400))
def test_random_bytes_after_a_valid_header_raise_only_format_error(junk: bytes, at: int) -> None:
    data = bytearray(_encode(_docs(2)))
    at = min(at, len(data))
    with pytest.raises(FormatError):
        _decode(bytes(data[:32]) + junk)
    data[at : at + len(junk)] = junk
    try:  # only FormatError may escape (junk equal to the bytes it replaced still decodes)
        _decode(bytes(data))
    except FormatError:
        pass


# ---------------------------------------------------------------------- versions
def _v1_docs() -> list[Document]:
    """The Documents stored in tests/fixtures/docmill/v1*.docmill (written by docmill 0.1)."""
    d = Document(
        id="v1",
        tensor=np.arange(24, dtype=np.float32).reshape(2, 3, 4),
        embedding=np.asfortranarray(np.arange(6, dtype=">i8").reshape(2, 3)),
        tags={"k": [1, 2.5, None, True, "s"], "t": (1, "a"), "big": 2**70},
        weight=0.5,
        location=[1.0, 2.0],
        scores={"cos": {"value": 0.5}},
    )
    # docmill 0.1 let text, blob and tensor be set together, and set no chunk metadata:
    # its files hold exactly that, and load as they were written
    d._text, d._blob = "format version 1", bytes(range(256)) * 20
    d._chunks = DocumentArray([Document(id="v1-chunk", tensor=np.zeros((0, 3), dtype=np.uint8))])
    d._matches = DocumentArray([Document(id="v1-match", text="m")])
    return [d, Document(id="v1-bare")]


@pytest.mark.parametrize(
    "name",
    ["v1.docmill", "v1-lz4.docmill", pytest.param("v1-xxh3.docmill", marks=_needs_xxhash)],
)
def test_files_written_by_format_version_1_still_load(name: str) -> None:
    data = (FIXTURES / name).read_bytes()
    assert _decode(data) == _v1_docs()


def _write_v1_fixtures() -> None:  # pragma: no cover - run by hand when the fixture changes
    FIXTURES.mkdir(parents=True, exist_ok=True)
    (FIXTURES / "v1.docmill").write_bytes(_encode(_v1_docs(), None, _format.CHECKSUM_CRC32))
    (FIXTURES / "v1-lz4.docmill").write_bytes(_encode(_v1_docs(), "lz4", _format.CHECKSUM_CRC32))
    (FIXTURES / "v1-xxh3.docmill").write_bytes(_encode(_v1_docs(), "zstd", _format.CHECKSUM_XXH3))


@_needs_xxhash
def test_checksum_kinds(monkeypatch: pytest.MonkeyPatch) -> None:
    for kind in (_format.CHECKSUM_CRC32, _format.CHECKSUM_XXH3):
        data = _encode(_docs(2), None, kind)
        assert data[11] == kind and _decode(data) == _docs(2)
    head = struct.pack("<8sHBB16x", MAGIC, 1, 0, 9)
    with pytest.raises(FormatError, match=r"unknown checksum algorithm 9 .* offset 11"):
        _decode(head + struct.pack("<I", zlib.crc32(head)))
    # without the xxhash package: CRC-32 files still load, XXH3 files say what to install
    crc_file = _encode(_docs(1), None, _format.CHECKSUM_CRC32)
    xxh_file = _encode(_docs(1), None, _format.CHECKSUM_XXH3)
    monkeypatch.setattr(_format, "xxhash", None)
    assert _decode(crc_file) == _docs(1)
    with pytest.raises(MissingExtra, match="pip install xxhash"):
        _decode(xxh_file)


def test_documents_compare_through_doc_array() -> None:
    # sanity for the helpers above: equality sees nested differences
    a, b = _v1_docs(), _v1_docs()
    b[0].chunks[0].tensor = np.zeros((0, 4), dtype=np.uint8)
    assert DocumentArray(a) != DocumentArray(b)


# ---------------------------------------------------------------------- big data: worker threads
@pytest.fixture
def small_frames(monkeypatch: pytest.MonkeyPatch) -> None:
    """Frames of ~4 KB, so a few KB of data takes the multi-threaded paths."""
    monkeypatch.setattr(_format, "FRAME_BYTES", 4096)


def _big_docs(n: int = 40) -> list[Document]:
    # 2 KB each, compressible (so frames are stored compressed and decoded on threads)
    return [Document(id=f"b{i}", tensor=np.arange(256) % (i + 2) / 3) for i in range(n)]


@pytest.mark.usefixtures("small_frames")
@pytest.mark.parametrize("compress", [None, "lz4"])
def test_threaded_encode_and_decode_round_trip(compress, monkeypatch) -> None:
    calls: list[int] = []
    real = _format.thread_map
    monkeypatch.setattr(_format, "thread_map", lambda f, it: calls.append(1) or real(f, it))
    docs = _big_docs()
    data = _encode_parallel(docs, compress)
    assert len(FrameDecoder().feed_frames(data)) > 5
    assert _decode(data) == docs
    assert _decode(bytearray(data)) == docs
    # threads for compression only: one encode and two decodes with lz4, none without
    assert len(calls) == (3 if compress else 0)


def _encode_parallel(docs, compress=None) -> bytes:
    pieces: list = []
    w = FrameWriter(pieces.append, compress)
    w.write_docs(docs)  # several full frames: compressed on worker threads
    w.close()
    return b"".join(pieces)


@pytest.mark.usefixtures("small_frames")
def test_threaded_decode_reports_corruption_with_offset() -> None:
    data = bytearray(_encode_parallel(_big_docs(), "zstd"))
    data[-200] ^= 0xFF  # inside the last frame's payload
    with pytest.raises(FormatError, match=r"corrupt frame at offset \d+: payload checksum"):
        _decode(bytes(data))
    with pytest.raises(FormatError, match="truncated data"):
        _decode(bytes(data[: len(data) // 2]))


@pytest.mark.usefixtures("small_frames")
def test_threaded_encode_names_the_failing_document() -> None:
    docs = _big_docs()
    docs[25].tags["bad"] = {1}
    with pytest.raises(TypeError, match=r"Document 25 \(id 'b25'\), field 'tags'"):
        _encode_parallel(docs, "lz4")


# ---------------------------------------------------------------------- sans-IO
@settings(max_examples=60, deadline=None)
@given(
    cuts=st.lists(st.integers(min_value=1, max_value=4000), min_size=1, max_size=40),
    compress=st.sampled_from([None, "lz4", "zstd"]),
)
def test_the_decoder_takes_chunks_of_any_size(cuts, compress) -> None:
    docs = [
        Document(id=f"d{i}", modality="x" * i, tensor=np.full(i % 50, i, dtype=np.int16))
        for i in range(40)
    ]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_format, "FRAME_DOCS", 7)  # several frames
        data = b"".join(bytes(p) for p in encode_docs(docs, compress))
        assert data == _encode(docs, compress)  # the same bytes as the file writer's
    dec, out, pos = FrameDecoder(), [], 0
    for n in itertools.cycle(cuts):
        if pos >= len(data):
            break
        out += dec.feed(data[pos : pos + n])
        pos += n
    dec.close()
    assert dec.done and out == docs and dec.offset == len(data)


def test_the_decoder_names_the_offset_of_a_cut_and_of_extra_data() -> None:
    data = _encode(_docs(3), "lz4")
    for cut in (0, 5, 32, 40, 64, len(data) - 32, len(data) - 1):
        dec = FrameDecoder()
        dec.feed(data[:cut])
        with pytest.raises(FormatError, match=r"truncated data: .* at offset \d+ needs"):
            dec.close()
    dec = FrameDecoder()
    with pytest.raises(FormatError, match=f"after the end frame, at offset {len(data)}"):
        dec.feed(data + b"more")


def test_the_decoder_holds_at_most_one_frame(monkeypatch) -> None:
    monkeypatch.setattr(_format, "FRAME_DOCS", 4)
    docs = [Document(tensor=np.full(10_000, i, dtype=np.uint8)) for i in range(40)]
    data = _encode(docs)
    dec, biggest, out = FrameDecoder(), 0, []
    for i in range(0, len(data), 1000):
        out += dec.feed(data[i : i + 1000])
        biggest = max(biggest, len(dec._partial))
    dec.close()
    assert out == docs and biggest <= 4 * 10_000 + 4096  # one frame's payload, not the stream


def test_a_file_object_is_read_exactly_up_to_the_end_frame() -> None:
    data = _encode(_docs(5), "zstd")
    f = io.BytesIO(data + b"the caller's own data")
    assert len(list(read_docs(f, expect_eof=False))) == 5
    assert f.read() == b"the caller's own data"

    class Pipe(io.RawIOBase):  # not seekable, short reads
        def __init__(self, b):
            self._b, self._pos = b, 0

        def readable(self):
            return True

        def readinto(self, buf):
            n = min(len(buf), 7, len(self._b) - self._pos)
            buf[:n] = self._b[self._pos : self._pos + n]
            self._pos += n
            return n

    assert list(read_docs(Pipe(data), expect_eof=True)) == _docs(5)
    with pytest.raises(FormatError, match="truncated data"):
        list(read_docs(Pipe(data[:-10]), expect_eof=True))
