"""How a :class:`docmill.DocumentArray`'s Documents and fields are addressed, as
functions that need no array state of their own.

Key parsing (which positions a key selects), the id index builder, stacking
and spreading of bulk field values, legacy traversal paths, batching (for
``batch``, ``map_batch`` and ``apply_batch`` alike), grouping by tag and the
summary text. :mod:`docmill.array` keeps the list and the index; the
functions here read from it and never mutate it.
"""

from __future__ import annotations

import itertools
import operator
import os
import random
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from docmill._checks import is_int
from docmill.document import FIELDS, Document, from_state, state_of

if TYPE_CHECKING:
    from docmill.array import DocumentArray

__all__ = [
    "STACKED",
    "BulkField",
    "as_list",
    "batches",
    "build_index",
    "bulk_get",
    "check_documents",
    "empty_documents",
    "field_key",
    "flatten",
    "get_id",
    "group_by_tag",
    "positions",
    "spread",
    "stack",
    "summary_text",
    "traverse",
]

get_id = operator.attrgetter("id")
_BOOL = (bool, np.bool_)
_TAGS, _CHUNKS, _MATCHES = map(FIELDS.index, ("tags", "chunks", "matches"))
#: fields that bulk access stacks into one ndarray (and splits along axis 0 on assignment)
STACKED = ("tensor", "embedding")
_MISSING = object()


# ---------------------------------------------------------------------- validation
def build_index(docs: Sequence[Document], start: int = 0) -> dict[str, int]:
    """``{id: position}`` for ``docs`` (positions from ``start``); ``ValueError`` on a repeated id."""
    # one C-level pass: this is the whole per-Document cost of building an array
    index = dict(zip(map(get_id, docs), range(start, start + len(docs)), strict=True))
    if len(index) != len(docs):
        seen: dict[str, int] = {}
        for i, d in enumerate(docs):
            if d.id in seen:
                raise ValueError(
                    f"a Document with id {d.id!r} is given twice (items {seen[d.id]} and {i}); "
                    "ids must be unique"
                )
            seen[d.id] = i
    return index


def check_documents(docs: list[Any]) -> None:
    """``TypeError`` naming the first item that is not a Document."""
    if not all(map(isinstance, docs, itertools.repeat(Document))):
        i, bad = next((i, d) for i, d in enumerate(docs) if not isinstance(d, Document))
        raise TypeError(f"a DocumentArray holds Documents; item {i} is a {type(bad).__name__}")


def batches(items: Iterable[Any], batch_size: int, shuffle: bool = False) -> Iterator[list]:
    """Lazily cut ``items`` into lists of ``batch_size`` (the last may be shorter).

    ``shuffle=True`` first draws a random order with the :mod:`random` module
    (``random.seed`` repeats it, as in legacy); it needs an input with a length,
    which is checked now, not at the first batch.
    """
    if not shuffle:
        return _cut(iter(items), batch_size)
    if not hasattr(items, "__len__"):
        raise ValueError(
            f"shuffle=True needs an input with a length (a DocumentArray or a list); got "
            f"{type(items).__name__}. Collect it first (list(...)) or pass shuffle=False"
        )
    order = list(items)
    random.shuffle(order)
    return _cut(iter(order), batch_size)


def _cut(it: Iterator[Any], batch_size: int) -> Iterator[list]:
    while chunk := list(itertools.islice(it, batch_size)):
        yield chunk


def as_list(value: Any, n: int, what: str) -> list[Any]:
    """``value`` (a sequence, not a str/bytes/dict) as a list of exactly ``n`` items."""
    if isinstance(value, str | bytes | dict) or not isinstance(value, Iterable):
        raise TypeError(
            f"expected a sequence of {n} values (one per {what}), got a {type(value).__name__}"
        )
    values = list(value)
    if len(values) != n:
        raise ValueError(f"got {len(values)} values for {n} {what}s; the lengths must match")
    return values


def empty_documents(n: int) -> list[Document]:
    """``n`` empty Documents with fresh uuid4 hex ids, about twice as fast as ``Document()``.

    The ids come from one ``os.urandom`` call with the uuid4 version and variant
    bits set, as :func:`uuid.uuid4` does one at a time; each Document gets its
    state in one call instead of 19 attribute writes.
    """
    raw = np.frombuffer(os.urandom(16 * n), dtype=np.uint8).reshape(n, 16).copy()
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40  # version 4
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80  # RFC 4122 variant
    hexes = raw.tobytes().hex()
    unset = (None,) * (len(FIELDS) - 1)  # every field after id (FIELDS[0])
    return [from_state((hexes[i : i + 32], *unset)) for i in range(0, 32 * n, 32)]


