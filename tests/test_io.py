"""The public storage API (docmill.io and the Document/DocumentArray methods): every
protocol x compression, files, URLs, streaming both ways, atomic writes, bad input."""

from __future__ import annotations

import contextlib
import io
import os
import pickle
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import docmill
import docmill.io as dio
from docmill import Document, DocumentArray, FormatError
from docmill.io import _format

PROTOCOLS = dio.PROTOCOLS
COMPRESSIONS = dio.COMPRESSIONS
CASES = [(p, c) for p in PROTOCOLS for c in COMPRESSIONS]


def _da(n: int = 4, size: int = 16) -> DocumentArray:
    rng = np.random.default_rng(n)
    return DocumentArray(
        Document(id=f"d{i}", tensor=rng.random((size,), dtype=np.float32), tags={"i": i})
        for i in range(n)
    )


# ---------------------------------------------------------------------- comparing
def assert_same(a: Any, b: Any, path: str = "doc", byteorder: bool = True) -> None:
    """Field-by-field equality; arrays byte-exact (NaN-safe) with dtype and shape.

    ``byteorder=False``: numpy's own pickling turns non-contiguous big-endian
    arrays native (same values); accept that for the pickle protocols.
    """
    if isinstance(a, Document):
        assert isinstance(b, Document), path
        for f in docmill.document.FIELDS:
            assert_same(getattr(a, f), getattr(b, f), f"{path}.{f}", byteorder)
    elif isinstance(a, DocumentArray) or isinstance(b, DocumentArray):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{path}[{i}]", byteorder)
    elif isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray), f"{path}: {type(b)}"
        if not byteorder and a.dtype.newbyteorder("=") == b.dtype.newbyteorder("="):
            a = a.astype(b.dtype)
        assert (a.dtype, a.shape) == (b.dtype, b.shape), path
        assert np.ascontiguousarray(a).tobytes() == np.ascontiguousarray(b).tobytes(), path
    elif isinstance(a, dict) and isinstance(b, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            assert_same(a[k], b[k], f"{path}[{k!r}]", byteorder)
    elif isinstance(a, list | tuple):
        assert type(a) is type(b) and len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{path}[{i}]", byteorder)
    else:
        assert a == b and type(a) is type(b), f"{path}: {a!r} != {b!r}"


# ---------------------------------------------------------------------- strategies
_DTYPES = ["bool", "int8", "uint8", "<i2", ">i4", "<u8", "<f2", "<f4", ">f8", "<c8", "<U2", "|S3"]
_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.text(max_size=5)
    | st.floats(allow_nan=False),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=8,
)  # fmt: skip


@st.composite
def _arrays(draw: Any) -> np.ndarray:
    dtype = np.dtype(draw(st.sampled_from(_DTYPES)))
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4))
    a = draw(hnp.arrays(dtype, shape))
    layout = draw(st.sampled_from(["c", "f", "strided"]))
    if layout == "f":
        a = np.asfortranarray(a)
    elif layout == "strided" and a.ndim:
        a = a[::-1]
    return a


@st.composite
def _docs(draw: Any, depth: int = 2) -> Document:
    kw: dict[str, Any] = {"id": uuid.uuid4().hex}
    if draw(st.booleans()):
        kw["text"] = draw(st.text(max_size=20))
    if draw(st.booleans()):
        kw["tensor"] = draw(_arrays())
    if draw(st.booleans()):
        kw["embedding"] = draw(_arrays())
    if draw(st.booleans()):
        kw["blob"] = draw(st.binary(max_size=5000))
    if draw(st.booleans()):
        kw["tags"] = draw(st.dictionaries(st.text(max_size=5), _json, max_size=4))
    if draw(st.booleans()):
        kw["weight"] = draw(st.floats(allow_nan=False))
        kw["granularity"] = draw(st.integers(0, 5))
    if depth and draw(st.booleans()):
        kw["chunks"] = draw(st.lists(_docs(depth=depth - 1), max_size=2))
    if depth and draw(st.booleans()):
        kw["matches"] = draw(st.lists(_docs(depth=depth - 1), max_size=2))
    return Document(**kw)


def _f32() -> st.SearchStrategy[float]:
    return st.floats(width=32, allow_nan=False, allow_infinity=False).filter(bool)


