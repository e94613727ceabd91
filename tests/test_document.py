"""docmill.document: the Document model and its image/uri methods (end to end)."""

from __future__ import annotations

import base64
import copy
import io
import pickle
import urllib.parse
import uuid

import numpy as np
import pytest
from PIL import Image

from docmill import Document, DocumentArray
from docmill import uri as dm_uri
from docmill.document import FIELDS

RNG = np.random.default_rng(7)
RGB = RNG.integers(0, 256, (10, 14, 3), dtype=np.uint8)
MEAN = np.array([0.485, 0.456, 0.406])
STD = np.array([0.229, 0.224, 0.225])


def foo(d):
    """The seed page's function, unchanged."""
    return (
        d.load_uri_to_image_tensor()
        .set_image_tensor_normalization()
        .set_image_tensor_channel_axis(-1, 0)
    )


def _save(arr: np.ndarray, path, fmt: str = "PNG", **kw):
    Image.fromarray(arr).save(path, fmt, **kw)
    return str(path)


def _chw_reference(u8_hwc: np.ndarray) -> np.ndarray:
    """The seed's normalization computed here in float64: (x / 255 - mean) / std, C x H x W."""
    return np.moveaxis((u8_hwc / 255.0 - MEAN) / STD, -1, 0)


# ---------------------------------------------------------------------- the model
def test_defaults():
    d = Document()
    assert uuid.UUID(hex=d.id).version == 4 and len(d.id) == 32 and d.id == d.id.lower()
    assert Document().id != d.id
    legacy_reads = {"parent_id": "", "granularity": 0, "adjacency": 0, "blob": b"",
                    "mime_type": "", "text": "", "weight": 0.0, "uri": "", "offset": 0.0,
                    "location": [], "modality": ""}  # fmt: skip
    for f in FIELDS:
        if f in ("id", "tags", "evaluations", "scores", "chunks", "matches"):
            continue
        assert getattr(d, f) == legacy_reads.get(f), f  # tensor, embedding: None
    assert d.tags == {} and d.evaluations == {} and d.scores == {}
    assert isinstance(d.chunks, DocumentArray) and len(d.chunks) == 0
    assert isinstance(d.matches, DocumentArray) and len(d.matches) == 0
    assert d.non_empty_fields == ("id",)


VALUES = {
    "id": "abc123",
    "parent_id": "parent",
    "granularity": 2,
    "adjacency": 1,
    "blob": b"\x00\x01",
    "tensor": np.arange(6).reshape(2, 3),
    "mime_type": "text/plain",
    "text": "hello",
    "weight": 0.5,
    "uri": "a/b.txt",
    "tags": {"k": [1, 2]},
    "offset": 3.0,
    "location": [1.0, 2.0],
    "embedding": np.ones(4, np.float32),
    "modality": "text",
    "evaluations": {"precision": {"value": 0.9}},
    "scores": {"cosine": {"value": 0.1}},
    "chunks": [Document(text="c")],
    "matches": [Document(text="m")],
}


def test_values_cover_every_field():
    assert set(VALUES) == set(FIELDS)


@pytest.mark.parametrize("field", FIELDS)
def test_every_field_settable_via_constructor(field):
    d = Document(**{field: VALUES[field]})
    got = getattr(d, field)
    if field in ("chunks", "matches"):
        assert isinstance(got, DocumentArray)
        assert [c.text for c in got] == [c.text for c in VALUES[field]]
    elif isinstance(got, np.ndarray):
        assert got is VALUES[field]
    else:
        assert got == VALUES[field]
    assert field in d.non_empty_fields


