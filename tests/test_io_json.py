"""Documents as dicts and JSON (the legacy 'jsonschema' shape)."""

from __future__ import annotations

import io
import json
import uuid
from pathlib import Path

import numpy as np
import pytest

from docmill import Document, DocumentArray, FormatError


def _doc() -> Document:
    return Document(
        id="j",
        text="hé",
        blob=b"\x00\xff",
        tensor=np.arange(6).reshape(2, 3),
        embedding=np.array([0.5, 1.5]),
        tags={"a": [1, None], "t": (1, 2), "np": np.int64(3), "arr": np.arange(2)},
        weight=0.5,
        scores={"s": {"value": 1.0}},
        chunks=[Document(id="c", text="chunk")],
    )


def test_to_dict_holds_set_fields_as_json_values() -> None:
    d = _doc().to_dict()
    assert d["id"] == "j" and "uri" not in d and "matches" not in d
    assert d["tensor"] == [[0, 1, 2], [3, 4, 5]]
    assert d["blob"] == "AP8="
    assert d["tags"] == {"a": [1, None], "t": [1, 2], "np": 3, "arr": [0, 1]}
    assert d["chunks"] == [{"id": "c", "text": "chunk"}]
    json.dumps(d)  # plain JSON types only


def test_round_trip() -> None:
    d = _doc()
    d.tags = {"a": [1, None]}  # tuples and numpy values come back as lists/numbers
    for out in (Document.from_dict(d.to_dict()), Document.from_json(d.to_json())):
        assert out == d
        assert out.tensor.dtype == np.int64 and out.blob == b"\x00\xff"
    da = DocumentArray([d, Document(id="e")])
    assert DocumentArray.from_json(da.to_json()) == da
    assert DocumentArray.from_list(da.to_list()) == da


def test_unknown_fields_and_bad_values() -> None:
    with pytest.raises(ValueError, match=r"unknown Document field.*'colour'; fields are: id"):
        Document.from_dict({"id": "x", "colour": "red"})
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
    assert json.loads(path.read_text())[0] == {"id": "a", "text": "x"}
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
