"""Documents <-> msgpack metadata + raw buffers: every field, dtype and layout."""

from __future__ import annotations

import collections
import enum

import msgpack
import numpy as np
import pytest

from docmill import Document, FormatError
from docmill.io._docpack import ALIGN, decode_payload, encode_payload


def _round_trip(docs: list[Document]) -> list[Document]:
    pieces, size = encode_payload(docs)
    payload = bytearray(b"".join(pieces))
    assert len(payload) == size and size % ALIGN == 0
    return decode_payload(payload, len(docs))


def _same_array(a: np.ndarray, b: np.ndarray) -> None:
    assert type(b) is np.ndarray
    assert a.dtype == b.dtype and a.shape == b.shape
    assert a.tobytes() == b.tobytes()  # byte-exact, NaN payloads included


DTYPES = [
    "bool", "int8", "uint8", "<i2", ">i2", "<u4", "<i8", ">u8", "<f2", "<f4", ">f4", "<f8",
    "<c8", "<c16", "<U3", "|S5", "<M8[ms]", "<m8[s]", "|V4",
    [("a", "<i4"), ("b", ">f8", (2,))],
]  # fmt: skip


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_dtypes_round_trip_exactly(dtype) -> None:
    dt = np.dtype(dtype)
    rng = np.random.default_rng(1)
    a = np.frombuffer(rng.bytes(6 * dt.itemsize), dt).reshape(2, 3).copy()
    if dt.kind == "M" or dt.kind == "m":
        a = np.arange(6).astype(dt).reshape(2, 3)
    out = _round_trip([Document(tensor=a)])[0].tensor
    _same_array(a, out)


@pytest.mark.parametrize(
    "make",
    [
        lambda: np.array(3.5, dtype=np.float32),  # 0-d
        lambda: np.zeros((0,), np.float32),
        lambda: np.zeros((3, 0, 2), np.int16),
        lambda: np.arange(24.0).reshape(2, 3, 4)[:, ::2, 1:],  # non-contiguous
        lambda: np.arange(24.0).reshape(4, 6).T,  # Fortran order
        lambda: np.asfortranarray(np.arange(60, dtype=np.int32).reshape(3, 4, 5)),
        lambda: np.arange(10)[::-1],  # negative strides
        lambda: np.broadcast_to(np.arange(3), (4, 3)),  # zero strides, read-only
    ],
    ids=["0d", "empty", "empty-nd", "strided", "transposed", "fortran", "reversed", "broadcast"],
)
def test_shapes_and_layouts(make) -> None:
    a = make()
    out = _round_trip([Document(embedding=a)])[0].embedding
    assert out.shape == a.shape and out.dtype == a.dtype
    np.testing.assert_array_equal(out, a)
    assert out.flags.writeable
    if a.flags.f_contiguous and not a.flags.c_contiguous:
        assert out.flags.f_contiguous  # the layout is kept, no copy needed on either side


def test_decoded_arrays_are_views_into_the_payload() -> None:
    pieces, _ = encode_payload([Document(tensor=np.arange(4, dtype=np.int64))])
    payload = bytearray(b"".join(pieces))
    t = decode_payload(payload, 1)[0].tensor
    t[:] = 7
    assert np.frombuffer(payload, np.int64).tolist().count(7) == 4


def test_encoding_does_not_copy_contiguous_arrays() -> None:
    a = np.arange(1000, dtype=np.float64)
    pieces, _ = encode_payload([Document(tensor=a)])
    views = [p for p in pieces if isinstance(p, memoryview)]
    assert len(views) == 1 and np.shares_memory(np.asarray(views[0]), a)