def test_a_lenient_constructor_as_legacy():
    assert Document(colour="red", n=1).tags == {"colour": "red", "n": 1}  # unknown -> tags
    assert Document(colour="red", unknown_fields_handler="drop").tags == {}
    with pytest.raises(AttributeError, match="'colour'"):
        Document(colour="red", unknown_fields_handler="raise")
    assert Document({"text": "hi", "n": 1}).tags == {"n": 1}
    assert Document('{"id": "j", "text": "hi"}').text == "hi"
    assert Document({"txt": "hi"}, field_resolver={"txt": "text"}).text == "hi"
    assert Document(id=5).id == "5" and Document(id=1.5).id == "1.5"  # ids are str
    with pytest.raises(TypeError, match="tags must be a dict"):
        Document(tags=[1])
    with pytest.raises(TypeError, match="cannot build a Document from a list"):
        Document([1])
    with pytest.raises(ValueError, match="JSON object"):
        Document("not json")
    original = Document(id="o", text="x", tags={"a": 1})
    shared, copied = Document(original), Document(original, copy=True)
    assert shared is not original and shared == original and copied == original
    assert shared.tags is original.tags and copied.tags is not original.tags
    assert Document(original, text="y").text == "y" and original.text == "x"


def test_text_blob_and_tensor_exclude_each_other():
    d = Document(text="a")
    assert (d.content, d.content_type) == ("a", "text")
    d.tensor = np.zeros(2)
    assert d.text == "" and d.content_type == "tensor" and d.non_empty_fields == ("id", "tensor")
    d.blob = b"x"
    assert d.tensor is None and d.content == b"x" and d.content_type == "blob"
    d.content = "back"
    assert d.blob == b"" and d.text == "back"
    assert Document(content=b"b").blob == b"b" and Document(content=[1, 2]).tensor == [1, 2]
    assert Document(text="a", tensor=np.ones(1)).content_type == "tensor"  # the last one wins
    assert Document().content is None and Document().content_type is None


def test_pop_clear_hash_and_attributes():
    d = Document(id="q", text="a", tags={"x": 1}, weight=0.5)
    d.pop("text", "weight")
    assert d.non_empty_fields == ("id", "tags")
    d.clear()
    assert d.non_empty_fields == ("id",) and d.id == "q"
    assert hash(Document(id="a", text="x")) == hash(Document(id="a", text="x"))
    assert len({Document(id="a"), Document(id="a"), Document(id="b")}) == 2
    d.my_note = "legacy code sets its own attributes"
    assert d.my_note.startswith("legacy")
    assert Document(weight=0.0, granularity=0, text="").non_empty_fields == ("id",)


def test_mime_types_and_legacy_converters():
    assert Document(mime_type="jpg").mime_type == "image/jpeg"
    assert Document(mime_type="weird").mime_type == "weird"
    assert Document(uri="a.png").mime_type == "image/png"
    assert Document(text="hi").convert_text_to_datauri().uri == "data:;charset=utf-8,hi"
    assert Document(content="hi").convert_content_to_datauri().uri == "data:;charset=utf-8,hi"
    raw = np.array([1, 2], dtype=np.float32)
    assert Document(tensor=raw).convert_tensor_to_blob().blob == raw.tobytes()
    back = Document(blob=raw.tobytes()).convert_blob_to_tensor(dtype=np.float32).tensor
    np.testing.assert_array_equal(back, raw)


def test_repr_is_short_and_readable():
    d = Document(id="x1", text="t" * 500, embedding=np.zeros((3, 224, 224), np.float32))
    r = repr(d)
    assert r.startswith("<Document id='x1'") and r.endswith(">")
    assert "embedding=ndarray(3, 224, 224):float32" in r
    assert "text='ttt" in r and "..." in r
    assert len(r) < 160
    assert "blob" not in r and "uri" not in r


def test_summary_prints_set_fields(capsys):
    d = Document(id="s1", text="hi", tags={"a": 1}, embedding=RGB)
    d.chunks.append(Document())
    assert d.summary() is None
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "Document s1"
    for word in ("text", "'hi'", "tags", "embedding", "ndarray(10, 14, 3):uint8", "chunks"):
        assert word in out
    for unset in ("blob", "uri", "tensor", "matches"):
        assert unset not in out


