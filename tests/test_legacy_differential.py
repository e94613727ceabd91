"""The same operations on docarray 0.21.1 and on docmill, compared result by result.

Every scenario below is a snippet that sets ``result`` to a JSON-able value. It runs
once with ``from docarray import Document, DocumentArray`` in docarray 0.21.1's own
virtualenv (``DOCMILL_LEGACY_PYTHON``, default ``~/legacy/bin/python``; see the
README) and once with ``from docmill import Document, DocumentArray``, each in a
subprocess, and the two results must be equal. An exception is a result too (its
type name). Where docmill deliberately differs (README, "Migrating from docarray
0.21"), the scenario is written so that it compares what both must share.

Without the legacy virtualenv the whole module is skipped, saying so; the ordinary
tests cover each behaviour without docarray.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

LEGACY_PYTHON = os.environ.get(
    "DOCMILL_LEGACY_PYTHON",
    str(Path(os.environ.get("DOCMILL_LEGACY_VENV", Path.home() / "legacy")) / "bin/python"),
)


def _usable(python: str) -> bool:
    if not Path(python).exists():
        return False
    check = subprocess.run([python, "-c", "import docarray, py, pandas"], capture_output=True)
    return check.returncode == 0


if not _usable(LEGACY_PYTHON):
    pytest.skip(
        f"no docarray 0.21.1 virtualenv at {LEGACY_PYTHON} (make one with: python -m venv "
        "~/legacy && ~/legacy/bin/pip install docarray==0.21.1 'numpy<2' 'protobuf<4' "
        "'pydantic<2' lz4 pillow py pandas)",
        allow_module_level=True,
    )

SCENARIOS: dict[str, str] = {
    # 1. the content API
    "content routes by type": """
        result = [(d.content_type, repr(d.content)) for d in
                  (Document(content="hi"), Document(content=b"hi"), Document())]
        result.append((Document(content=np.zeros(2)).content_type,
                       Document(content=np.zeros(2)).content.tolist()))
    """,
    "contents of an array": "result = DocumentArray([Document(text='b'), Document(text='a')]).contents",
    "text and content data URIs": """
        result = [Document(text="hi").convert_text_to_datauri().uri,
                  Document(content="hé llo").convert_content_to_datauri().uri]
    """,
    "blob <-> tensor": """
        raw = np.array([1, 2], dtype=np.float32)
        result = [Document(blob=raw.tobytes()).convert_blob_to_tensor(dtype=np.float32).tensor.tolist(),
                  Document(tensor=raw).convert_tensor_to_blob().blob.hex()]
    """,
    # 2. text / blob / tensor exclude each other; unset reads
    "setting one content clears the others": """
        d = Document(text="hi"); d.tensor = np.zeros(2)
        a = (d.text, d.content_type, list(d.non_empty_fields))
        d.blob = b"x"
        result = [a, (repr(d.tensor), d.text, d.content_type)]
        result.append(Document(text="a", tensor=np.ones(1)).content_type)
        result.append(Document(content="a", text="b").text)
    """,
    "unset text and blob": "result = [repr(Document().text), repr(Document().blob), repr(Document().tensor)]",
    "bulk fields": """
        e = DocumentArray()
        result = [repr(e.texts), repr(e.blobs), repr(e.tensors), repr(e.embeddings),
                  repr(e.contents), DocumentArray([Document(), Document(text="a")]).texts]
    """,
    # 3. the lenient constructor
    "ids that are not str": "result = [str(Document(id=123).id), str(Document(id=1.5).id)]",
    "Document(dict)": """
        result = [Document({"text": "hi", "tags": {"a": 1}}).text,
                  Document({"text": "hi", "foo": 1}).tags]
    """,
    "Document(other) and copy=": """
        d0 = Document(text="x", tags={"a": 1})
        result = [Document(d0) is d0, Document(d0).id == d0.id, Document(d0).tags is d0.tags,
                  Document(d0, copy=True).tags is d0.tags, Document(d0, copy=True) == d0]
    """,
    "unknown keywords go into tags": "result = Document(foo=1, bar='x').tags",
    "DocumentArray(docs, copy=)": """
        docs = [Document()]
        da = DocumentArray(docs)
        result = [da[0] is docs[0], DocumentArray(docs, copy=True)[0] is docs[0],
                  DocumentArray(da)[0] is da[0], DocumentArray(da, copy=True)[0] is da[0]]
    """,
    # 4. Document behaviour
    "non_empty_fields": """
        result = [list(Document(text="a").non_empty_fields),
                  list(Document(weight=0.0, granularity=0, text="", tags={}).non_empty_fields)]
    """,
    "hash": """
        result = [hash(Document(id="a")) == hash(Document(id="a")),
                  hash(Document(id="a", text="x")) == hash(Document(id="a", text="y"))]
    """,
    "pop and clear": """
        d = Document(id="q", text="a", tags={"x": 1})
        d.pop("text")
        a = (d.text, list(d.non_empty_fields))
        d.clear()  # (docarray also clears the id; docmill keeps it: see the README)
        result = [a, d.text, [f for f in d.non_empty_fields if f != "id"]]
    """,
    "own attributes": "d = Document(); d.note = 'mine'; result = d.note",
    "equality": """
        result = [Document(id="a", text="x") == Document(id="a", text="x"),
                  Document(text="x") == Document(text="x"),
                  Document(id="a", text="x") == Document(id="a", text="y"),
                  Document(id="a", weight=0.0) == Document(id="a"),
                  Document(id="a") == Document(id="a", tags={})]
    """,
    # 5. dict / JSON
    "to_dict jsonschema": """
        d = Document(id="a", text="x", tags={"s": "v"}, mime_type="text/plain",
                     chunks=[Document(id="c")])
        result = d.to_dict()
    """,
    "to_dict with blob and tensor": """
        result = [Document(id="a", blob=b"ab").to_dict(),
                  Document(id="a", tensor=np.array([1, 2])).to_dict()["tensor"]]
    """,
    "to_dict protobuf": """
        result = [Document(id="a", text="x", chunks=[Document(id="c")]).to_dict(protocol="protobuf"),
                  Document(id="a", blob=b"ab", mime_type="text/plain").to_dict(protocol="protobuf"),
                  Document(id="a", tensor=np.array([[1.0, 2.0]])).to_dict(protocol="protobuf")]
    """,
    "to_json": """
        result = [json.loads(Document(id="a", text="x").to_json()),
                  json.loads(Document(id="a", text="x").to_json(protocol="protobuf"))]
    """,
    "from_dict and from_json": """
        result = [Document.from_dict({"id": "a", "text": "x"}).text,
                  Document.from_dict({"id": "a", "text": "x"}, protocol="protobuf").text,
                  Document.from_json('{"id": "a", "text": "x"}').text,
                  Document.from_json('{"id": "a", "text": "x", "foo": 3}').tags,
                  Document.from_dict({"id": "a", "foo": 3}).tags,
                  Document.from_dict({"id": "a", "foo": 3}, protocol="schemaless").tags]
    """,
    "array dict and JSON": """
        da = DocumentArray([Document(id="a", text="x")])
        result = [da.to_dict(), da.to_list(), json.loads(da.to_json()),
                  da.to_list(protocol="protobuf"), json.loads(da.to_json(protocol="protobuf")),
                  DocumentArray.from_list([{"id": "a", "text": "x"}])[0].text,
                  DocumentArray.from_dict([{"id": "a", "text": "x"}])[0].text,
                  DocumentArray.from_json('[{"id": "a", "text": "x"}]')[0].text]
    """,
    # 6. protobuf messages
    "to_protobuf and back": """
        d = Document(id="q", text="x", tags={"a": "b"})
        msg = d.to_protobuf()
        da = DocumentArray([d, Document(id="w")])
        result = [type(msg).__name__, msg.SerializeToString().hex(),
                  Document.from_protobuf(msg).id, type(da.to_protobuf()).__name__,
                  [x.id for x in DocumentArray.from_protobuf(da.to_protobuf())]]
    """,
    # 7. path objects
    "py.path and pathlib paths": """
        import py, pathlib
        da = DocumentArray([Document(text="x"), Document(text="y")])
        a = py.path.local(tmp) / "pp.bin"; da.save_binary(a)
        b = pathlib.Path(tmp) / "pl.bin"; da.save_binary(b)
        result = [DocumentArray.load_binary(a).texts, DocumentArray.load_binary(b).texts]
    """,
    # 8. indexing
    "ellipsis, masks, repeats": """
        da = DocumentArray([Document(id=str(i), chunks=[Document(id=f"c{i}")]) for i in range(3)])
        result = [[d.id for d in da[...]], da[..., "id"], [d.id for d in da[[True, False]]],
                  [d.id for d in da[[True, False, True, True]]], [d.id for d in da[[1, 1, -1]]]]
    """,
    "traversal paths": """
        da = DocumentArray(
            Document(id=str(i),
                     chunks=[Document(id=f"c{i}{j}", chunks=[Document(id=f"cc{i}{j}")])
                             for j in range(3)],
                     matches=[Document(id=f"m{i}")])
            for i in range(3))
        result = {p: [d.id for d in da[p]] for p in
                  ["@r", "@c", "@m", "@cm", "@r,c", "@c:1", "@c1:3c", "@r:1cc,m", "@r:2",
                   "@c:1,r", "@cc", "@mc", "@r[1:]"]}
    """,
    "errors for bad keys": """
        da = DocumentArray([Document(id="a"), Document(id="b")])
        result = []
        for key in (1.5, "nope", 99, "@x", object(), ["a", "zz"], [0, 99]):
            try:
                da[key]
                result.append("no error")
            except Exception as e:
                result.append(type(e).__name__)
    """,
    # 9. chunk and match metadata
    "chunk and match metadata": """
        d = Document(id="p", granularity=1, adjacency=2)
        d.chunks.append(Document(id="c")); d.matches.append(Document(id="m"))
        d2 = Document(id="p2", chunks=[Document(id="x")], matches=[Document(id="y")])
        d3 = Document(id="p3"); d3.chunks = [Document(id="z")]
        d4 = Document(id="p4"); d4.chunks.extend([Document(id="z1")]); d4.chunks += [Document(id="z2")]
        result = [(d.chunks[0].parent_id, d.chunks[0].granularity),
                  (d.matches[0].adjacency,),
                  (d2.chunks[0].parent_id, d2.chunks[0].granularity, d2.matches[0].adjacency),
                  (d3.chunks[0].parent_id, d3.chunks[0].granularity),
                  [(c.parent_id, c.granularity) for c in d4.chunks]]
    """,
    # 10. generic storage calls
    "save and load by file_format": """
        da = DocumentArray([Document(id="a", text="x", tags={"k": "1"}),
                            Document(id="b", text="y", tags={"k": "2"})])
        out = []
        for fmt in ("binary", "json", "csv"):
            p = os.path.join(tmp, "x." + fmt)
            da.save(p, file_format=fmt)
            back = DocumentArray.load(p, file_format=fmt)
            out.append([(d.id, d.text, d.tags) for d in back])
        out.append(open(os.path.join(tmp, "x.csv")).read())
        result = out
    """,
    "bytes(da), from_ndarray": """
        da = DocumentArray([Document(text="x")])
        arr = DocumentArray.from_ndarray(np.array([[1, 2], [3, 4]]))
        result = [DocumentArray.from_bytes(bytes(da))[0].text, [d.tensor.tolist() for d in arr],
                  len(DocumentArray.from_ndarray(np.zeros((5, 2)), size=2))]
    """,
    "csv, ndjson and lines": """
        p = os.path.join(tmp, "x.csv")
        with open(p, "w") as f:
            f.write("id,text,colour\\na,hello,red\\nb,bye,blue\\n")
        q = os.path.join(tmp, "n.jsonl")
        with open(q, "w") as f:
            f.write('{"text": "a", "x": 1}\\n{"text": "b"}\\n')
        with open(q) as f:
            nd = [(d.text, d.tags) for d in DocumentArray.from_ndjson(f)]
        result = [[(d.id, d.text, d.tags) for d in DocumentArray.from_csv(p)], nd,
                  [(d.text, d.tags) for d in DocumentArray.from_lines(filepath=q)],
                  [d.text for d in DocumentArray.from_lines(['{"text": "z"}'])]]
    """,
    "to_dataframe": """
        df = DocumentArray([Document(id="a", text="x")]).to_dataframe()
        result = [list(df.columns), df["text"].tolist()]
    """,
    # 11. smaller ones
    "mime types": """
        result = [Document(mime_type=m).mime_type for m in ("jpg", "png", "weird", "text/plain")]
        result.append(Document(uri="a.png").mime_type)
    """,
    "split_by_tag with a missing nested tag": """
        da = DocumentArray([Document(tags={"a": {"b": 1}}), Document(tags={"a": {}}), Document()])
        result = sorted((str(k), len(v)) for k, v in da.split_by_tag("a__b").items())
    """,
    "a bad charset": """
        p = os.path.join(tmp, "t.txt")
        with open(p, "w") as f:
            f.write("hi")
        try:
            Document(uri=p).load_uri_to_text(charset="nope")
            result = "no error"
        except Exception as e:
            result = type(e).__name__
    """,
    "named scores": """
        d = Document()
        d.scores["cosine"] = NamedScore(value=0.5, op_name="cos")
        d.evaluations["p"] = NamedScore(value=1.0)
        result = [d.scores["cosine"].value, d.scores["cosine"].op_name, d.evaluations["p"].value,
                  d.scores["missing"].value, "missing" in d.scores]
    """,
    # 12. in-memory storage arguments
    "storage arguments": """
        da = DocumentArray(storage="memory", config=None)
        with da:
            da.append(Document(id="a"))
        result = [len(da), da[0].id]
    """,
}

_RUNNER = """
import json, os, sys, tempfile, textwrap, traceback, warnings
warnings.simplefilter("ignore")
import numpy as np
if sys.argv[1] == "legacy":
    from docarray import Document, DocumentArray
    from docarray.score import NamedScore
