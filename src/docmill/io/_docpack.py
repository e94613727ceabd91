"""Documents <-> one docmill frame payload: msgpack metadata plus raw array memory.

Payload layout (all integers little-endian)::

    u32 meta_len | meta: msgpack array of Document maps | zero pad to 32
    | buffer area: each ndarray's bytes (and each large blob) at a 32-aligned
      offset, zero-padded to 32

A Document map holds only the fields that are set, keyed by field name
(``FIELDS``); ``chunks``/``matches`` are arrays of Document maps. Values are
plain msgpack, plus four extension types:

====  ==========  =====================================================
code  type        ext data (msgpack)
====  ==========  =====================================================
1     ndarray     ``[descr, shape, fortran, offset, nbytes]``: ``descr`` is
                  ``dtype.str`` (or numpy's descr list for structured
                  dtypes); the bytes are at ``offset`` in the buffer area,
                  C order (Fortran order when ``fortran`` is true)
2     tuple       msgpack array of the items (so tuples stay tuples)
3     big int     decimal text of an int outside the 64-bit range
4     bytes       ``[offset, nbytes]`` in the buffer area (blobs > 4 KiB)
5     ndarray     ``[descr, shape, axes, offset, nbytes]``: an array whose
                  memory is a permutation of its axes (a transposed view such
                  as ``moveaxis(img, -1, 0)``), stored as it lies in memory:
                  the bytes are ``a.transpose(axes)`` in C order
====  ==========  =====================================================

Decoding is zero-copy for arrays: ``np.frombuffer`` over the (writable)
payload buffer, so arrays come out writable and share the frame's memory.

Nesting is bounded both ways (:data:`MAX_DEPTH`): a field value may nest at most
that many containers (lists, dicts, tuples), and Documents at most that many
levels of ``chunks``/``matches``. Writing deeper raises ``ValueError`` naming the
Document and field; a file that claims deeper nesting raises
:class:`~docmill.FormatError` before any recursion can exhaust the C stack
(each tuple is an extension whose contents msgpack unpacks in a nested call).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from typing import Any

import msgpack
import numpy as np
from numpy.lib import format as npformat

from docmill.document import FIELDS, Document, from_state, state_of
from docmill.errors import FormatError

__all__ = ["ALIGN", "MAX_DEPTH", "check_depth", "decode_payload", "encode_payload"]

ALIGN = 32
_INLINE_BYTES = 4096  # blobs up to this size stay inside the msgpack metadata
EXT_NDARRAY, EXT_TUPLE, EXT_BIGINT, EXT_BYTES, EXT_AXES = 1, 2, 3, 4, 5

_ZEROS = bytes(ALIGN)
_U32 = struct.Struct("<I")
_FIELD_INDEX = {f: i for i, f in enumerate(FIELDS)}
_NESTED = frozenset(("chunks", "matches"))
_DICTS = frozenset(("tags", "evaluations", "scores"))
_N_FIELDS = len(FIELDS)
#: Deepest nesting of containers in one value, and of Documents through chunks/matches.
MAX_DEPTH = 32


def check_depth(value: Any, limit: int = MAX_DEPTH) -> None:
    """Raise ``ValueError`` when ``value`` nests lists / dicts / tuples deeper than ``limit``."""
    todo = [(value, 1)]
    while todo:
        v, depth = todo.pop()
        if isinstance(v, dict):
            children: Any = v.values()
        elif isinstance(v, list | tuple):
            children = v
        else:
            continue
        if depth > limit:
            raise ValueError(
                f"the value nests lists / dicts / tuples more than {limit} deep, which "
                f"docmill files refuse (a reader could not load it safely); flatten it"
            )
        todo.extend((c, depth + 1) for c in children if isinstance(c, dict | list | tuple))


def _pad(n: int) -> int:
    return -n % ALIGN


# ---------------------------------------------------------------------- encoding
class _Builder:
    """Packs Document maps; arrays met on the way go to the buffer area."""

    def __init__(self) -> None:
        self.pieces: list[Any] = []
        self.area = 0
        self.packer = msgpack.Packer(default=self._default, strict_types=True, autoreset=True)

    def _add(self, buf: Any, nbytes: int) -> int:
        offset = self.area
        self.pieces.append(buf)
        pad = _pad(nbytes)
        if pad:
            self.pieces.append(_ZEROS[:pad])
        self.area += nbytes + pad
        return offset

    def _array(self, a: np.ndarray) -> msgpack.ExtType:
        dt = a.dtype
        if dt.hasobject:
            raise TypeError(
                f"ndarray of dtype {dt} holds Python objects, which the 'docmill' protocol "
                "stores only as raw memory; convert it (e.g. .astype(str)) or use protocol='pickle'"
            )
        code, order, data = EXT_NDARRAY, False, a
        if not a.flags.c_contiguous:
            if a.flags.f_contiguous:
                order, data = True, a.T
            else:  # a transposed view is written as it lies (no strided copy)
                axes = sorted(range(a.ndim), key=lambda i: -a.strides[i])
                data = a.transpose(axes)
                if data.flags.c_contiguous:
                    code, order = EXT_AXES, axes
                else:
                    data = np.ascontiguousarray(a)
        offset = 0
        if a.nbytes:
            offset = self._add(memoryview(data.reshape(-1).view(np.uint8)), a.nbytes)
        descr = dt.str if dt.fields is None else npformat.dtype_to_descr(dt)
        meta = [descr, list(a.shape), order, offset, a.nbytes]
        return msgpack.ExtType(code, msgpack.packb(meta))

    def _default(self, obj: Any) -> Any:
        # strict_types=True sends every non-exact builtin here, so tuples keep their type
        if isinstance(obj, np.ndarray):
            return self._array(obj)
        if isinstance(obj, tuple):
            return msgpack.ExtType(EXT_TUPLE, self._nested(list(obj)))
        if isinstance(obj, np.generic):
            return obj.item()
        if type(obj) is int:  # only ints outside msgpack's 64-bit range get here
            return msgpack.ExtType(EXT_BIGINT, str(obj).encode())
        for base in (int, dict, list, str, float, bytes):
            if isinstance(obj, base):  # subclasses: IntEnum, OrderedDict, defaultdict...
                return base(obj)
        if isinstance(obj, memoryview):
            return obj.tobytes()
        if hasattr(obj, "__array__"):  # torch / tensorflow / jax arrays come back as numpy
            return self._array(np.asarray(obj))
        raise TypeError(
            f"cannot store a {type(obj).__name__} with the 'docmill' protocol "
            "(it stores JSON-like values, bytes, tuples and ndarrays); use protocol='pickle'"
        )

    def _nested(self, value: Any) -> bytes:
        return msgpack.packb(value, default=self._default, strict_types=True)

    def doc_map(self, doc: Document, depth: int = 1) -> dict[str, Any]:
        m: dict[str, Any] = {}
        for name, v in zip(FIELDS, state_of(doc), strict=True):
            if v is None:
                continue
            if name in _NESTED:
                if len(v):
                    if depth >= MAX_DEPTH:
                        raise ValueError(
                            f"Documents nest through chunks/matches more than {MAX_DEPTH} "
                            f"levels deep, which docmill files refuse"
                        )
                    m[name] = [self.doc_map(c, depth + 1) for c in v]
            elif name in _DICTS:
                if v:
                    check_depth(v)
                    m[name] = v
            elif type(v) is list or type(v) is tuple:
                check_depth(v)
                m[name] = v
            elif name == "blob" and type(v) is bytes and len(v) > _INLINE_BYTES:
                m[name] = msgpack.ExtType(EXT_BYTES, msgpack.packb([self._add(v, len(v)), len(v)]))
            else:
                m[name] = v
        return m


def encode_payload(docs: Sequence[Document]) -> tuple[list[Any], int]:
    """``(pieces, size)``: the payload of one frame as buffers to write in order.

    The pieces include views of the Documents' arrays: write them before the
    arrays change. A Document that cannot be stored raises ``TypeError`` naming
    its index, id and field.
    """
    b = _Builder()
    meta = [b.packer.pack_array_header(len(docs))]
    for i, d in enumerate(docs):
        try:
            meta.append(b.packer.pack(b.doc_map(d)))
        except Exception as e:
            raise _explain(e, i, d) from e
    meta_bytes = b"".join(meta)
    head = _U32.pack(len(meta_bytes))
    pad = _pad(len(head) + len(meta_bytes))
    pieces = [head, meta_bytes, _ZEROS[:pad], *b.pieces]
    # the packer's default= is a bound method of b: a reference cycle that would keep
    # b (and views of every array of the frame) alive until the garbage collector runs
    b.packer = None  # type: ignore[assignment]
    return pieces, len(head) + len(meta_bytes) + pad + b.area


def _explain(e: Exception, index: int, doc: Any) -> Exception:
    """The packing error again, naming the Document and (found by retrying) the field."""
    if not isinstance(doc, Document):
        return TypeError(f"item {index} is a {type(doc).__name__}, not a Document")
    field = "?"
    for name in FIELDS:
        b = _Builder()
        v = getattr(doc, name)
        try:
            if name in _NESTED:
                for c in v:
                    b.packer.pack(b.doc_map(c, 2))
            else:
                check_depth(v)
                b.packer.pack(v)
        except Exception:
            field = name
            break
    msg = f"Document {index} (id {doc.id!r}), field {field!r}: {e}"
    try:
        return type(e)(msg)
    except Exception:  # an exception type with a different constructor
        return TypeError(msg)


# ---------------------------------------------------------------------- decoding
def decode_payload(payload: bytearray | memoryview, count: int) -> list[Document]:
    """The ``count`` Documents of one frame payload (arrays are views into ``payload``).

    Any inconsistency raises :class:`FormatError` (the caller adds the offset).
    """
    view = memoryview(payload)
    if len(view) < 4:
        raise FormatError(f"payload of {len(view)} bytes is too short")
    (meta_len,) = _U32.unpack_from(view)
    start = 4 + meta_len
    if start > len(view):
        raise FormatError(f"metadata length {meta_len} exceeds the payload ({len(view)} bytes)")
    area = view[start + _pad(start) :]
    depth = [0]  # tuples being unpacked inside each other (each one a nested unpackb)

    def ext_hook(code: int, data: bytes) -> Any:
        if code in (EXT_NDARRAY, EXT_AXES):
            return _array_from(msgpack.unpackb(data), area, code == EXT_AXES)
        if code == EXT_TUPLE:
            if depth[0] >= MAX_DEPTH:
                raise FormatError(f"tuples nested more than {MAX_DEPTH} deep")
            depth[0] += 1
            try:
                return tuple(_unpack(data, ext_hook))
            finally:
                depth[0] -= 1
        if code == EXT_BIGINT:
            return int(data.decode("ascii"))
        if code == EXT_BYTES:
            offset, nbytes = msgpack.unpackb(data)
            _check_range(offset, nbytes, len(area))
            return bytes(area[offset : offset + nbytes])
        raise FormatError(f"unknown msgpack extension type {code}")

    try:
        maps = _unpack(view[4:start], ext_hook)
        if not isinstance(maps, list) or len(maps) != count:
            raise FormatError(
                f"metadata holds {_len(maps)} Documents, the frame header says {count}"
            )
        return [_doc_from(m) for m in maps]
    except FormatError:
        raise
    except Exception as e:  # msgpack / numpy errors on corrupt input
        raise FormatError(f"bad metadata ({type(e).__name__}: {e})") from e


def _unpack(data: Any, ext_hook: Any) -> Any:
    return msgpack.unpackb(data, ext_hook=ext_hook, raw=False, strict_map_key=False)


def _len(x: Any) -> str:
    return str(len(x)) if isinstance(x, list) else f"a {type(x).__name__}, not"


def _check_range(offset: Any, nbytes: Any, size: int) -> None:
    if not (isinstance(offset, int) and isinstance(nbytes, int)):
        raise FormatError("buffer reference is not a pair of ints")
    if offset < 0 or nbytes < 0 or offset + nbytes > size:
        raise FormatError(
            f"buffer [{offset}, {offset + nbytes}) lies outside the {size}-byte buffer area"
        )


def _descr(x: Any) -> Any:
    """msgpack turned numpy's descr tuples into lists; turn them back."""
    if isinstance(x, str):
        return x
    out = []
    for field in x:
        name, typ, *shape = field
        out.append(
            (tuple(name) if isinstance(name, list) else name, _descr(typ), *map(tuple, shape))
        )
    return out