def test_equality():
    a = Document(id="e", text="x", embedding=RGB.copy(), tags={"k": 1})
    b = Document(id="e", text="x", embedding=RGB.copy(), tags={"k": 1})
    assert a == b and hash(a) == hash(b)
    assert a != Document(id="e", text="y", embedding=RGB.copy(), tags={"k": 1})
    assert a != Document(id="other", text="x", embedding=RGB.copy(), tags={"k": 1})
    assert a != Document(id="e", text="x", embedding=RGB.astype(np.float32), tags={"k": 1})
    assert Document(id="z") == Document(id="z", tags={})  # empty container == not set
    assert Document(id="z") == Document(id="z", weight=0.0)  # legacy's empty values
    assert Document(id="t", tensor=np.zeros(1)) != Document(id="t", tensor=np.ones(1))
    assert a != "not a document"


def test_pickle_round_trip():
    d = Document(text="p", tensor=RGB, tags={"n": [1, 2]}, embedding=np.arange(3.0))
    d.chunks.append(Document(text="child"))
    back = pickle.loads(pickle.dumps(d))
    assert back == d and back is not d
    assert back.chunks[0].text == "child"
    np.testing.assert_array_equal(back.tensor, RGB)


def test_deepcopy_is_independent():
    d = Document(text="p", tensor=RGB.copy(), tags={"n": [1]})
    d.chunks.append(Document(text="c"))
    c = copy.deepcopy(d)
    assert c == d
    c.tensor[0, 0, 0] ^= 0xFF
    c.tags["n"].append(2)
    c.chunks.append(Document())
    assert d.tensor[0, 0, 0] == RGB[0, 0, 0]
    assert d.tags == {"n": [1]} and len(d.chunks) == 1
    assert d.copy() == d and d.copy() is not d


def test_chunks_and_matches_are_document_arrays():
    d = Document(chunks=[Document(id="c1"), Document(id="c2")])
    assert isinstance(d.chunks, DocumentArray) and len(d.chunks) == 2
    assert [c.id for c in d.chunks] == ["c1", "c2"]
    d.matches.append(Document(id="m1"))
    assert [m.id for m in d.matches] == ["m1"]
    d.chunks = DocumentArray([Document(id="c3")])
    assert [c.id for c in d.chunks] == ["c3"]


# ---------------------------------------------------------------------- image methods
def test_seed_foo_on_png(tmp_path):
    d = Document(uri=_save(RGB, tmp_path / "a.png"))
    assert foo(d) is d
    assert d.tensor.dtype == np.float32 and d.tensor.shape == (3, 10, 14)
    np.testing.assert_allclose(d.tensor, _chw_reference(RGB), rtol=1e-5, atol=2e-6)


def test_seed_foo_on_jpeg_and_datauri(tmp_path):
    y, x = np.mgrid[0:30, 0:40]
    arr = np.stack([x * 6, y * 8, (x + y) * 3], -1).astype(np.uint8)
    path = _save(arr, tmp_path / "a.jpg", "JPEG")
    with Image.open(path) as im:
        decoded = np.array(im.convert("RGB"))
    for uri in (path, dm_uri.uri_to_datauri(path, base64=True)):
        d = foo(Document(uri=uri))
        assert d.tensor.dtype == np.float32 and d.tensor.shape == (3, 30, 40)
        np.testing.assert_allclose(d.tensor, _chw_reference(decoded), rtol=1e-5, atol=2e-6)


def test_every_method_returns_self_so_calls_chain(tmp_path):
    path = _save(RGB, tmp_path / "a.png")
    d = Document(uri=path)
    assert d.load_uri_to_blob().convert_blob_to_image_tensor() is d  # (the tensor clears the blob)
    chained = (
        d.set_image_tensor_normalization()
        .set_image_tensor_inv_normalization()
        .set_image_tensor_channel_axis(-1, 0)
        .set_image_tensor_shape((5, 7), channel_axis=0)
        .set_image_tensor_resample(2, channel_axis=0)
        .set_image_tensor_channel_axis(0, -1)
        .save_image_tensor_to_file(tmp_path / "out.png")
        .convert_image_tensor_to_uri()
        .convert_uri_to_datauri()
        .load_uri_to_image_tensor()
    )
    assert chained is d
    assert d.tensor.shape == (10, 14, 3)
    rows, cols = [1, 3, 5, 7, 9], [1, 3, 5, 7, 9, 11, 13]  # nearest-neighbour centres
    np.testing.assert_array_equal(d.tensor, RGB[rows][:, cols].repeat(2, 0).repeat(2, 1))


