"""Documents as JSON-friendly dicts and JSON text (the legacy 'jsonschema' shape).

``to_dict`` keeps the fields that are set, by their legacy names. Values are
made JSON-friendly: ndarrays become nested lists (and come back as ndarrays
for ``tensor``/``embedding``, with the dtype JSON numbers imply), ``blob``
bytes become base64 text (and come back as bytes), numpy scalars become
Python numbers, tuples lists. JSON is for interchange and for reading by eye;
use the binary protocols to keep dtypes and bytes exact.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np

from docmill.document import FIELDS, Document
from docmill.errors import FormatError
from docmill.io._files import atomic_output, is_url, open_input

if TYPE_CHECKING:
    from docmill.array import DocumentArray

__all__ = [
    "array_from_json",
    "array_from_list",
    "array_to_json",
    "array_to_list",
    "document_from_dict",
    "document_from_json",
    "document_to_dict",
    "document_to_json",
    "load_json",
    "save_json",
]

_FIELD_SET = frozenset(FIELDS)


def _jsonable(v: Any, where: str) -> Any:
    if v is None or isinstance(v, bool | int | float | str):
        return v
    if isinstance(v, dict):
        return {_key(k, where): _jsonable(x, where) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_jsonable(x, where) for x in v]
    if isinstance(v, np.ndarray | np.generic) and v.dtype.kind in "biufcUS":
        return _jsonable(v.tolist(), where)
    if isinstance(v, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(v)).decode("ascii")
    raise TypeError(f"{where}: a {type(v).__name__} has no JSON form; use save_binary instead")


def _key(k: Any, where: str) -> str:
    if isinstance(k, str):
        return k
    if isinstance(k, bool | int | float) or k is None:
        return json.dumps(k)  # what json.dumps does to such keys anyway
    raise TypeError(f"{where}: dict key {k!r} has no JSON form")


def document_to_dict(doc: Document) -> dict[str, Any]:
    """The set fields of ``doc`` as JSON-friendly values (see the module docstring)."""
    if not isinstance(doc, Document):
        raise TypeError(f"expected a Document, got {type(doc).__name__}")
    out: dict[str, Any] = {}
    for name in doc.non_empty_fields():
        v = getattr(doc, name)
        if name in ("chunks", "matches"):
            out[name] = [document_to_dict(c) for c in v]
        else:
            out[name] = _jsonable(v, f"Document {doc.id!r}, field {name!r}")
    return out


def document_from_dict(data: dict[str, Any]) -> Document:
    """Inverse of :func:`document_to_dict`; an unknown key raises ``ValueError`` naming it."""
    if not isinstance(data, dict):
        raise TypeError(f"expected a dict of Document fields, got {type(data).__name__}")
    unknown = [k for k in data if k not in _FIELD_SET]
    if unknown:
        raise ValueError(
            f"unknown Document field(s) {', '.join(map(repr, unknown))}; fields are: "
            + ", ".join(FIELDS)
        )
    kw = dict(data)
    for name in ("tensor", "embedding"):
        if isinstance(kw.get(name), list):
            kw[name] = np.asarray(kw[name])
    if isinstance(kw.get("blob"), str):
        try:
            kw["blob"] = base64.b64decode(kw["blob"], validate=True)
        except ValueError as e:
            raise ValueError(f"field 'blob' is not base64 text: {e}") from None
    for name in ("chunks", "matches"):
        if kw.get(name) is not None:
            kw[name] = [c if isinstance(c, Document) else document_from_dict(c) for c in kw[name]]
    return Document(**kw)


def document_to_json(doc: Document) -> str:
    """:func:`document_to_dict` as JSON text."""
    return json.dumps(document_to_dict(doc))


def _loads(s: str | bytes | bytearray) -> Any:
    if not isinstance(s, str | bytes | bytearray):
        raise TypeError(f"expected JSON text (str or bytes), got {type(s).__name__}")
    try:
        return json.loads(s)
    except json.JSONDecodeError as e:
        raise FormatError(f"not valid JSON at offset {e.pos}: {e.msg}") from e
    except UnicodeDecodeError as e:
        raise FormatError(f"JSON bytes are not UTF-8 at offset {e.start}") from e


def document_from_json(s: str | bytes | bytearray) -> Document:
    """Inverse of :func:`document_to_json`; bad JSON -> :class:`FormatError` with the offset."""
    d = _loads(s)
    if not isinstance(d, dict):
        raise FormatError(f"expected a JSON object for a Document, found a {type(d).__name__}")
    return document_from_dict(d)


def array_to_list(da: Iterable[Document]) -> list[dict[str, Any]]:
    """Every Document as :func:`document_to_dict`."""
    return [document_to_dict(d) for d in da]


def array_from_list(data: Iterable[dict[str, Any]]) -> DocumentArray:
    """Inverse of :func:`array_to_list`."""
    from docmill.array import DocumentArray

    return DocumentArray(document_from_dict(d) for d in data)


def array_to_json(da: Iterable[Document]) -> str:
    """:func:`array_to_list` as JSON text (a JSON array of objects)."""
    return json.dumps(array_to_list(da))


def array_from_json(s: str | bytes | bytearray) -> DocumentArray:
    """Inverse of :func:`array_to_json`."""
    data = _loads(s)
    if not isinstance(data, list):
        raise FormatError(f"expected a JSON array of Documents, found a {type(data).__name__}")
    return array_from_list(data)


def save_json(da: Iterable[Document], file: Any) -> None:
    """Write :func:`array_to_json` as UTF-8 to ``file`` (path, fsspec URL or file object;
    text or binary), atomically for paths and URLs."""
    text = array_to_json(da)
    if not is_url(file) and hasattr(file, "write"):
        try:
            file.write(text)
        except TypeError:  # a binary file object
            file.write(text.encode("utf-8"))
        return
    with atomic_output(file) as f:
        f.write(text.encode("utf-8"))


def load_json(file: Any) -> DocumentArray:
    """Inverse of :func:`save_json` (``file``: path, fsspec URL or text/binary file object)."""
    if not is_url(file) and hasattr(file, "read"):
        return array_from_json(file.read())
    with open_input(file) as f:
        return array_from_json(f.read())