@st.composite
def _legacy_docs(draw: Any, depth: int = 2) -> Document:
    """Documents the legacy protobuf schema can hold exactly (see _protobuf's rules)."""
    kw: dict[str, Any] = {"id": uuid.uuid4().hex}
    content = draw(st.sampled_from(["text", "tensor", "blob", None]))
    if content == "text":
        kw["text"] = draw(st.text(min_size=1, max_size=20))
    elif content == "blob":
        kw["blob"] = draw(st.binary(min_size=1, max_size=5000))
    elif content == "tensor":
        kw["tensor"] = draw(_arrays())
    if draw(st.booleans()):
        kw["embedding"] = draw(_arrays())
    if draw(st.booleans()):
        floats = st.floats(allow_nan=False, allow_infinity=False)
        value = st.recursive(
            st.none() | st.booleans() | floats | st.text(max_size=5),
            lambda inner: (
                st.lists(inner, max_size=3)
                | st.dictionaries(st.text(max_size=4), inner, max_size=3)
            ),
            max_leaves=8,
        )
        kw["tags"] = draw(st.dictionaries(st.text(max_size=5), value, min_size=1, max_size=4))
    if draw(st.booleans()):
        kw["weight"] = draw(_f32())
        kw["granularity"] = draw(st.integers(1, 5))
        kw["location"] = draw(
            st.lists(st.floats(width=32, allow_nan=False), min_size=1, max_size=3)
        )
        kw["scores"] = {"s": {"value": draw(_f32()), "op_name": "op"}}
    if depth and draw(st.booleans()):
        kw["chunks"] = draw(st.lists(_legacy_docs(depth=depth - 1), max_size=2))
    if depth and draw(st.booleans()):
        kw["matches"] = draw(st.lists(_legacy_docs(depth=depth - 1), max_size=2))
    return Document(**kw)


# ---------------------------------------------------------------------- properties
@pytest.mark.parametrize(("protocol", "compress"), CASES, ids=[f"{p}-{c}" for p, c in CASES])
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_every_protocol_and_compression_round_trips(protocol, compress, data) -> None:
    strategy = _legacy_docs() if protocol.startswith("protobuf") else _docs()
    docs = DocumentArray(data.draw(st.lists(strategy, max_size=4)))
    exact = not protocol.startswith("pickle")
    out = DocumentArray.from_bytes(docs.to_bytes(protocol, compress), protocol, compress)
    assert_same(docs, out, byteorder=exact)
    if not protocol.endswith("array"):
        for d in docs:
            out_d = Document.from_bytes(d.to_bytes(protocol, compress), protocol, compress)
            assert_same(d, out_d, byteorder=exact)


@pytest.mark.parametrize(("protocol", "compress"), CASES, ids=[f"{p}-{c}" for p, c in CASES])
@settings(max_examples=25, deadline=None)
@given(data=st.binary(max_size=200))
def test_random_bytes_raise_only_format_error(protocol, compress, data) -> None:
    try:
        out = DocumentArray.from_bytes(data, protocol=protocol, compress=compress)
    except FormatError:
        return
    assert isinstance(out, DocumentArray)  # rare random bytes that do form a legacy file


# ---------------------------------------------------------------------- API surface
def test_exports() -> None:
    assert len(set(dio.__all__)) == len(dio.__all__)  # (ruff's RUF022 keeps it sorted)
    for name in dio.__all__:
        assert hasattr(dio, name)
    for name in ("BinaryWriter", "iter_binary", "save_binary_stream"):
        assert getattr(docmill, name) is getattr(dio, name)


def test_default_protocol_is_docmill() -> None:
    da = _da()
    assert da.to_bytes()[:8] == dio.MAGIC
    assert da[0].to_bytes()[:8] == dio.MAGIC
    assert DocumentArray.from_bytes(da.to_bytes()) == da


def test_docmill_files_need_no_compress_argument() -> None:
    da = _da()
    for compress in COMPRESSIONS:
        assert DocumentArray.from_bytes(da.to_bytes(compress=compress)) == da
        assert Document.from_bytes(da[0].to_bytes(compress=compress)) == da[0]


def test_bad_arguments_raise_value_error_listing_choices() -> None:
    with pytest.raises(
        ValueError, match=r"protocol='json' is not supported; use one of: 'docmill'"
    ):
        _da().to_bytes(protocol="json")
    with pytest.raises(ValueError, match=r"compress='snappy' is not supported.*'lz4'"):
        _da().to_bytes(compress="snappy")
    with pytest.raises(ValueError, match="'docmill', 'protobuf', 'pickle'"):
        Document().to_bytes(protocol="protobuf-array")
    with pytest.raises(ValueError, match="compress='LZ4'"):
        DocumentArray.load_binary(b"", compress="LZ4")
    with pytest.raises(TypeError, match="expected bytes"):
        DocumentArray.from_bytes("text")  # type: ignore[arg-type]