def test_load_uri_to_image_tensor_options(tmp_path):
    path = _save(RGB, tmp_path / "a.png")
    d = Document(uri=path).load_uri_to_image_tensor(width=7, height=5, channel_axis=0)
    with Image.open(path) as im:
        want = np.array(im.resize((7, 5), Image.Resampling.BICUBIC))
    np.testing.assert_array_equal(d.tensor, np.moveaxis(want, -1, 0))
    assert Document(uri=path).load_uri_to_image_tensor(width=20).tensor.shape == (10, 20, 3)


def test_load_uri_to_image_tensor_multi_frame_fills_chunks(tmp_path):
    frames = [np.full((4, 5, 3), v, np.uint8) for v in (10, 200)]
    path = tmp_path / "anim.gif"
    imgs = [Image.fromarray(f) for f in frames]
    imgs[0].save(path, save_all=True, append_images=imgs[1:], duration=10)
    d = Document(uri=str(path)).load_uri_to_image_tensor()
    assert d.tensor is None and len(d.chunks) == 2
    for c, f in zip(d.chunks, frames, strict=True):
        np.testing.assert_array_equal(c.tensor, f)
        assert c.parent_id == d.id and c.granularity == 1


def test_normalization_round_trip_and_custom_values():
    d = Document(tensor=np.moveaxis(RGB, -1, 0).copy())
    d.set_image_tensor_normalization(channel_axis=0, img_mean=(0.5,) * 3, img_std=(0.5,) * 3)
    np.testing.assert_allclose(d.tensor, np.moveaxis(RGB / 127.5 - 1, -1, 0), atol=2e-6)
    d.set_image_tensor_inv_normalization(channel_axis=0, img_mean=(0.5,) * 3, img_std=(0.5,) * 3)
    np.testing.assert_array_equal(d.tensor, np.moveaxis(RGB, -1, 0))


def test_channel_axis_move_is_a_view():
    d = Document(tensor=RGB.copy())
    before = d.tensor
    d.set_image_tensor_channel_axis(-1, 0)
    assert d.tensor.shape == (3, 10, 14) and np.shares_memory(d.tensor, before)


def test_save_image_tensor_to_file(tmp_path):
    d = Document(tensor=np.moveaxis(RGB, -1, 0))
    d.save_image_tensor_to_file(str(tmp_path / "x.png"), channel_axis=0)
    with Image.open(tmp_path / "x.png") as im:
        np.testing.assert_array_equal(np.array(im), RGB)
    buf = io.BytesIO()
    Document(tensor=RGB).save_image_tensor_to_file(buf, image_format="jpeg")
    assert buf.getvalue()[:3] == b"\xff\xd8\xff"


def test_blob_text_and_mime_type(tmp_path):
    png = _save(RGB, tmp_path / "a.png")
    d = Document(uri=png).load_uri_to_blob()
    assert d.blob == (tmp_path / "a.png").read_bytes() and d.mime_type == "image/png"
    blob = d.blob
    np.testing.assert_array_equal(d.convert_blob_to_image_tensor().tensor, RGB)
    assert d.blob == b""  # tensor, text and blob exclude each other, as in legacy
    small = Document(blob=blob).convert_blob_to_image_tensor(width=7, height=5)
    assert small.tensor.shape == (5, 7, 3)
    raw = tmp_path / "noext"
    raw.write_bytes(blob)
    assert Document(uri=str(raw)).load_uri_to_blob().mime_type == "image/png"  # sniffed
    assert Document(uri=png, mime_type="x/y").load_uri_to_blob().mime_type == "x/y"  # kept
    txt = tmp_path / "t.md"
    txt.write_text("héllo", encoding="utf-8")
    t = Document(uri=str(txt)).load_uri_to_text()
    assert t.text == "héllo" and t.mime_type == "text/markdown"
    assert Document(uri=str(txt)).load_uri_to_text(charset="latin-1").text == "hÃ©llo"