# ---------------------------------------------------------------------- keys
def positions(da: DocumentArray, key: Any) -> list[int]:
    """Positions selected by a multi-Document key (slice, list, ndarray), in key order."""
    n = len(da)
    if isinstance(key, slice):
        return list(range(n)[key])
    if isinstance(key, np.ndarray):
        if key.ndim != 1:
            raise IndexError(f"a numpy index must be 1-d, got shape {key.shape}")
        key = key.tolist()
    elif not isinstance(key, list | tuple):
        raise IndexError(  # IndexError, as legacy raises for a key of the wrong type
            f"cannot index a DocumentArray with {type(key).__name__}: {key!r}; use an int, "
            "an id, a slice, a list of ints / ids / bools, ... or (key, 'field')"
        )
    if not key:
        return []
    if all(isinstance(k, _BOOL) for k in key):
        # as legacy: a shorter mask selects nothing past its end, a longer one's tail is unused
        return list(itertools.compress(range(n), key))
    if all(isinstance(k, str) or is_int(k) for k in key):
        return [da._find(k) if isinstance(k, str) else da._pos(int(k)) for k in key]
    kinds = ", ".join(sorted({type(k).__name__ for k in key}))
    raise IndexError(f"a list key must hold positions and ids, or only bools; got {kinds}")


def field_key(da: DocumentArray, key: tuple) -> tuple[Any, list[str], bool] | None:
    """Split ``(docs_key, 'field')`` / ``(docs_key, [fields])`` into ``(docs_key, fields,
    one_field)``, or ``None`` when ``key`` is a plain tuple of positions or ids."""
    if len(key) != 2:
        return None
    first, second = key
    one_doc = isinstance(first, str) or is_int(first)
    if isinstance(second, str):
        if one_doc and da._lookup(second) is not None:
            return None  # (id, id) / (int, id): two Documents, the way legacy reads it
        if one_doc and second not in FIELDS:
            raise ValueError(
                f"{second!r} is neither a Document field nor an id in this DocumentArray; "
                f"fields are: {', '.join(FIELDS)}"
            )
        fields = [second]
    elif isinstance(second, list | tuple) and second and all(isinstance(f, str) for f in second):
        if one_doc and not set(second) & set(FIELDS):
            return None
        fields = list(second)
    else:
        return None
    for f in fields:
        if f not in FIELDS:
            raise ValueError(f"unknown Document field {f!r}; fields are: {', '.join(FIELDS)}")
    return first, fields, isinstance(second, str)


# ---------------------------------------------------------------------- fields in bulk
def stack(docs: Sequence[Document], field: str) -> np.ndarray | None:
    """``np.stack`` of every Document's ``field``; ``None`` when no Document has one."""
    values = [getattr(d, field) for d in docs]
    if all(v is None for v in values):
        return None
    arrays: list[np.ndarray] = []
    for i, v in enumerate(values):
        if v is None:
            raise ValueError(
                f"Document {i} (id {docs[i].id!r}) has no {field}; to stack {field}s "
                "every Document needs one"
            )
        a = np.asarray(v)
        if arrays and a.shape != arrays[0].shape:
            raise ValueError(
                f"cannot stack {field}s: Document {i} (id {docs[i].id!r}) has shape {a.shape}, "
                f"Document 0 has {arrays[0].shape}"
            )
        arrays.append(a)
    return np.stack(arrays)


def spread(field: str, value: Any, n: int, strict: bool) -> list[Any]:
    """One value per Document for setting ``field`` on ``n`` Documents.

    ``None`` clears; an ndarray for a stacked field is split along axis 0 (the
    rows are views of it, as in legacy docarray); a list/tuple gives one value
    each. Otherwise, when ``strict`` (bulk properties) any iterable that is not
    a str/bytes/dict is taken item by item, and when not strict (``da[:, f] =
    v``) the value is given to every Document, a dict copied for each.
    """
    if value is None:
        return [None] * n
    if isinstance(value, np.ndarray) and field in STACKED:
        if value.ndim == 0 or value.shape[0] != n:
            raise ValueError(
                f"cannot set the {field}s of {n} Documents from an array of shape {value.shape}; "
                f"its first axis must have length {n}"
            )
        return list(value)
    if strict or isinstance(value, list | tuple):
        return as_list(value, n, "Document")
    return [dict(value) if isinstance(value, dict) else value for _ in range(n)]


def bulk_get(docs: Sequence[Document], field: str) -> Any:
    """Every Document's ``field``: a list, or one stacked ndarray for tensor/embedding."""
    return stack(docs, field) if field in STACKED else [getattr(d, field) for d in docs]


class BulkField:
    """A DocumentArray attribute reading/writing one field of every Document
    (``da.texts``, ``da.tensors``...); see :func:`spread` for what it accepts."""

    def __init__(self, field: str, doc: str) -> None:
        self.field = field
        self.__doc__ = doc

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, da: DocumentArray | None, owner: type | None = None) -> Any:
        if da is None:
            return self
        return bulk_get(da._docs, self.field) if da._docs else None  # legacy: None when empty

    def __set__(self, da: DocumentArray, value: Any) -> None:
        da._set_field(list(range(len(da))), self.field, value, strict=True)