def test_every_field_and_nesting() -> None:
    inner = Document(id="g", modality="grandchild", tensor=np.ones(2))
    child = Document(id="c", text="chunk", chunks=[inner], granularity=1, parent_id="p")
    d = Document(
        id="p",
        parent_id="root",
        granularity=0,
        adjacency=3,
        blob=b"\x00\x01" * 5000,  # large: goes to the buffer area
        tensor=np.eye(3, dtype=np.float32),
        mime_type="image/png",
        text="héllo ✓",
        weight=0.25,
        uri="data:,x",
        tags={"nested": {"list": [1, None, True, 2.5, "s", b"raw"]}, 3: "int key"},
        offset=7,
        location=[0.5, 1.5],
        embedding=[0.1, 0.2],  # a list stays a list
        modality="image",
        evaluations={"p": {"value": 1.0, "op_name": "precision"}},
        scores={"cos": 0.5},
        chunks=[child],
        matches=[Document(id="m", scores={"cos": {"value": 0.9}})],
    )
    # text, blob and tensor exclude each other through the API; files of docmill 0.1
    # can hold all three, and the format keeps them
    d._text, d._blob = "héllo ✓", b"\x00\x01" * 5000
    out = _round_trip([d, Document(id="small", blob=b"tiny")])
    assert out[0] == d
    assert out[0].chunks[0].chunks[0].modality == "grandchild"
    assert type(out[0].blob) is bytes and out[1].blob == b"tiny"
    assert out[0].granularity == 0  # zero is a value, not "unset"


def test_python_value_types_are_kept() -> None:
    class Color(enum.IntEnum):
        RED = 1

    tags = {
        "tuple": (1, (2, "x")),
        "big": -(2**100),
        "u64": 2**64 - 1,
        "np": np.float32(0.5),
        "npint": np.int64(3),
        "enum": Color.RED,
        "od": collections.OrderedDict(a=1),
        "arr": np.arange(3, dtype=np.uint16),
        "bytearray": bytearray(b"ab"),
    }
    out = _round_trip([Document(tags=tags)])[0].tags
    assert out["tuple"] == (1, (2, "x")) and type(out["tuple"][1]) is tuple
    assert out["big"] == -(2**100) and out["u64"] == 2**64 - 1
    assert out["np"] == 0.5 and out["npint"] == 3 and out["enum"] == 1
    assert out["od"] == {"a": 1}
    _same_array(tags["arr"], out["arr"])
    assert out["bytearray"] == b"ab"


def test_lazy_empty_containers_stay_unset() -> None:
    d = Document(id="x")
    d.tags  # noqa: B018 - creates the lazy empty dict
    d.chunks  # noqa: B018
    pieces, _ = encode_payload([d])
    assert b"tags" not in b"".join(pieces) and b"chunks" not in b"".join(pieces)
    assert _round_trip([d])[0] == d


def test_unstorable_value_names_document_index_id_and_field() -> None:
    docs = [Document(id="ok"), Document(id="bad", tags={"s": {1, 2}})]
    with pytest.raises(TypeError, match=r"Document 1 \(id 'bad'\), field 'tags'.*set.*'pickle'"):
        encode_payload(docs)
    with pytest.raises(TypeError, match=r"field 'tensor'.*Python objects"):
        encode_payload([Document(tensor=np.array([object()]))])
    with_matches = Document(id="m", chunks=[Document()], matches=[Document(tags={"x": {1}})])
    with pytest.raises(TypeError, match=r"Document 0 \(id 'm'\), field 'matches'"):
        encode_payload([with_matches])
    with pytest.raises(TypeError, match="item 0 is a str, not a Document"):
        encode_payload(["nope"])  # type: ignore[list-item]


def test_array_likes_are_stored_as_numpy() -> None:
    class Tensorish:
        def __array__(self, dtype=None, copy=None):
            return np.arange(3, dtype=np.int32)

    out = _round_trip([Document(tensor=Tensorish())])[0].tensor
    _same_array(np.arange(3, dtype=np.int32), out)


