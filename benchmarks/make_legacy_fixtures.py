"""Write the small docarray 0.21.1 files that tests/test_io_protobuf.py loads.

Run with the legacy virtualenv (it imports docarray, never docmill)::

    ~/legacy/bin/python benchmarks/make_legacy_fixtures.py [tests/fixtures/legacy]

Writes, into the target folder:

- ``docs.protobuf[.<compress>]`` — ``DocumentArray.save_binary(protocol='protobuf')``
  with no compression and with lz4, gzip, bz2, lzma and zlib;
- ``docs.protobuf-array[.<compress>]`` — ``protocol='protobuf-array'`` with none,
  lz4, gzip and zlib (which docarray 0.21 silently leaves uncompressed);
- ``doc0.protobuf.lz4`` — one ``Document.to_bytes(protocol='protobuf', compress='lz4')``;
- ``expected.json`` — what the files hold, decoded by docarray's own readers, in
  a plain JSON form (ndarrays as ``{"dtype", "shape", "data"}``, bytes as base64);
- ``docarray_descriptor.bin`` — docarray's serialized ``docarray.proto``
  descriptor, to check docmill's schema against.

The Documents are deterministic (fixed ids and random seed); the bytes may
differ between runs only where docarray's output does (protobuf map order,
gzip timestamps).
"""

from __future__ import annotations

import base64
import json
import os
import sys

import numpy as np
from docarray import Document, DocumentArray


def build() -> DocumentArray:
    rng = np.random.default_rng(0)
    text = Document(
        id="text",
        text="hello, docmill",
        tags={"nested": {"a": [1, "x", None, True]}, "n": 3, "f": 0.25, "s": "v", "b": False},
        weight=0.5,
        uri="https://example.com/doc.txt",
        mime_type="text/plain",
        modality="text",
        granularity=1,
        adjacency=2,
        parent_id="root",
        offset=3.0,
        location=[1.0, 2.5],
    )
    tensor = Document(
        id="tensor",
        tensor=rng.random((2, 3, 4), dtype=np.float32),
        embedding=rng.random(8),
        tags={"kind": "tensor"},
    )
    image = Document(id="image", tensor=rng.integers(0, 255, (4, 4, 3), dtype=np.uint8))
    blob = Document(id="blob", blob=bytes(range(256)) * 3, embedding=np.arange(5, dtype=np.int64))
    nested = Document(id="nested", text="with chunks and matches")
    nested.chunks.extend(
        Document(id=f"chunk{i}", text=f"chunk {i}", embedding=rng.random(4, dtype=np.float32))
        for i in range(3)
    )
    for i in range(2):
        m = Document(id=f"match{i}", text=f"match {i}")
        m.scores["cosine"].value = 0.75 - i / 4
        m.scores["cosine"].op_name = "cosine"
        m.evaluations["precision"].value = 1.0
        nested.matches.append(m)
    nested.chunks[0].chunks.append(Document(id="grandchild", text="deeper"))
    bare = Document(id="bare")
    return DocumentArray([text, tensor, image, blob, nested, bare])


def plain(value: object) -> object:
    """A JSON form of what docarray holds."""
    if isinstance(value, np.ndarray):
        return {"dtype": value.dtype.str, "shape": list(value.shape), "data": value.tolist()}
    if isinstance(value, bytes):
        return {"base64": base64.b64encode(value).decode()}
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def describe(msg: object) -> dict:
    """What a ``DocumentProto`` holds, decoded with docarray's own readers.

    This is the content of the file, before docarray's ``Document`` adds its
    defaults (e.g. ``parent_id`` and ``granularity`` on chunks) when loading.
    """
    from docarray.proto.io.ndarray import read_ndarray
    from google.protobuf.json_format import MessageToDict

    out: dict = {}
    for field, value in msg.ListFields():
        name = field.name
        if name in ("chunks", "matches"):
            out[name] = [describe(m) for m in value]
        elif name in ("tensor", "embedding"):
            out[name] = plain(read_ndarray(value))
        elif name == "tags":
            out[name] = MessageToDict(value, preserving_proto_field_name=True)
        elif name in ("scores", "evaluations"):
            out[name] = {k: {f.name: v for f, v in s.ListFields()} for k, s in value.items()}
        elif name == "location":
            out[name] = list(value)
        else:
            out[name] = plain(value)
    return out


def main(folder: str) -> None:
    os.makedirs(folder, exist_ok=True)
    da = build()
    for compress in (None, "lz4", "gzip", "bz2", "lzma", "zlib"):
        name = "docs.protobuf" + (f".{compress}" if compress else "")
        # the suffixes name protocol and compression, as docarray 0.21 reads them too
        da.save_binary(os.path.join(folder, name), protocol="protobuf", compress=compress)
    for compress in (None, "lz4", "gzip", "zlib"):
        name = "docs.protobuf-array" + (f".{compress}" if compress else "")
        da.save_binary(os.path.join(folder, name), protocol="protobuf-array", compress=compress)
    with open(os.path.join(folder, "doc0.protobuf.lz4"), "wb") as f:
        f.write(da[0].to_bytes(protocol="protobuf", compress="lz4"))
    with open(os.path.join(folder, "expected.json"), "w") as f:
        json.dump([describe(d.to_protobuf()) for d in da], f, indent=1, sort_keys=True)
        f.write("\n")
    from docarray.proto import docarray_pb2

    with open(os.path.join(folder, "docarray_descriptor.bin"), "wb") as f:
        f.write(docarray_pb2.DESCRIPTOR.serialized_pb)
    print(f"wrote {len(os.listdir(folder))} files to {folder}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/legacy")