# ---------------------------------------------------------------------- traversal & groups
_SLICE = r"(?:[-\d:]+|\[[-\d:]+\])?"
_STEP = re.compile(rf"(?P<selector>[rcm])(?P<slice>{_SLICE})")
_PATH = re.compile(rf"(?:[rcm]{_SLICE})+")


def traverse(docs: list[Document], key: str) -> list[Document]:
    """Legacy traversal paths (``key`` starts with ``@``): comma-separated paths of
    steps ``r`` (these Documents), ``c`` (their chunks), ``m`` (their matches), each
    with an optional slice of what it reaches per Document: ``'@r'``, ``'@cm'``,
    ``'@r,c'``, ``'@c:1'`` (each root's first chunk), ``'@c1:3c'``, ``'@r:1cc,m'``."""
    out: list[Document] = []
    for path in re.sub(r"\s+", "", key[1:]).split(","):
        if not _PATH.fullmatch(path):
            raise ValueError(
                f"`path`:{path} is invalid in {key!r}: use steps 'r' (these Documents), "
                "'c' (chunks) and 'm' (matches), each optionally sliced, comma-separated, "
                "e.g. '@r', '@cm', '@r,c', '@c:2'"
            )
        level = docs
        for step in _STEP.finditer(path):
            cut = _parse_slice(step["slice"])
            if step["selector"] == "r":
                level = level[cut]
            else:
                slot = "_chunks" if step["selector"] == "c" else "_matches"  # read, never create
                level = [x for d in level for x in list(getattr(d, slot) or ())[cut]]
        out.extend(level)
    return out


def _parse_slice(text: str) -> slice:
    """Legacy's slice syntax: '' (all), '2' (the first 2), '1:3', '-1:', '[1:3]'."""
    text = text.strip("[]")
    if not text:
        return slice(None)
    parts = [int(p) if p else None for p in text.split(":")]
    if len(parts) == 1:
        return slice(parts[0])
    return slice(*parts[:3])


def flatten(docs: list[Document]) -> list[Document]:
    """Every Document with all its chunks and matches, nested ones first (legacy's
    ``da[...]``); a Document reached twice is listed once."""
    out: list[Document] = []
    seen: set[int] = set()

    def visit(d: Document) -> None:
        if id(d) in seen:
            return
        seen.add(id(d))
        state = state_of(d)
        for nested in (state[_CHUNKS], state[_MATCHES]):
            for x in nested or ():
                visit(x)
        out.append(d)

    for d in docs:
        visit(d)
    return out


def group_by_tag(docs: list[Document], tag: str) -> dict[Any, list[Document]]:
    """Documents grouped by ``tags[tag]`` (``'a__b'``: ``tags['a']['b']``), order kept;
    as legacy, those without the tag (or with a missing nested one) under ``None``."""
    groups: dict[Any, list[Document]] = {}
    for i, d in enumerate(docs):
        tags = state_of(d)[_TAGS] or {}  # not d.tags: it would create an empty dict
        value = tags.get(tag, _MISSING)
        if value is _MISSING and "__" in tag:
            value = tags
            for part in tag.split("__"):
                value = value.get(part, _MISSING) if isinstance(value, dict) else _MISSING
        if value is _MISSING:
            value = None
        try:
            groups.setdefault(value, []).append(d)
        except TypeError:
            raise TypeError(
                f"Document {i} (id {d.id!r}) has an unhashable value for tag {tag!r}: "
                f"{type(value).__name__}"
            ) from None
    return groups


# ---------------------------------------------------------------------- summary
def summary_text(da: DocumentArray) -> str:
    """Length, how many Documents set each field, and the shapes/dtypes of stacked fields."""
    docs = da._docs
    n = len(docs)
    lines = [f"{type(da).__name__}: {n} Document{'' if n == 1 else 's'}"]
    if not n:
        return lines[0]
    counts = Counter(itertools.chain.from_iterable(d.non_empty_fields for d in docs))
    width = 2 * len(str(n)) + 1
    lines.append(f"  {'field':<12} {'set':>{width}}  details")
    for f in FIELDS:
        if not counts[f]:
            continue
        details = ""
        if f in STACKED:
            kinds = Counter(_describe(getattr(d, f)) for d in docs if getattr(d, f) is not None)
            shown = [f"{k} x{c}" for k, c in kinds.most_common(4)]
            if len(kinds) > 4:
                shown.append(f"and {len(kinds) - 4} more")
            details = "; ".join(shown)
        lines.append(f"  {f:<12} {f'{counts[f]}/{n}':>{width}}  {details}".rstrip())
    return "\n".join(lines)


def _describe(v: Any) -> str:
    if isinstance(v, np.ndarray):
        return f"{v.shape} {v.dtype}"
    return type(v).__name__