def test_transposed_views_are_written_as_they_lie_in_memory() -> None:
    """An image with its channel axis moved (a permuted view) is stored without the
    strided copy: its bytes are the base array's, and it comes back the same view."""
    from docmill.io._docpack import EXT_AXES

    base = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    a = np.moveaxis(base, -1, 1)  # neither C nor Fortran order
    pieces, _ = encode_payload([Document(tensor=a)])
    views = [p for p in pieces if isinstance(p, memoryview)]
    assert len(views) == 1 and np.shares_memory(np.asarray(views[0]), base)
    head = b"".join(bytes(p) for p in pieces if not isinstance(p, memoryview))
    meta = msgpack.unpackb(head[4 : 4 + int.from_bytes(head[:4], "little")])
    assert meta[0]["tensor"].code == EXT_AXES
    out = _round_trip([Document(tensor=a)])[0].tensor
    _same_array(a, out)
    assert out.strides == a.strides


@pytest.mark.parametrize("axes", [[0, 0, 1], [0, 1], [0, 1, 3], "012", [0, 1, 2.0]], ids=repr)
def test_decode_rejects_axes_that_are_not_a_permutation(axes) -> None:
    meta = msgpack.packb(
        [{"id": "x", "tensor": msgpack.ExtType(5, msgpack.packb(["<f4", [1, 2, 2], axes, 0, 16]))}]
    )
    payload = bytearray(len(meta).to_bytes(4, "little") + meta)
    payload += bytes(-len(payload) % 32 + 32)
    with pytest.raises(FormatError, match="not a permutation"):
        decode_payload(payload, 1)


def test_decode_rejects_out_of_range_buffers() -> None:
    import msgpack

    meta = msgpack.packb(
        [{"id": "x", "tensor": msgpack.ExtType(1, msgpack.packb(["<f4", [4], False, 32, 16]))}]
    )
    payload = bytearray(len(meta).to_bytes(4, "little") + meta)
    payload += bytes(-len(payload) % 32 + 32)
    with pytest.raises(FormatError, match=r"buffer \[32, 48\) lies outside the 32-byte"):
        decode_payload(payload, 1)


# ---------------------------------------------------------------------- nesting depth
def _nested(kind, depth):
    v = None
    for _ in range(depth):
        v = {"k": v} if kind is dict else kind([v])
    return v


@pytest.mark.parametrize("kind", [tuple, list, dict])
def test_nesting_is_bounded_on_write(kind) -> None:
    from docmill.io._docpack import MAX_DEPTH

    ok = Document(id="ok", tags={"t": _nested(kind, MAX_DEPTH - 1)})
    assert decode_payload(_join(encode_payload([ok])), 1)[0].tags == ok.tags
    deep = Document(id="deep", tags={"t": _nested(kind, 200)})
    with pytest.raises(ValueError, match=r"Document 0 \(id 'deep'\), field 'tags'.*deep"):
        encode_payload([deep])
    with pytest.raises(ValueError, match="field 'location'"):
        encode_payload([Document(id="x", location=_nested(list, 200))])


def test_document_nesting_is_bounded_on_write() -> None:
    root = d = Document(id="root")
    for i in range(200):
        c = Document(id=f"c{i}")
        d.chunks.append(c)
        d = c
    with pytest.raises(ValueError, match="field 'chunks'"):
        encode_payload([root])


def test_a_crafted_deeply_nested_file_raises_format_error_not_a_crash() -> None:
    # what load_binary met before: tuples 200 deep made the msgpack ext hook recurse
    # until the C stack overflowed (SIGSEGV); build the payload by hand
    data = None
    for _ in range(200):
        data = msgpack.ExtType(2, msgpack.packb([data]))
    meta = msgpack.packb([{"id": "x", "tags": {"t": data}}])
    payload = len(meta).to_bytes(4, "little") + meta
    with pytest.raises(FormatError, match="nested"):
        decode_payload(bytearray(payload), 1)
    # Documents nested through chunks, 100 levels of msgpack maps
    doc = {"id": "leaf"}
    for i in range(100):
        doc = {"id": f"d{i}", "chunks": [doc]}
    meta = msgpack.packb([doc])
    with pytest.raises(FormatError, match="chunks"):
        decode_payload(bytearray(len(meta).to_bytes(4, "little") + meta), 1)


def _join(encoded) -> bytearray:
    pieces, _size = encoded
    return bytearray(b"".join(bytes(memoryview(p)) for p in pieces))