def test_convert_image_tensor_to_uri_and_blob():
    d = Document(tensor=RGB).convert_image_tensor_to_uri()
    assert d.uri.startswith("data:image/png;base64,") and d.mime_type == "image/png"
    png = base64.b64decode(d.uri.split(",", 1)[1])
    with Image.open(io.BytesIO(png)) as im:
        np.testing.assert_array_equal(np.array(im), RGB)
    j = Document(tensor=RGB).convert_image_tensor_to_uri(image_format="jpeg")
    assert j.uri.startswith("data:image/jpeg;base64,") and j.mime_type == "image/jpeg"
    b = Document(tensor=RGB).convert_image_tensor_to_blob(image_format="jpg")
    assert b.blob[:3] == b"\xff\xd8\xff" and b.mime_type == "image/jpeg"


def test_convert_uri_to_datauri(tmp_path):
    txt = tmp_path / "t.txt"
    txt.write_bytes("a b/é".encode())
    d = Document(uri=str(txt)).convert_uri_to_datauri()
    assert d.uri == "data:text/plain;charset=utf-8," + urllib.parse.quote_from_bytes(
        txt.read_bytes()
    )
    assert d.mime_type == "text/plain"
    d64 = Document(uri=str(txt)).convert_uri_to_datauri(base64=True)
    assert (
        d64.uri
        == "data:text/plain;charset=utf-8;base64," + base64.b64encode(txt.read_bytes()).decode()
    )
    same = d64.uri
    assert d64.convert_uri_to_datauri().uri == same  # already a data URI
    d = Document(uri=str(txt), mime_type="text/csv").convert_uri_to_datauri(charset="latin-1")
    assert d.uri.startswith("data:text/csv;charset=latin-1,")


def test_convert_blob_to_datauri():
    d = Document(blob=b"\x00ab", mime_type="application/x-thing").convert_blob_to_datauri(
        base64=True
    )
    assert d.uri == "data:application/x-thing;charset=utf-8;base64,AGFi"
    with pytest.raises(ValueError, match="has no mime_type"):
        Document(blob=b"x").convert_blob_to_datauri()


@pytest.mark.parametrize(
    ("method", "field"),
    [
        ("load_uri_to_image_tensor", "uri"),
        ("load_uri_to_blob", "uri"),
        ("load_uri_to_text", "uri"),
        ("convert_uri_to_datauri", "uri"),
        ("convert_blob_to_image_tensor", "blob"),
        ("set_image_tensor_normalization", "tensor"),
        ("set_image_tensor_inv_normalization", "tensor"),
        ("convert_image_tensor_to_uri", "tensor"),
    ],
)
def test_missing_input_field_names_document_and_field(method, field):
    d = Document(id="doc-7")
    with pytest.raises(ValueError, match=f"Document doc-7 has no {field}"):
        getattr(d, method)()


def test_bad_inputs_surface_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"missing\.jpg"):
        Document(uri=str(tmp_path / "missing.jpg")).load_uri_to_image_tensor()
    notes = tmp_path / "notes.jpg"
    notes.write_text("not really a jpeg")
    with pytest.raises(ValueError, match=r"notes\.jpg.*found text"):
        Document(uri=str(notes)).load_uri_to_image_tensor()
    with pytest.raises(ValueError, match=r"shape \(10, 14\)"):
        Document(tensor=RGB[..., 0]).set_image_tensor_normalization()
    with pytest.raises(ValueError, match=r"shape \(10, 14, 3\) has 10 channels"):
        Document(tensor=RGB).set_image_tensor_normalization(channel_axis=0)


def test_shallow_copies_share_values_and_leave_the_originals_alone():
    from docmill.document import shallow_copies

    docs = [Document(id=f"d{i}", tensor=np.arange(3), tags={"k": i}) for i in range(3)]
    copies = shallow_copies(docs)
    assert [c.id for c in copies] == ["d0", "d1", "d2"]
    assert all(c is not d and c.tensor is d.tensor for c, d in zip(copies, docs, strict=True))
    copies[0].tensor = np.zeros(2)
    copies[1].id = "changed"
    assert docs[0].tensor.tolist() == [0, 1, 2] and docs[1].id == "d1"
    assert copies[2].tags is docs[2].tags  # (shallow)
