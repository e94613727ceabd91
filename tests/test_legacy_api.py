"""The rest of docarray 0.21's Document / DocumentArray API, without docarray: protobuf
messages, path objects, chunk metadata, generic storage calls, tabular formats,
NamedScore and the storage arguments (test_legacy_differential.py compares the
same behaviours with docarray itself)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import py
import pytest

from docmill import Document, DocumentArray, NamedScore


def test_protobuf_messages_of_documents_and_arrays() -> None:
    d = Document(id="q", text="x", tags={"a": "b"}, embedding=np.arange(3.0))
    msg = d.to_protobuf()
    assert type(msg).__name__ == "DocumentProto" and msg.id == "q"
    assert Document.from_protobuf(msg) == d
    da = DocumentArray([d, Document(id="w")])
    pb = da.to_protobuf()
    assert type(pb).__name__ == "DocumentArrayProto" and len(pb.docs) == 2
    assert DocumentArray.from_protobuf(pb) == da
    with pytest.raises(ValueError, match="ndarray_type"):
        d.to_protobuf(ndarray_type="torch")


def test_path_objects_with_a_read_method_are_paths(tmp_path: Path) -> None:
    da = DocumentArray([Document(text="x"), Document(text="y")])
    local = py.path.local(tmp_path) / "pp.bin"  # has .read(): still a path
    da.save_binary(local)
    assert DocumentArray.load_binary(local).texts == ["x", "y"]
    da.save_json(local)  # every saver takes it
    assert DocumentArray.load_json(local).texts == ["x", "y"]


def test_chunks_and_matches_get_their_metadata() -> None:
    d = Document(id="p", granularity=1, adjacency=2)
    d.chunks.append(Document(id="c"))
    d.matches.append(Document(id="m"))
    assert (d.chunks[0].parent_id, d.chunks[0].granularity) == ("p", 2)
    assert d.matches[0].adjacency == 3 and d.matches[0].parent_id == ""
    d2 = Document(id="p2", chunks=[Document(id="x")])
    assert (d2.chunks[0].parent_id, d2.chunks[0].granularity) == ("p2", 1)
    d2.chunks.extend([Document(id="y")])  # extend adds as is, as legacy
    assert d2.chunks[1].parent_id == ""
    back = Document.from_bytes(d.to_bytes())
    assert back.chunks[0].parent_id == "p" and back == d


@pytest.mark.parametrize("fmt", ["binary", "json", "csv"])
def test_save_and_load_by_file_format(tmp_path: Path, fmt: str) -> None:
    da = DocumentArray([Document(id="a", text="x", tags={"k": "1"}),
                        Document(id="b", text="y")])  # fmt: skip
    path = tmp_path / f"x.{fmt}"
    da.save(path, file_format=fmt)
    back = DocumentArray.load(path, file_format=fmt)
    assert [(d.id, d.text) for d in back] == [("a", "x"), ("b", "y")]
    if fmt == "csv":  # CSV holds strings; tags are flattened into tag__ columns
        assert path.read_text().splitlines()[0] == "id,text,tag__k"
        assert back[0].tags == {"tag__k": "1"}
    else:
        assert back == da
    with pytest.raises(ValueError, match="'binary', 'json' or 'csv'"):
        da.save(path, file_format="xml")


def test_csv_ndjson_lines_ndarray_and_dataframes(tmp_path: Path) -> None:
    csv_path = tmp_path / "x.csv"
    csv_path.write_text("id,text,colour\na,hello,red\nb,bye,blue\n")
    rows = DocumentArray.from_csv(csv_path)
    assert [(d.id, d.text, d.tags) for d in rows] == [
        ("a", "hello", {"colour": "red"}), ("b", "bye", {"colour": "blue"})
    ]  # fmt: skip
    assert len(DocumentArray.from_csv(csv_path, size=1)) == 1
    lines = ['{"text": "a", "x": 1}', '{"text": "b"}']
    assert [(d.text, d.tags) for d in DocumentArray.from_ndjson(lines)] == [
        ("a", {"x": 1}), ("b", {})
    ]  # fmt: skip
    jl = tmp_path / "n.jsonl"
    jl.write_text("\n".join(lines) + "\n")
    assert DocumentArray.from_lines(filepath=jl).texts == ["a", "b"]
    txt = tmp_path / "plain.txt"
    txt.write_text("one\ntwo\n")
    assert DocumentArray.from_lines(filepath=txt).texts == ["one", "two"]
    with pytest.raises(ValueError, match="lines= or filepath="):
        DocumentArray.from_lines()
    arr = DocumentArray.from_ndarray(np.array([[1, 2], [3, 4]]))
    assert [d.tensor.tolist() for d in arr] == [[1, 2], [3, 4]]
    assert len(DocumentArray.from_ndarray(np.zeros((5, 2)), size=2)) == 2
    assert [d.tensor.tolist() for d in DocumentArray.from_ndarray(np.eye(2), axis=1)] == [
        [1.0, 0.0], [0.0, 1.0]
    ]  # fmt: skip
    df = DocumentArray([Document(id="a", text="x"), Document(id="b", text="y")]).to_dataframe()
    assert list(df.columns)[:3] == ["id", "parent_id", "granularity"]
    assert DocumentArray.from_dataframe(df).texts == ["x", "y"]
    out = io.StringIO()
    rows.save_csv(out, with_header=False)
    assert out.getvalue().splitlines()[0] == "a,hello,red"


def test_bytes_of_an_array_and_json_of_a_document() -> None:
    da = DocumentArray([Document(text="x")])
    assert DocumentArray.from_bytes(bytes(da)) == da
    assert json.loads(da.to_json())[0]["text"] == "x"
    assert Document.from_bytes(bytes(da[0])) == da[0]


def test_named_scores() -> None:
    d = Document(scores={"cosine": {"value": 0.5}}, evaluations={"p": 1.0})
    assert d.scores["cosine"].value == 0.5 and isinstance(d.scores["cosine"], NamedScore)
    assert d.evaluations["p"].value == 1.0 and d.evaluations["p"].op_name == ""
    assert d.scores["missing"].value == 0.0 and "missing" in d.scores  # kept, as legacy
    d.scores["c"] = NamedScore(value=0.3, op_name="cos", ref_id="r")
    d.scores["c"].value = 0.4
    assert d.scores["c"] == {"value": 0.4, "op_name": "cos", "ref_id": "r"}
    assert Document.from_bytes(d.to_bytes()) == d
    with pytest.raises(TypeError, match="takes value, op_name"):
        NamedScore(colour=1)
    with pytest.raises(AttributeError):
        NamedScore().colour = 1


def test_copy_and_storage_arguments() -> None:
    docs = [Document(text="x")]
    assert DocumentArray(docs)[0] is docs[0]
    copied = DocumentArray(docs, copy=True)
    assert copied[0] is not docs[0] and copied[0] == docs[0]
    da = DocumentArray(storage="memory", config=None)
    with da as same:
        same.append(Document(id="a"))
    assert same is da and len(da) == 1
    with pytest.raises(ValueError, match=r"keeps DocumentArrays in memory.*save_binary"):
        DocumentArray(storage="sqlite")
    with pytest.raises(ValueError, match="config="):
        DocumentArray(config={"n_dim": 3})