def test_document_bytes_hold_exactly_one_document() -> None:
    with pytest.raises(FormatError, match="holds 4 Documents, expected 1"):
        Document.from_bytes(_da().to_bytes())
    assert DocumentArray.from_bytes(Document(id="x").to_bytes())[0].id == "x"


def test_loading_docmill_bytes_with_a_legacy_protocol_says_so() -> None:
    with pytest.raises(FormatError, match=r"this is a docmill file.*protocol='docmill'"):
        DocumentArray.from_bytes(_da().to_bytes(), protocol="protobuf")


def test_unpickling_something_else_is_a_format_error() -> None:
    with pytest.raises(FormatError, match="holds a dict, not a docmill Document"):
        Document.from_bytes(pickle.dumps({}), protocol="pickle")
    with pytest.raises(FormatError, match="holds a list, not a DocumentArray"):
        DocumentArray.from_bytes(pickle.dumps([]), protocol="pickle-array")
    fake = pickle.dumps(Document(), protocol=2)  # no frames: the name can change length
    fake = fake.replace(b"docmill.document", b"docarray.document")
    with pytest.raises(FormatError, match=r"module 'docarray'.*protocol='protobuf'"):
        Document.from_bytes(fake, protocol="pickle")


def test_zero_copy_load_from_bytearray() -> None:
    data = bytearray(_da(1).to_bytes())
    da = DocumentArray.from_bytes(data)
    assert np.shares_memory(da[0].tensor, np.frombuffer(data, np.uint8))
    da[0].tensor[:] = 0  # and writable


# ---------------------------------------------------------------------- files
@pytest.mark.parametrize(("protocol", "compress"), CASES, ids=[f"{p}-{c}" for p, c in CASES])
def test_save_and_load_a_path(tmp_path: Path, protocol: str, compress: str | None) -> None:
    da = _da()
    path = tmp_path / "out.bin"
    da.save_binary(path, protocol=protocol, compress=compress)
    assert DocumentArray.load_binary(path, protocol=protocol, compress=compress) == da
    assert list(DocumentArray.load_binary(str(path), protocol, compress, streaming=True)) == list(
        da
    )
    assert os.listdir(tmp_path) == ["out.bin"]  # no temporary file left behind


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_file_objects_and_fsspec_urls(protocol: str) -> None:
    da = _da()
    buf = io.BytesIO()
    da.save_binary(buf, protocol=protocol, compress="zstd")
    assert not buf.closed  # the caller's file object is left open
    buf.seek(0)
    assert DocumentArray.load_binary(buf, protocol=protocol, compress="zstd") == da
    import fsspec

    folder = f"/docmill-test-{uuid.uuid4().hex}"
    url = f"memory://{folder}/data.bin"
    da.save_binary(url, protocol=protocol, compress="lz4")
    assert DocumentArray.load_binary(url, protocol=protocol, compress="lz4") == da
    fs = fsspec.filesystem("memory")
    assert fs.ls(folder, detail=False) == [f"{folder}/data.bin"]  # the temporary name is gone
    fs.rm(folder, recursive=True)


def test_legacy_suffixes_choose_protocol_and_compression(tmp_path: Path) -> None:
    da = _da()
    path = tmp_path / "data.protobuf.lz4"
    da.save_binary(path)  # as docarray 0.21: the suffixes win over the defaults
    raw = path.read_bytes()
    assert raw[:1] == b"\x01"  # the legacy stream header, not docmill's magic
    assert DocumentArray.from_bytes(raw, protocol="protobuf", compress="lz4") == da
    assert DocumentArray.load_binary(path) == da


@pytest.mark.parametrize(
    "name", ["x.pickle", "x.pickle-array", "x.pickle.lz4", "x.pickle-array.gz"]
)
def test_a_suffix_never_makes_load_binary_unpickle(tmp_path: Path, name: str) -> None:
    # a file that runs code when unpickled: only an explicit pickle protocol may load it
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = tmp_path / name
    path.write_bytes(pickle.dumps(Evil()))
    with pytest.raises(ValueError, match="protocol='pickle"):
        DocumentArray.load_binary(path)
    with pytest.raises(FormatError):  # an explicit protocol wins over the suffix
        DocumentArray.load_binary(path, protocol="docmill")
    with pytest.raises(ValueError, match="protocol='pickle"):
        list(docmill.io.iter_binary(path))
    assert not marker.exists()
    da = _da()  # writing follows the suffix; reading it back needs the explicit protocol
    da.save_binary(tmp_path / "ok.pickle")
    assert DocumentArray.load_binary(tmp_path / "ok.pickle", protocol="pickle") == da


