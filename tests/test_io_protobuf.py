"""docarray 0.21's protobuf schema: files docarray 0.21.1 wrote load in docmill, and files
docmill writes load in docarray 0.21.1 (that direction needs ~/legacy; skipped without it)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from docmill import Document, DocumentArray, FormatError, MissingExtra
from docmill.io import _protobuf

FIXTURES = Path(__file__).parent / "fixtures" / "legacy"
LEGACY_PYTHON = Path.home() / "legacy" / "bin" / "python"
EXPECTED = json.loads((FIXTURES / "expected.json").read_text())


def _plain(value: Any) -> Any:
    """The JSON form benchmarks/make_legacy_fixtures.py wrote for docarray's values."""
    if isinstance(value, np.ndarray):
        return {"dtype": value.dtype.str, "shape": list(value.shape), "data": value.tolist()}
    if isinstance(value, bytes):
        return {"base64": base64.b64encode(value).decode()}
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def describe(doc: Document) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in doc.non_empty_fields:
        v = getattr(doc, f)
        out[f] = [describe(c) for c in v] if f in ("chunks", "matches") else _plain(v)
    return out


def test_schema_is_byte_identical_to_docarrays() -> None:
    from google.protobuf import descriptor_pb2

    legacy = descriptor_pb2.FileDescriptorProto.FromString(
        (FIXTURES / "docarray_descriptor.bin").read_bytes()
    )
    for m in legacy.message_type:  # json_name is filled in by protoc, not part of the wire format
        for f in [*m.field, *(f for n in m.nested_type for f in n.field)]:
            f.ClearField("json_name")
    assert _protobuf._file_descriptor() == legacy


LEGACY_FILES = sorted(p.name for p in FIXTURES.glob("docs.*"))


@pytest.mark.parametrize("name", LEGACY_FILES)
def test_files_written_by_docarray_load(name: str) -> None:
    suffixes = name.split(".")[1:]
    protocol, compress = suffixes[0], (suffixes[1] if len(suffixes) > 1 else None)
    # explicitly, and from the suffixes as docarray 0.21 did
    da = DocumentArray.load_binary(FIXTURES / name, protocol=protocol, compress=compress)
    assert [describe(d) for d in da] == EXPECTED
    assert [describe(d) for d in DocumentArray.load_binary(FIXTURES / name)] == EXPECTED
    streamed = DocumentArray.load_binary(FIXTURES / name, streaming=True)
    assert [describe(d) for d in streamed] == EXPECTED


def test_single_document_written_by_docarray_loads() -> None:
    data = (FIXTURES / "doc0.protobuf.lz4").read_bytes()
    d = Document.from_bytes(data, protocol="protobuf", compress="lz4")
    assert describe(d) == EXPECTED[0]
    assert d.tags["n"] == 3.0 and isinstance(d.tags["n"], float)  # Struct numbers are doubles


def test_legacy_arrays_load_writable() -> None:
    da = DocumentArray.load_binary(FIXTURES / "docs.protobuf")
    da["tensor"].tensor[0, 0, 0] = 1.0
    assert da["tensor"].tensor.dtype == np.float32


def test_wrong_compression_for_a_legacy_file_is_a_format_error() -> None:
    with pytest.raises(FormatError, match=r"Document 0 at offset 9: lz4 data does not decompress"):
        data = (FIXTURES / "docs.protobuf.gzip").read_bytes()  # bytes: no suffix to go by
        DocumentArray.from_bytes(data, protocol="protobuf", compress="lz4")
    with pytest.raises(FormatError, match="not a valid DocumentProto"):
        Document.from_bytes(b"\xff\xff\xff", protocol="protobuf")


# ---------------------------------------------------------------------- mapping rules
def test_only_one_content_field() -> None:
    d = Document(id="x", tensor=np.zeros(2))
    d._text = "a"  # as docmill 0.1 allowed (its files can hold both)
    with pytest.raises(ValueError, match=r"'x' has tensor and text set.*protocol='docmill'"):
        d.to_bytes(protocol="protobuf")


def test_unstorable_values_name_the_field() -> None:
    with pytest.raises(TypeError, match=r"Document 'x', field 'tags'.*set"):
        Document(id="x", tags={"a": {1}}).to_bytes(protocol="protobuf")
    with pytest.raises(TypeError, match="field 'tags': keys must be strings"):
        Document(id="x", tags={1: 2}).to_bytes(protocol="protobuf")
    with pytest.raises(TypeError, match="field 'scores': a score must be a number or a dict"):
        Document(id="x", scores={"s": {"color": 1}}).to_bytes(protocol="protobuf")
    with pytest.raises(ValueError, match="field 'granularity'"):
        Document(id="x", granularity=-1).to_bytes(protocol="protobuf")


def test_values_follow_the_legacy_rules() -> None:
    d = Document(
        id="x",
        tensor=[[1, 2], [3, 4]],  # a list comes back a list (cls_name 'list')
        embedding=np.arange(3, dtype=np.int16),
        tags={"n": 1, "arr": np.arange(2), "t": (1, "a"), "np": np.float32(0.5)},
        scores={"plain": 0.5, "named": {"value": 0.25, "op_name": "cos"}},
        granularity=0,  # proto3: zero is "unset"
        weight=0.1,  # float32
    )
    out = Document.from_bytes(d.to_bytes(protocol="protobuf"), protocol="protobuf")
    assert out.tensor == [[1, 2], [3, 4]]
    assert out.embedding.dtype == np.int16
    assert out.tags == {"n": 1.0, "arr": [0.0, 1.0], "t": [1.0, "a"], "np": 0.5}
    assert out.scores == {"plain": {"value": 0.5}, "named": {"value": 0.25, "op_name": "cos"}}
    assert out.granularity == 0 and "granularity" not in out.non_empty_fields
    assert out.weight == pytest.approx(0.1) and out.weight == float(np.float32(0.1))


