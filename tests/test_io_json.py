"""Documents as dicts and JSON (legacy's 'jsonschema' and 'protobuf' shapes)."""

from __future__ import annotations

import io
import json
import uuid
from pathlib import Path

import numpy as np
import pytest

from docmill import Document, DocumentArray, FormatError
from docmill.document import FIELDS


def _doc() -> Document:
    return Document(
        id="j",
        tensor=np.arange(6).reshape(2, 3),
        embedding=np.array([0.5, 1.5]),
        tags={"a": [1, None], "t": (1, 2), "np": np.int64(3), "arr": np.arange(2)},
        weight=0.5,
        scores={"s": {"value": 1.0}},
        chunks=[Document(id="c", text="chunk")],
    )


def test_to_dict_holds_every_field_as_json_values() -> None:
    d = _doc().to_dict()
    assert list(d) == list(FIELDS)  # every field, in legacy order
    assert d["id"] == "j" and d["uri"] is None and d["matches"] is None
    assert d["tensor"] == [[0, 1, 2], [3, 4, 5]]
    assert d["tags"] == {"a": [1, None], "t": [1, 2], "np": 3, "arr": [0, 1]}
    assert d["chunks"][0]["id"] == "c" and d["chunks"][0]["text"] == "chunk"
    assert d["chunks"][0]["parent_id"] == "j" and d["chunks"][0]["granularity"] == 1
    assert Document(id="b", blob=b"\x00\xff").to_dict()["blob"] == "AP8="
    assert _doc().to_dict(exclude_none=True)["chunks"][0] == {
        "id": "c", "parent_id": "j", "granularity": 1, "text": "chunk"
    }  # fmt: skip
    assert Document(id="a").to_dict(include={"id", "text"}) == {"id": "a", "text": None}
    json.dumps(d)  # plain JSON types only
    with pytest.raises(TypeError, match="exclude_none, include, exclude"):
        Document().to_dict(by_alias=True)
    with pytest.raises(ValueError, match="'jsonschema' or 'protobuf'"):
        Document().to_dict(protocol="yaml")


def test_the_protobuf_shape_is_json_formats() -> None:
    d = Document(id="a", blob=b"ab", mime_type="text/plain")
    assert d.to_dict(protocol="protobuf") == {"id": "a", "blob": "YWI=", "mimeType": "text/plain"}
    assert json.loads(d.to_json(protocol="protobuf")) == d.to_dict(protocol="protobuf")
    t = Document(id="t", tensor=np.array([[1.0, 2.0]]))
    back = Document.from_dict(t.to_dict(protocol="protobuf"), protocol="protobuf")
    assert back == t and back.tensor.dtype == np.float64
    assert Document.from_json(t.to_json(protocol="protobuf"), protocol="protobuf") == t


def test_round_trip() -> None:
    d = _doc()
    d.tags = {"a": [1, None]}  # tuples and numpy values come back as lists/numbers
    for out in (Document.from_dict(d.to_dict()), Document.from_json(d.to_json())):
        assert out == d
        assert out.tensor.dtype == np.int64
    da = DocumentArray([d, Document(id="e")])
    assert DocumentArray.from_json(da.to_json()) == da
    assert DocumentArray.from_list(da.to_list()) == da


def test_unknown_fields_and_bad_values() -> None:
    # as legacy: the jsonschema form ignores keys that are not fields, the schemaless
    # form (any other protocol) keeps them in tags
    assert Document.from_dict({"id": "x", "colour": "red"}).tags == {}
    assert Document.from_dict({"id": "x", "colour": "red"}, protocol=None).tags == {"colour": "red"}
    assert Document.from_json('{"id": "x", "c": 1}', protocol="schemaless").tags == {"c": 1}
    with pytest.raises(ValueError, match="field 'blob' is not base64"):
        Document.from_dict({"blob": "not base64!"})
    with pytest.raises(TypeError, match=r"Document 'x', field 'tags': a set has no JSON form"):
        Document(id="x", tags={"s": {1}}).to_json()
    with pytest.raises(FormatError, match="not valid JSON at offset 10"):
        Document.from_json('{"id": "x"')
    with pytest.raises(FormatError, match="expected a JSON array of Documents, found a dict"):
        DocumentArray.from_json("{}")
    with pytest.raises(FormatError, match="expected a JSON object for a Document, found a list"):
        Document.from_json("[]")


def test_save_and_load_json(tmp_path: Path) -> None:
    da = DocumentArray([Document(id="a", text="x"), Document(id="b", embedding=np.ones(2))])
    path = tmp_path / "da.json"
    da.save_json(path)
    assert json.loads(path.read_text())[0] == Document(id="a", text="x").to_dict()
    assert DocumentArray.load_json(path) == da
    text = io.StringIO()
    da.save_json(text)
    assert DocumentArray.load_json(io.StringIO(text.getvalue())) == da
    binary = io.BytesIO()
    da.save_json(binary)
    assert DocumentArray.load_json(io.BytesIO(binary.getvalue())) == da
    url = f"memory://json-{uuid.uuid4().hex}/da.json"
    da.save_json(url)
    assert DocumentArray.load_json(url) == da