def test_arguments_are_checked_before_the_suffix(tmp_path: Path) -> None:
    da = _da()
    with pytest.raises(ValueError, match="protocol='protobuff'"):
        da.save_binary(tmp_path / "out.docmill", protocol="protobuff")
    with pytest.raises(ValueError, match="compress='lz5'"):
        da.save_binary(tmp_path / "out.lz4", compress="lz5")
    with pytest.raises(ValueError, match="compress='lz5'"):
        DocumentArray.load_binary(tmp_path / "out.lz4", compress="lz5")
    assert list(tmp_path.iterdir()) == []
    # an explicit protocol wins: a 'protobuf'-suffixed path written in docmill's format
    da.save_binary(tmp_path / "x.protobuf", protocol="docmill")
    assert (tmp_path / "x.protobuf").read_bytes()[:8] == docmill.io.MAGIC
    assert DocumentArray.load_binary(tmp_path / "x.protobuf", protocol="docmill") == da


def test_missing_file_and_text_mode_objects(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no such file"):
        DocumentArray.load_binary(tmp_path / "nope.bin")
    with pytest.raises(FileNotFoundError, match="no such file"):
        DocumentArray.load_binary("memory://docmill-test/nope.bin")
    with pytest.raises(TypeError, match="opened with 'rb'"):
        DocumentArray.load_binary(io.StringIO("x"))
    with pytest.raises(TypeError, match="opened with 'wb'"):
        _da().save_binary(io.StringIO())
    with pytest.raises(FileNotFoundError, match="does not exist"):
        _da().save_binary(tmp_path / "no-dir" / "x.bin")


def test_format_errors_from_files_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.bin"
    path.write_bytes(_da().to_bytes()[:-10])
    with pytest.raises(FormatError, match=r"'.*bad\.bin': truncated data"):
        DocumentArray.load_binary(path)


def test_a_failed_save_leaves_the_destination_untouched(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(_format, "FRAME_DOCS", 2)  # so frames are written before the failure
    path = tmp_path / "keep.bin"
    path.write_bytes(b"previous content")
    os.chmod(path, 0o640)
    bad = _da(6)
    bad[5].tags["oops"] = {1, 2}
    for compress in (None, "lz4"):
        with pytest.raises(TypeError, match=r"Document 5 \(id 'd5'\), field 'tags'"):
            bad.save_binary(path, compress=compress)
        assert path.read_bytes() == b"previous content"
        assert os.listdir(tmp_path) == ["keep.bin"]
    _da().save_binary(path)
    assert oct(os.stat(path).st_mode & 0o777) == oct(0o640)  # the permissions are kept


def test_binary_writer_aborts_on_exception(tmp_path: Path) -> None:
    path = tmp_path / "w.bin"
    with pytest.raises(KeyError), dio.BinaryWriter(path) as w:
        w.write(Document())
        raise KeyError("stop")
    assert not path.exists() and os.listdir(tmp_path) == []
    with pytest.raises(RuntimeError, match="open the BinaryWriter first"):
        dio.BinaryWriter(path).write(Document())


# ---------------------------------------------------------------------- streaming
class _CountingReader(io.RawIOBase):
    def __init__(self, data: bytes) -> None:
        self._buf = io.BytesIO(data)
        self.consumed = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        n = self._buf.readinto(b)
        self.consumed += n
        return n


def test_streaming_load_reads_one_frame_at_a_time(monkeypatch) -> None:
    monkeypatch.setattr(_format, "FRAME_DOCS", 10)
    da = _da(100, size=1000)  # 10 frames of ~40 KB
    data = da.to_bytes()
    src = _CountingReader(data)
    it = DocumentArray.load_binary(src, streaming=True)
    first = next(it)
    assert first == da[0]
    assert src.consumed < len(data) / 5  # about one frame, not the file
    assert [d.id for d in it] == [d.id for d in da[1:]]


def _open_fds_on(path: Path) -> int:
    n = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            n += os.readlink(f"/proc/self/fd/{fd}") == str(path)
    return n


@pytest.mark.parametrize("compress", [None, "lz4"])
def test_streaming_load_closes_the_file_when_abandoned(tmp_path: Path, compress) -> None:
    path = tmp_path / "s.bin"
    _da(20).save_binary(path, compress=compress)
    it = DocumentArray.load_binary(path, streaming=True)
    assert _open_fds_on(path) == 0  # nothing is opened before the first next()
    next(it)
    assert _open_fds_on(path) == 1
    it.close()  # the with-block inside the generator closes the file
    assert _open_fds_on(path) == 0


@pytest.mark.parametrize("compress", [None, "lz4"])
def test_streaming_writer_consumes_lazily_and_writes_as_it_goes(monkeypatch, compress) -> None:
    monkeypatch.setattr(_format, "FRAME_DOCS", 5)
    sink = io.BytesIO()
    pulled_at_write: list[int] = []
    pulled = 0

    def produce():
        nonlocal pulled
        for i in range(60):
            pulled += 1
            pulled_at_write.append(sink.tell())
            yield Document(id=str(i), tensor=np.full(100, i, dtype=np.int32))

    n = dio.save_binary_stream(produce(), sink, compress=compress)
    assert n == 60
    # frames hit the sink while the generator was still producing
    assert pulled_at_write[-1] > 0
    sink.seek(0)
    out = list(dio.iter_binary(sink))
    assert [d.id for d in out] == [str(i) for i in range(60)]
    assert all(int(d.tensor[0]) == int(d.id) for d in out)


def test_save_binary_stream_writes_a_map_result(tmp_path: Path) -> None:
    path = tmp_path / "mapped.bin"
    docs = (Document(id=str(i), text=str(i)) for i in range(10))
    mapped = map(lambda d: Document(id=d.id, text=d.text * 2), docs)
    for protocol in PROTOCOLS:
        assert dio.save_binary_stream(mapped, path, protocol=protocol) in (10, 0)
        mapped = (Document(id=str(i), text=str(i) * 2) for i in range(10))
    out = DocumentArray.load_binary(path, protocol="pickle-array")
    assert [d.text for d in out] == [str(i) * 2 for i in range(10)]


def test_binary_writer_mixes_single_and_bulk_writes(tmp_path: Path) -> None:
    path = tmp_path / "mix.bin"
    with dio.BinaryWriter(path, compress="zstd") as w:
        w.write(Document(id="a"))
        assert w.write_all(Document(id=f"b{i}") for i in range(3)) == 3
        w.write(Document(id="c"))
        assert w.count == 5
    assert [d.id for d in DocumentArray.load_binary(path)] == ["a", "b0", "b1", "b2", "c"]


def test_compressed_saves_run_frames_on_worker_threads(monkeypatch) -> None:
    import threading

    threads: set[str] = set()
    real = _format.encode_frame

    def spy(*args):
        threads.add(threading.current_thread().name)
        return real(*args)

    monkeypatch.setattr(_format, "encode_frame", spy)
    monkeypatch.setattr(_format, "FRAME_DOCS", 2)
    calls = []
    real_map = _format.thread_map
    monkeypatch.setattr(_format, "thread_map", lambda f, it: calls.append(1) or real_map(f, it))
    da = _da(20)
    assert DocumentArray.from_bytes(da.to_bytes(compress="lz4")) == da
    assert calls and threading.main_thread().name not in threads


def test_abandoning_a_threaded_stream_stops_its_workers(tmp_path: Path, monkeypatch) -> None:
    import threading
    import time

    monkeypatch.setattr(_format, "FRAME_BYTES", 4096)  # several full frames: decoded on threads
    path = tmp_path / "big.bin"
    da = DocumentArray(Document(id=f"d{i}", tensor=np.zeros(1024)) for i in range(60))
    da.save_binary(path, compress="lz4")
    before = threading.active_count()
    it = DocumentArray.load_binary(path, streaming=True)
    assert next(it).id == "d0"
    it.close()
    deadline = time.monotonic() + 5
    while threading.active_count() > before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert threading.active_count() <= before


def test_non_documents_in_a_stream_are_named(monkeypatch) -> None:
    monkeypatch.setattr(_format, "FRAME_DOCS", 2)
    items = [Document(id="a"), Document(id="b"), Document(id="c"), {"id": "d"}]
    for compress in (None, "lz4"):
        with pytest.raises(TypeError, match="item 3 is a dict, not a Document"):
            dio.save_binary_stream(items, io.BytesIO(), compress=compress)


def test_storage_does_not_load_the_engine() -> None:
    import subprocess
    import sys

    code = (
        "import docmill.io, sys; from docmill import DocumentArray; "
        "DocumentArray.from_bytes(DocumentArray.empty(3).to_bytes()); "
        "assert 'docmill.parallel' not in sys.modules, sorted(sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