def test_a_proto_without_id_gets_a_fresh_one() -> None:
    msg = _protobuf.messages()["DocumentProto"](text="x")
    a, b = (Document.from_bytes(msg.SerializeToString(), protocol="protobuf") for _ in range(2))
    assert len(a.id) == 32 and a.id != b.id


def test_sparse_and_bad_ndarrays_are_format_errors() -> None:
    M = _protobuf.messages()
    msg = M["DocumentProto"](id="x")
    msg.embedding.sparse.shape.extend([2, 2])
    with pytest.raises(FormatError, match="sparse tensor"):
        Document.from_bytes(msg.SerializeToString(), protocol="protobuf")
    for dense in (
        {"buffer": b"\0" * 3, "shape": [2], "dtype": "<f4"},
        {"buffer": b"\0" * 8, "shape": [1], "dtype": "|O"},
        {"buffer": b"", "shape": [10**6, 10**6], "dtype": "<f8"},  # no data: no allocation
        {"buffer": b"\0" * 4, "shape": [1], "dtype": "nonsense"},
    ):
        msg = M["DocumentProto"](id="x")
        msg.embedding.dense.CopyFrom(M["DenseNdArrayProto"](**dense))
        with pytest.raises(FormatError, match="field 'embedding' is not a valid ndarray"):
            Document.from_bytes(msg.SerializeToString(), protocol="protobuf")


def test_missing_protobuf_raises_missing_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    _protobuf.messages.cache_clear()
    monkeypatch.setitem(sys.modules, "google.protobuf", None)
    try:
        with pytest.raises(MissingExtra, match=r"pip install 'docmill\[protobuf\]'"):
            Document(text="x").to_bytes(protocol="protobuf")
    finally:
        monkeypatch.undo()
        _protobuf.messages.cache_clear()


# ---------------------------------------------------------------------- docmill -> docarray
_LEGACY_READER = r"""
import base64, json, sys
import numpy as np
from docarray import Document, DocumentArray

def plain(v):
    if isinstance(v, np.ndarray):
        return {"dtype": v.dtype.str, "shape": list(v.shape), "data": v.tolist()}
    if isinstance(v, bytes):
        return {"base64": base64.b64encode(v).decode()}
    if isinstance(v, dict):
        return {k: plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [plain(x) for x in v]
    if hasattr(v, "non_empty_fields") and not isinstance(v, Document):
        return {f: plain(getattr(v, f)) for f in v.non_empty_fields}
    return v

def describe(d):
    return {f: [describe(c) for c in getattr(d, f)] if f in ("chunks", "matches")
            else plain(getattr(d, f)) for f in d.non_empty_fields}

reference, jobs = json.loads(sys.argv[1])
# docarray's own view of the file it wrote, to compare with its view of docmill's files
out = {"reference": [describe(d) for d in DocumentArray.load_binary(reference)]}
for path, protocol, compress in jobs:
    if protocol == "doc":
        docs = [Document.from_bytes(open(path, "rb").read(), protocol="protobuf",
                                    compress=compress)]
    else:
        docs = DocumentArray.load_binary(path, protocol=protocol, compress=compress)
    out[path] = [describe(d) for d in docs]
print(json.dumps(out))
"""


@pytest.mark.skipif(not LEGACY_PYTHON.exists(), reason="needs docarray 0.21.1 in ~/legacy")
@pytest.mark.timeout(120)
def test_files_docmill_writes_load_in_docarray(tmp_path: Path) -> None:
    # the docarray-produced fixtures, loaded by docmill and written back out by docmill
    da = DocumentArray.load_binary(FIXTURES / "docs.protobuf")
    jobs = []
    for protocol, compress in [
        ("protobuf", None),
        ("protobuf", "lz4"),
        ("protobuf", "gzip"),
        ("protobuf", "bz2"),
        ("protobuf", "lzma"),
        ("protobuf", "zlib"),
        ("protobuf-array", None),
        ("protobuf-array", "lz4"),
        ("protobuf-array", "gzip"),
    ]:
        path = tmp_path / f"out-{protocol}-{compress}.bin"
        da.save_binary(path, protocol=protocol, compress=compress)
        jobs.append((str(path), protocol, compress))
    one = tmp_path / "one.bin"
    one.write_bytes(da[4].to_bytes(protocol="protobuf", compress="lz4"))
    jobs.append((str(one), "doc", "lz4"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    args = json.dumps([str(FIXTURES / "docs.protobuf"), jobs])
    proc = subprocess.run(
        [str(LEGACY_PYTHON), "-c", _LEGACY_READER, args],
        capture_output=True,
        text=True,
        timeout=100,
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    reference = seen["reference"]
    assert len(reference) == 6
    for path, protocol, _ in jobs:
        assert seen[path] == (reference[4:5] if protocol == "doc" else reference), path
