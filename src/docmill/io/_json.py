"""Documents as JSON-friendly dicts and JSON text, in docarray 0.21's two shapes.

``protocol='jsonschema'`` (the default): every field by its legacy name, in
legacy order, ``None`` where unset (``exclude_none=True`` leaves those out);
ndarrays become nested lists (and come back as ndarrays for
``tensor``/``embedding``, with the dtype JSON numbers imply), ``blob`` bytes
become base64 text (and come back as bytes), numpy scalars become Python
numbers, tuples lists, chunks and matches lists of such dicts. Reading ignores
keys that are not fields, as legacy's pydantic model does.

``protocol='protobuf'``: the ``DocumentProto`` message as
``google.protobuf.json_format`` writes it (camelCase names, ndarrays with their
dtype and shape, exact); needs the protobuf extra.

Any other ``protocol`` when reading (legacy's schemaless form) builds
``Document(dict)``: keys that are not fields go into ``tags``.

JSON is for interchange and for reading by eye; use the binary protocols to
keep dtypes and bytes exact.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np

from docmill.document import FIELDS, Document
from docmill.errors import FormatError
from docmill.io._files import atomic_output, is_file_object, open_input

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


_PROTOCOLS = ("jsonschema", "protobuf")
_DUMP_OPTIONS = frozenset(("exclude_none", "include", "exclude"))


def _check_protocol(protocol: Any) -> str:
    if protocol not in _PROTOCOLS:
        raise ValueError(f"protocol={protocol!r} is not supported; use 'jsonschema' or 'protobuf'")
    return protocol


def document_to_dict(doc: Document, protocol: str = "jsonschema", **kwargs: Any) -> dict[str, Any]:
    """``doc`` as JSON-friendly values (see the module docstring). ``jsonschema``
    takes ``exclude_none=True`` and ``include`` / ``exclude`` (sets of field names);
    ``protobuf`` passes ``kwargs`` to ``google.protobuf.json_format.MessageToDict``."""
    if not isinstance(doc, Document):
        raise TypeError(f"expected a Document, got {type(doc).__name__}")
    if _check_protocol(protocol) == "protobuf":
        from google.protobuf.json_format import MessageToDict

        from docmill.io._protobuf import document_to_proto

        return MessageToDict(document_to_proto(doc), **kwargs)
    bad = set(kwargs) - _DUMP_OPTIONS
    if bad:
        raise TypeError(
            f"to_dict() got unknown option(s) {', '.join(sorted(bad))}; with "
            f"protocol='jsonschema' it takes exclude_none, include, exclude"
        )
    return _to_dict(doc, **kwargs)


def _to_dict(
    doc: Document,
    exclude_none: bool = False,
    include: Iterable[str] | None = None,
    exclude: Iterable[str] | None = None,
) -> dict[str, Any]:
    names = FIELDS if include is None else [f for f in FIELDS if f in set(include)]
    if exclude is not None:
        names = [f for f in names if f not in set(exclude)]
    set_fields = set(doc.non_empty_fields)
    out: dict[str, Any] = {}
    for name in names:
        if name != "id" and name not in set_fields:
            if not exclude_none:
                out[name] = None
            continue
        v = getattr(doc, name)
        if name in ("chunks", "matches"):
            out[name] = [_to_dict(c, exclude_none) for c in v]
        else:
            out[name] = _jsonable(v, f"Document {doc.id!r}, field {name!r}")
    return out


def document_from_dict(
    data: dict[str, Any], protocol: str | None = "jsonschema", **kwargs: Any
) -> Document:
    """Inverse of :func:`document_to_dict` (see the module docstring for ``protocol``)."""
    if not isinstance(data, dict):
        raise TypeError(f"expected a dict of Document fields, got {type(data).__name__}")
    if protocol == "protobuf":
        from google.protobuf.json_format import ParseDict, ParseError

        from docmill.io._protobuf import document_from_proto, messages

        msg = messages()["DocumentProto"]()
        try:
            ParseDict(data, msg, **kwargs)
        except ParseError as e:
            raise FormatError(f"not a DocumentProto in JSON form: {e}") from e
        return document_from_proto(msg)
    if kwargs:
        raise TypeError(f"from_dict() got unknown option(s) {', '.join(sorted(kwargs))}")
    if protocol != "jsonschema":  # legacy's schemaless form
        return Document(data)
    kw = {k: v for k, v in data.items() if k in _FIELD_SET and v is not None}
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
    if "id" in kw and not isinstance(kw["id"], str):
        kw["id"] = str(kw["id"])
    return Document(**kw)


def document_to_json(doc: Document, protocol: str = "jsonschema", **kwargs: Any) -> str:
    """:func:`document_to_dict` as JSON text (``protobuf``: ``MessageToJson``'s text)."""
    if _check_protocol(protocol) == "protobuf":
        from google.protobuf.json_format import MessageToJson

        from docmill.io._protobuf import document_to_proto

        return MessageToJson(document_to_proto(doc), **kwargs)
    return json.dumps(document_to_dict(doc, protocol, **kwargs))


def _loads(s: str | bytes | bytearray) -> Any:
    if not isinstance(s, str | bytes | bytearray):
        raise TypeError(f"expected JSON text (str or bytes), got {type(s).__name__}")
    try:
        return json.loads(s)
    except json.JSONDecodeError as e:
        raise FormatError(f"not valid JSON at offset {e.pos}: {e.msg}") from e
    except UnicodeDecodeError as e:
        raise FormatError(f"JSON bytes are not UTF-8 at offset {e.start}") from e


def document_from_json(
    s: str | bytes | bytearray, protocol: str | None = "jsonschema", **kwargs: Any
) -> Document:
    """Inverse of :func:`document_to_json`; bad JSON -> :class:`FormatError` with the offset."""
    d = _loads(s)
    if not isinstance(d, dict):
        raise FormatError(f"expected a JSON object for a Document, found a {type(d).__name__}")
    return document_from_dict(d, protocol, **kwargs)


def array_to_list(
    da: Iterable[Document], protocol: str = "jsonschema", **kwargs: Any
) -> list[dict[str, Any]]:
    """Every Document as :func:`document_to_dict`."""
    return [document_to_dict(d, protocol, **kwargs) for d in da]


def array_from_list(
    data: Iterable[dict[str, Any]], protocol: str | None = "jsonschema", **kwargs: Any
) -> DocumentArray:
    """Inverse of :func:`array_to_list`."""
    from docmill.array import DocumentArray

    return DocumentArray(document_from_dict(d, protocol, **kwargs) for d in data)


def array_to_json(da: Iterable[Document], protocol: str = "jsonschema", **kwargs: Any) -> str:
    """:func:`array_to_list` as JSON text (a JSON array of objects)."""
    return json.dumps(array_to_list(da, protocol, **kwargs))


def array_from_json(
    s: str | bytes | bytearray, protocol: str | None = "jsonschema", **kwargs: Any
) -> DocumentArray:
    """Inverse of :func:`array_to_json`."""
    data = _loads(s)
    if not isinstance(data, list):
        raise FormatError(f"expected a JSON array of Documents, found a {type(data).__name__}")
    return array_from_list(data, protocol, **kwargs)


def save_json(
    da: Iterable[Document], file: Any, protocol: str = "jsonschema", encoding: str = "utf-8"
) -> None:
    """Write :func:`array_to_json` to ``file`` (path, fsspec URL or file object; text or
    binary), atomically for paths and URLs."""
    text = array_to_json(da, protocol)
    if is_file_object(file, "write"):
        try:
            file.write(text)
        except TypeError:  # a binary file object
            file.write(text.encode(encoding))
        return
    with atomic_output(file) as f:
        f.write(text.encode(encoding))


def load_json(
    file: Any, protocol: str | None = "jsonschema", encoding: str = "utf-8"
) -> DocumentArray:
    """Inverse of :func:`save_json` (``file``: path, fsspec URL or text/binary file object)."""
    if is_file_object(file, "read"):
        data = file.read()
    else:
        with open_input(file) as f:
            data = f.read()
    if isinstance(data, bytes) and encoding.lower().replace("-", "") != "utf8":
        data = data.decode(encoding)
    return array_from_json(data, protocol)