def _array_from(meta: Any, area: memoryview, permuted: bool = False) -> np.ndarray:
    descr, shape, order, offset, nbytes = meta
    dtype = np.dtype(descr) if isinstance(descr, str) else npformat.descr_to_dtype(_descr(descr))
    if dtype.hasobject:
        raise FormatError(f"ndarray dtype {dtype} holds Python objects")
    shape = tuple(shape)
    count = math.prod(shape)
    if any(not isinstance(s, int) or s < 0 for s in shape) or nbytes != count * dtype.itemsize:
        raise FormatError(f"ndarray of shape {shape} and dtype {dtype} cannot hold {nbytes} bytes")
    if permuted and (
        not isinstance(order, list)
        or not all(type(i) is int for i in order)
        or sorted(order) != list(range(len(shape)))
    ):
        raise FormatError(f"ndarray axes {order!r} are not a permutation of {len(shape)} axes")
    _check_range(offset, nbytes, len(area))
    if nbytes == 0:
        return np.empty(shape, dtype)
    a = np.frombuffer(area, dtype, count, offset)
    if permuted:
        return a.reshape([shape[i] for i in order]).transpose(np.argsort(order))
    return a.reshape(shape[::-1]).T if order else a.reshape(shape)


def _doc_from(m: Any, depth: int = 1) -> Document:
    if type(m) is not dict:
        raise FormatError(f"a Document entry is a {type(m).__name__}, expected a map")
    state: list[Any] = [None] * _N_FIELDS
    for k, v in m.items():
        i = _FIELD_INDEX.get(k)
        if i is None:
            raise FormatError(f"unknown Document field {k!r}")
        if k in _NESTED:
            if not isinstance(v, list):
                raise FormatError(f"field {k!r} is a {type(v).__name__}, expected an array")
            if v and depth >= MAX_DEPTH:
                raise FormatError(f"Documents nested through {k} more than {MAX_DEPTH} deep")
            from docmill.array import DocumentArray

            v = DocumentArray([_doc_from(c, depth + 1) for c in v])
        elif k in _DICTS and not isinstance(v, dict):
            raise FormatError(f"field {k!r} is a {type(v).__name__}, expected a map")
        state[i] = v
    if not isinstance(state[0], str):
        raise FormatError("a Document entry has no string 'id'")
    return from_state(tuple(state))