else:
    from docmill import Document, DocumentArray, NamedScore
scenarios = json.loads(sys.stdin.read())
out = {}
for name, code in scenarios.items():
    ns = {"Document": Document, "DocumentArray": DocumentArray, "NamedScore": NamedScore,
          "np": np, "json": json, "os": os, "tmp": tempfile.mkdtemp()}
    try:
        exec(textwrap.dedent(code), ns)
        out[name] = {"result": ns["result"]}
    except Exception as e:
        out[name] = {"raised": type(e).__name__, "message": str(e)[:300],
                     "where": traceback.format_exc()[-600:]}
def default(o):
    if isinstance(o, (tuple, set)):
        return list(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, bytes):
        return o.hex()
    return repr(o)
print("@@RESULTS@@" + json.dumps(out, default=default))
"""


def _run(python: str, which: str) -> dict:
    env = {**os.environ, "PYTHONPATH": "", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(
        [python, "-c", _RUNNER, which],
        input=json.dumps(SCENARIOS),
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    marked = [line for line in proc.stdout.splitlines() if line.startswith("@@RESULTS@@")]
    if proc.returncode or not marked:
        raise RuntimeError(f"the {which} run failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    # a JSON round trip on both sides: tuples and lists compare alike
    return json.loads(marked[-1][len("@@RESULTS@@") :])


@pytest.fixture(scope="module")
def results() -> tuple[dict, dict]:
    return _run(LEGACY_PYTHON, "legacy"), _run(sys.executable, "docmill")


@pytest.mark.timeout(600)
@pytest.mark.parametrize("name", list(SCENARIOS))
def test_docmill_does_what_docarray_0_21_does(results, name) -> None:
    legacy, docmill = results[0][name], results[1][name]
    if "raised" in legacy and "raised" in docmill:
        assert docmill["raised"] == legacy["raised"], (legacy, docmill)
        return
    assert docmill == legacy, (
        f"\nscenario: {textwrap.dedent(SCENARIOS[name])}\nlegacy:  {legacy}\ndocmill: {docmill}"
    )
