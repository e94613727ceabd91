"""The Document: one unit of data (text, image, tensor, embedding) with its metadata.

A Document is a plain object with the legacy docarray field names. It knows
nothing about pools or files: image work lives in :mod:`docmill.image`,
storage in :mod:`docmill.io`; the methods here are thin wrappers that return
``self`` so calls chain::

    d = Document(uri="cat.jpg").load_uri_to_image_tensor().set_image_tensor_normalization()
"""

from __future__ import annotations

import functools
import mimetypes
import operator
import uuid
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from docmill.array import DocumentArray

__all__ = [
    "FIELDS",
    "Document",
    "approx_nbytes",
    "from_state",
    "set_state",
    "shallow_copies",
    "state_of",
]

#: Every field of a Document, in the order they are stored and printed.
FIELDS: tuple[str, ...] = (
    "id",
    "parent_id",
    "granularity",
    "adjacency",
    "blob",
    "tensor",
    "mime_type",
    "text",
    "weight",
    "uri",
    "tags",
    "offset",
    "location",
    "embedding",
    "modality",
    "evaluations",
    "scores",
    "chunks",
    "matches",
)

# Fields whose empty value is created lazily on first access (keeps Document() cheap).
_LAZY_DICTS = ("tags", "evaluations", "scores")
_LAZY_ARRAYS = ("chunks", "matches")
# Fields read and written through a property (legacy semantics: text / blob / tensor
# exclude each other, mime_type is normalized, a uri names its mime type, an unset
# field reads docarray 0.21's default).
_PROPERTIES = ("text", "blob", "tensor", "mime_type", "uri")
_DEFAULTED = ("parent_id", "granularity", "adjacency", "weight", "offset", "location", "modality")
_HIDDEN = _LAZY_DICTS + _LAZY_ARRAYS + _PROPERTIES + _DEFAULTED
_SLOTS = tuple("_" + f if f in _HIDDEN else f for f in FIELDS)


# Pickling many small Documents is the hot path of the process backend: read all
# slots with one attrgetter call and write them with one generated tuple unpacking.
_get_slots = operator.attrgetter(*_SLOTS)
_ns: dict[str, Any] = {}
exec(  # builds `self.a, self.b, ... = state`, several times faster than a setattr loop
    "def _set_slots(self, state):\n    " + ", ".join("self." + s for s in _SLOTS) + " = state\n",
    _ns,
)
_set_slots = _ns["_set_slots"]
exec(  # from_state for many at once: the slot stores inlined in the loop, no call per Document
    "def from_states(states, cls, new=object.__new__):\n"
    "    out = []\n"
    "    append = out.append\n"
    "    for state in states:\n"
    "        self = new(cls)\n"
    "        " + ", ".join("self." + s for s in _SLOTS) + " = state\n"
    "        append(self)\n"
    "    return out\n",
    _ns,
)
exec(  # shallow copies of many: one generated slot-to-slot store per Document
    "def copies(docs, cls, new=object.__new__):\n"
    "    out = []\n"
    "    append = out.append\n"
    "    for d in docs:\n"
    "        self = new(cls)\n"
    "        "
    + ", ".join("self." + s for s in _SLOTS)
    + " = "
    + ", ".join("d." + s for s in _SLOTS)
    + "\n"
    "        append(self)\n"
    "    return out\n",
    _ns,
)


# ---------------------------------------------------------------------- the state protocol
# How storage, the engine's transport and the in-place layer read and write a Document
# whole: a flat tuple of its stored values in FIELDS order, the lazy containers (tags,
# evaluations, scores, chunks, matches) as None while they were never touched.


def state_of(d: Document) -> tuple:
    """Every stored value of ``d``, in ``FIELDS`` order (unset lazy containers: None)."""
    return _get_slots(d)


def from_state(state: tuple) -> Document:
    """A Document holding ``state`` (as :func:`state_of` gives), without validation."""
    d = Document.__new__(Document)
    _set_slots(d, state)
    return d


def set_state(d: Document, state: tuple) -> None:
    """Replace every field of ``d`` with ``state`` (keeps ``d``'s identity)."""
    _set_slots(d, state)


def from_states(states: Iterable[tuple]) -> list[Document]:
    """``[from_state(s) for s in states]``, several times cheaper per Document."""
    return _ns["from_states"](states, Document)


def shallow_copies(docs: Iterable[Document]) -> list[Document]:
    """New Documents holding the same field values as ``docs`` (~0.3 us each): changing
    a copy's fields leaves the original as it was."""
    return _ns["copies"](docs, Document)


_rebuild = from_state  # the name pickles written by docmill 0.1 refer to


_data_slots = operator.attrgetter("_tensor", "embedding", "_blob", "_text", "_chunks", "_matches")


def approx_nbytes(x: Any) -> int:
    """A rough size of the data ``x`` holds, to cut work and files into pieces of
    bounded bytes: for a Document 64 plus its tensor, embedding, blob and text and its
    nested Documents; for an ndarray / bytes / str their length; else 0."""
    if type(x) is not Document:
        return _nbytes(x)
    tensor, embedding, blob, text, chunks, matches = _data_slots(x)
    n = 64
    if tensor is not None:
        n += _nbytes(tensor)
    if embedding is not None:
        n += _nbytes(embedding)
    if blob is not None:
        n += len(blob) if type(blob) is bytes else _nbytes(blob)
    if text is not None:
        n += len(text) if type(text) is str else _nbytes(text)
    if chunks:
        n += sum(map(approx_nbytes, chunks))
    if matches:
        n += sum(map(approx_nbytes, matches))
    return n


def _nbytes(v: Any) -> int:
    if v is None:
        return 0
    if isinstance(v, bytes | bytearray | str):
        return len(v)
    n = getattr(v, "nbytes", 0)  # numpy arrays, memoryviews
    return n if isinstance(n, int) else 0


def _defaulted(name: str, empty: Any) -> property:
    """A field that reads ``empty`` while unset (``list``: a new list, kept once read)."""
    slot = "_" + name
    get_slot = operator.attrgetter(slot)

    if empty is list:

        def get(self: Document) -> Any:
            v = get_slot(self)
            if v is None:
                v = []
                setattr(self, slot, v)
            return v

    else:

        def get(self: Document) -> Any:
            v = get_slot(self)
            return empty if v is None else v

    def set_(self: Document, value: Any) -> None:
        setattr(self, slot, value)

    return property(get, set_, doc=f"``{name}``; reads {empty!r} while unset, as in legacy")


class Document:
    """One document, with docarray 0.21's fields and constructor.

    ``Document(text=..., tensor=..., tags=...)`` sets fields; ``content=`` routes a
    str to ``text``, bytes to ``blob`` and anything else to ``tensor`` (the three
    exclude each other: setting one clears the others). ``Document(other)`` shares
    ``other``'s field values (``copy=True``: a deep copy), ``Document(dict)`` and
    ``Document(json_text)`` take the fields of a dict or JSON object; keywords that
    are not fields go into ``tags`` (``unknown_fields_handler='drop'`` drops them,
    ``'raise'`` raises). Unset fields read what docarray 0.21 reads: ``''`` for
    text, uri, mime_type, parent_id and modality, ``b''`` for blob, 0 / 0.0 for
    granularity, adjacency, weight and offset, ``None`` for tensor and embedding;
    ``tags``/``evaluations``/``scores``, ``location`` and ``chunks``/``matches`` are
    created empty on first access. ``id`` defaults to a fresh uuid4 hex and is
    always a str.
    """

    __slots__ = (*_SLOTS, "__dict__")  # __dict__: legacy code sets its own attributes

    def __init__(
        self,
        _obj: Any = None,
        copy: bool = False,
        *,
        id: Any = None,
        parent_id: str | None = None,
        granularity: int | None = None,
        adjacency: int | None = None,
        blob: bytes | None = None,
        tensor: Any = None,
        mime_type: str | None = None,
        text: str | None = None,
        weight: float | None = None,
        uri: str | None = None,
        tags: dict[str, Any] | None = None,
        offset: float | None = None,
        location: list[float] | None = None,
        embedding: Any = None,
        modality: str | None = None,
        evaluations: dict[str, Any] | None = None,
        scores: dict[str, Any] | None = None,
        chunks: Any = None,
        matches: Any = None,
        content: Any = None,
        field_resolver: dict[str, str] | None = None,
        unknown_fields_handler: str = "catch",
        **unknown: Any,
    ) -> None:
        if _obj is not None or unknown or field_resolver:
            fields = dict(
                id=id, parent_id=parent_id, granularity=granularity, adjacency=adjacency,
                blob=blob, tensor=tensor, mime_type=mime_type, text=text, weight=weight,
                uri=uri, tags=tags, offset=offset, location=location, embedding=embedding,
                modality=modality, evaluations=evaluations, scores=scores, chunks=chunks,
                matches=matches, content=content,
            )  # fmt: skip
            given = {k: v for k, v in fields.items() if v is not None}
            _lenient_init(self, _obj, copy, given, unknown, field_resolver, unknown_fields_handler)
            return
        if id is None:
            id = uuid.uuid4().hex
        elif not isinstance(id, str):
            id = _legacy_id(id)
        self.id = id
        self._parent_id = parent_id
        self._granularity = granularity
        self._adjacency = adjacency
        self._blob = blob
        self._tensor = tensor
        self._text = text
        self._mime_type = None
        self._uri = None
        self._weight = weight
        self._tags = _check_dict("tags", tags)
        self._offset = offset
        self._location = location
        self.embedding = embedding
        self._modality = modality
        self._evaluations = _check_dict("evaluations", evaluations)
        self._scores = _check_dict("scores", scores)
        self._chunks = None
        self._matches = None
        # as legacy: these go through their setters, in this order (the last of
        # text / blob / tensor / content that is given wins)
        if (text is not None) + (blob is not None) + (tensor is not None) > 1:
            for name, value in (("text", text), ("blob", blob), ("tensor", tensor)):
                if value is not None:
                    setattr(self, name, value)
        if content is not None:
            self.content = content
        if uri is not None:
            self.uri = uri
        if mime_type is not None:
            self.mime_type = mime_type
        if chunks is not None:
            self.chunks = chunks
        if matches is not None:
            self.matches = matches

    # ------------------------------------------------------------------ content
    @property
    def text(self) -> str:
        return "" if self._text is None else self._text

    @text.setter
    def text(self, value: str | None) -> None:
        if value is not None:
            self._blob = self._tensor = None
        self._text = value

    @property
    def blob(self) -> bytes:
        return b"" if self._blob is None else self._blob

    @blob.setter
    def blob(self, value: bytes | None) -> None:
        if value is not None:
            self._text = self._tensor = None
        self._blob = value

    @property
    def tensor(self) -> Any:
        return self._tensor

    @tensor.setter
    def tensor(self, value: Any) -> None:
        if value is not None:
            self._text = self._blob = None
        self._tensor = value

    @property
    def content(self) -> Any:
        """``text``, ``tensor`` or ``blob``, whichever is set (None if none is)."""
        ct = self.content_type
        return None if ct is None else getattr(self, ct)

    @content.setter
    def content(self, value: Any) -> None:
        self._text = self._blob = self._tensor = None
        if isinstance(value, bytes):
            self._blob = value
        elif isinstance(value, str):
            self._text = value
        elif value is not None:
            self._tensor = value

    @property
    def content_type(self) -> str | None:
        """``'text'``, ``'tensor'`` or ``'blob'``: which one holds the content."""
        if self._text:
            return "text"
        if self._tensor is not None:
            return "tensor"
        if self._blob:
            return "blob"
        return None

    # the scalar fields read legacy's default while unset ('' / 0 / 0.0 / [])
    parent_id = _defaulted("parent_id", "")
    granularity = _defaulted("granularity", 0)
    adjacency = _defaulted("adjacency", 0)
    weight = _defaulted("weight", 0.0)
    offset = _defaulted("offset", 0.0)
    modality = _defaulted("modality", "")
    location = _defaulted("location", list)

    @property
    def mime_type(self) -> str:
        return "" if self._mime_type is None else self._mime_type

    @mime_type.setter
    def mime_type(self, value: str | None) -> None:
        if value and "/" not in value:  # 'jpg' -> 'image/jpeg', as legacy guesses it
            value = mimetypes.guess_type(f"*.{value}")[0] or value
        self._mime_type = value

    @property
    def uri(self) -> str:
        return "" if self._uri is None else self._uri

    @uri.setter
    def uri(self, value: str | None) -> None:
        if value:
            guessed = mimetypes.guess_type(value)[0]
            if guessed:
                self._mime_type = guessed
        self._uri = value

    # ------------------------------------------------------------------ lazy containers
    @property
    def tags(self) -> dict[str, Any]:
        if self._tags is None:
            self._tags = {}
        return self._tags

    @tags.setter
    def tags(self, value: dict[str, Any] | None) -> None:
        self._tags = _check_dict("tags", value)

    @property
    def evaluations(self) -> dict[str, Any]:
        """``{name: NamedScore}`` (a missing name reads an empty score, as legacy)."""
        e = self._evaluations
        if e.__class__ is not _scores_class():
            e = self._evaluations = _scores_class()(e or ())
        return e

    @evaluations.setter
    def evaluations(self, value: dict[str, Any] | None) -> None:
        v = _check_dict("evaluations", value)
        self._evaluations = None if v is None else _scores_class()(v)

    @property
    def scores(self) -> dict[str, Any]:
        """``{name: NamedScore}``: ``d.scores['cosine'].value``, as legacy."""
        s = self._scores
        if s.__class__ is not _scores_class():
            s = self._scores = _scores_class()(s or ())
        return s

    @scores.setter
    def scores(self, value: dict[str, Any] | None) -> None:
        v = _check_dict("scores", value)
        self._scores = None if v is None else _scores_class()(v)

    @property
    def chunks(self) -> DocumentArray:
        c = self._chunks
        if c is None or c.__class__ is not _child_class("chunks") or c._ref is not self:
            c = self._chunks = _child_class("chunks")._of(self, c, adopt=False)
        return c

    @chunks.setter
    def chunks(self, value: Any) -> None:
        cls = _child_class("chunks")
        if isinstance(value, cls):  # already a child array (``d.chunks += ...``): as it is
            self._chunks = value
            return
        arr = _to_array("chunks", value)
        self._chunks = None if arr is None else cls._of(self, arr, adopt=True)

    @property
    def matches(self) -> DocumentArray:
        m = self._matches
        if m is None or m.__class__ is not _child_class("matches") or m._ref is not self:
            m = self._matches = _child_class("matches")._of(self, m, adopt=False)
        return m

    @matches.setter
    def matches(self, value: Any) -> None:
        cls = _child_class("matches")
        if isinstance(value, cls):  # already a child array (``d.matches += ...``): as it is
            self._matches = value
            return
        arr = _to_array("matches", value)
        self._matches = None if arr is None else cls._of(self, arr, adopt=True)

    # ------------------------------------------------------------------ state
    def __reduce__(self):
        # A flat tuple pickles several times faster than the default slots state dict.
        return (from_state, (_get_slots(self),))

    def is_set(self, field: str) -> bool:
        """True when ``field`` holds a value other than its empty one (as legacy:
        ``None``, ``''``, ``0``, an empty container and ``granularity``/``adjacency``
        0 all count as empty)."""
        if field not in FIELDS:
            raise ValueError(f"unknown field {field!r}; fields are: {', '.join(FIELDS)}")
        return _not_empty(field, getattr(self, _SLOT_OF[field]))

    @property
    def non_empty_fields(self) -> tuple[str, ...]:
        """Names of the fields that hold a value, in ``FIELDS`` order."""
        return tuple(f for f, v in zip(FIELDS, _get_slots(self), strict=True) if _not_empty(f, v))

    def pop(self, *fields: str) -> None:
        """Clear ``fields`` (back to unset)."""
        for f in fields:
            if f in _SLOT_OF and f != "id":
                setattr(self, _SLOT_OF[f], None)

    def clear(self) -> None:
        """Clear every field but ``id``."""
        self.pop(*FIELDS)

    def copy(self) -> Document:
        """A deep copy (arrays and containers are copied too)."""
        import copy

        return copy.deepcopy(self)

    def __deepcopy__(self, memo: dict) -> Document:
        import copy

        return from_state(copy.deepcopy(_get_slots(self), memo))

    def __eq__(self, other: object) -> bool:
        """Equal when the same fields are set, to equal values (as legacy; unlike
        docarray 0.21, tensors are compared too)."""
        if not isinstance(other, Document):
            return NotImplemented
        if self is other:
            return True
        mine, theirs = self.non_empty_fields, other.non_empty_fields
        if mine != theirs:
            return False
        return all(_values_equal(getattr(self, f), getattr(other, f)) for f in mine)

    def __hash__(self) -> int:
        """A hash of the scalar fields (as legacy, Documents are hashable although
        mutable: do not change one while it is a dict key or in a set)."""
        return hash(tuple(getattr(self, _SLOT_OF[f]) for f in _HASHED))

    # ------------------------------------------------------------------ display
    def __repr__(self) -> str:
        parts = [f"id={self.id!r}"]
        for f in self.non_empty_fields:
            if f == "id":
                continue
            parts.append(f"{f}={_short(getattr(self, f))}")
        return f"<Document {' '.join(parts)}>"

    def summary(self) -> None:
        """Print the fields that are set, one per line."""
        print(self._summary_text())

    def _summary_text(self) -> str:
        lines = [f"Document {self.id}"]
        for f in self.non_empty_fields:
            if f == "id":
                continue
            lines.append(f"  {f:<12} {_short(getattr(self, f), 70)}")
        return "\n".join(lines)

    # ------------------------------------------------------------------ image & uri methods
    # (thin wrappers over docmill.image and docmill.uri; each returns self)
    def load_uri_to_image_tensor(
        self,
        width: int | None = None,
        height: int | None = None,
        channel_axis: int = -1,
        timeout: float | None = 60.0,
    ) -> Document:
        """Decode the image at :attr:`uri` into :attr:`tensor` (uint8 RGB, H x W x 3 with the
        channels moved to ``channel_axis``; ``width``/``height`` resize). A multi-frame image
        (GIF, TIFF) fills :attr:`chunks` with one Document per frame instead, like legacy."""
        from docmill import image
        from docmill import uri as _uri

        data = _uri.read_uri(self._need("uri"), timeout=timeout)
        frames = image.decode_image_frames(data, width, height, channel_axis, uri=self.uri)
        if len(frames) == 1:
            self.tensor = frames[0]
        else:
            level = (self.granularity or 0) + 1
            self.chunks = [Document(tensor=t, parent_id=self.id, granularity=level) for t in frames]
        return self

    def convert_blob_to_image_tensor(
        self, width: int | None = None, height: int | None = None, channel_axis: int = -1
    ) -> Document:
        """Decode the image bytes in :attr:`blob` into :attr:`tensor` (see
        :meth:`load_uri_to_image_tensor`; first frame only)."""
        from docmill import image

        self.tensor = image.decode_image(self._need("blob"), width, height, channel_axis)
        return self

    def set_image_tensor_normalization(
        self,
        channel_axis: int = -1,
        img_mean: tuple[float, ...] = (0.485, 0.456, 0.406),
        img_std: tuple[float, ...] = (0.229, 0.224, 0.225),
    ) -> Document:
        """uint8 :attr:`tensor` -> float32 ``(tensor / 255 - mean) / std`` per channel."""
        from docmill import image

        self.tensor = image.normalize(self._need("tensor"), channel_axis, img_mean, img_std)
        return self

    def set_image_tensor_inv_normalization(
        self,
        channel_axis: int = -1,
        img_mean: tuple[float, ...] = (0.485, 0.456, 0.406),
        img_std: tuple[float, ...] = (0.229, 0.224, 0.225),
    ) -> Document:
        """Undo :meth:`set_image_tensor_normalization`: float :attr:`tensor` -> uint8."""
        from docmill import image

        self.tensor = image.inv_normalize(self._need("tensor"), channel_axis, img_mean, img_std)
        return self

    def set_image_tensor_channel_axis(
        self, original_channel_axis: int, new_channel_axis: int
    ) -> Document:
        """Move the channel axis of :attr:`tensor` (a view, no copy)."""
        from docmill import image

        t = self._need("tensor")
        self.tensor = image.move_channel_axis(t, original_channel_axis, new_channel_axis)
        return self

    def set_image_tensor_shape(self, shape: tuple[int, int], channel_axis: int = -1) -> Document:
        """Resample :attr:`tensor` to ``shape`` = (height, width), nearest neighbour."""
        from docmill import image

        self.tensor = image.resize_image(self._need("tensor"), shape, channel_axis)
        return self

    def set_image_tensor_resample(self, ratio: float, channel_axis: int = -1) -> Document:
        """Resample :attr:`tensor` by ``ratio`` (0.5 halves height and width)."""
        from docmill import image

        h, w = image.move_channel_axis(self._need("tensor"), channel_axis, -1).shape[:2]
        return self.set_image_tensor_shape((int(h * ratio), int(w * ratio)), channel_axis)

    def save_image_tensor_to_file(
        self, file: Any, channel_axis: int = -1, image_format: str = "png"
    ) -> Document:
        """Encode :attr:`tensor` as png/jpeg into ``file`` (a path, written atomically, or a
        binary file object)."""
        from docmill import image

        image.save_image(self._need("tensor"), file, channel_axis, image_format)
        return self

    def convert_image_tensor_to_blob(
        self, channel_axis: int = -1, image_format: str = "png"
    ) -> Document:
        """Encode :attr:`tensor` as png/jpeg bytes into :attr:`blob`."""
        from docmill import image

        self.blob = image.encode_image(self._need("tensor"), channel_axis, image_format)
        self.mime_type = "image/" + ("png" if image_format.lower() == "png" else "jpeg")
        return self

    def convert_image_tensor_to_uri(
        self, channel_axis: int = -1, image_format: str = "png"
    ) -> Document:
        """Encode :attr:`tensor` as a ``data:image/...;base64,`` URI into :attr:`uri`."""
        from docmill import image
        from docmill import uri as _uri

        self.uri = image.image_to_datauri(self._need("tensor"), channel_axis, image_format)
        self.mime_type = _uri.guess_mime_type(self.uri)
        return self

    def load_uri_to_blob(self, timeout: float | None = 60.0) -> Document:
        """Read the bytes at :attr:`uri` into :attr:`blob` (and guess :attr:`mime_type`
        when it is not set)."""
        from docmill import uri as _uri

        self.blob = _uri.read_uri(self._need("uri"), timeout=timeout)
        if not self.mime_type:
            self.mime_type = _uri.guess_mime_type(self.uri) or _uri.sniff_mime_type(self.blob)
        return self

    def load_uri_to_text(self, charset: str = "utf-8", timeout: float | None = 60.0) -> Document:
        """Read the text at :attr:`uri` (decoded with ``charset``) into :attr:`text`."""
        from docmill import uri as _uri

        self.text = _uri.read_uri_text(self._need("uri"), charset, timeout=timeout)
        if not self.mime_type:
            self.mime_type = _uri.guess_mime_type(self.uri) or "text/plain"
        return self

    def convert_uri_to_datauri(self, charset: str = "utf-8", base64: bool = False) -> Document:
        """Replace :attr:`uri` by a ``data:`` URI holding its content (unchanged when it
        already is one); the MIME type is :attr:`mime_type`, else guessed."""
        from docmill import uri as _uri

        self.uri = _uri.uri_to_datauri(self._need("uri"), self.mime_type, charset, base64)
        self.mime_type = self.mime_type or _uri.guess_mime_type(self.uri)
        return self

    def convert_blob_to_datauri(self, charset: str = "utf-8", base64: bool = False) -> Document:
        """Set :attr:`uri` to a ``data:`` URI holding :attr:`blob` (needs :attr:`mime_type`)."""
        from docmill import uri as _uri

        blob = self._need("blob")
        if not self.mime_type:
            raise ValueError(
                f"Document {self.id} has no mime_type; set it (e.g. 'image/png') "
                "before convert_blob_to_datauri"
            )
        self.uri = _uri.to_datauri(blob, self.mime_type, charset, base64)
        return self

    def _need(self, field: str) -> Any:
        """The value of ``field``, or a ValueError saying it must be set first."""
        value = getattr(self, _SLOT_OF[field])
        if value is None:
            raise ValueError(f"Document {self.id} has no {field}; set .{field} first")
        return value

    # ------------------------------------------------------------------ storage
    # (thin wrappers over docmill.io)
    def to_bytes(self, protocol: str = "docmill", compress: str | None = None) -> bytes:
        """Serialize this Document (``protocol``: 'docmill', 'protobuf' or 'pickle')."""
        from docmill import io

        return io.document_to_bytes(self, protocol=protocol, compress=compress)

    @classmethod
    def from_bytes(
        cls, data: bytes, protocol: str = "docmill", compress: str | None = None
    ) -> Document:
        """Inverse of :meth:`to_bytes`."""
        from docmill import io

        return io.document_from_bytes(data, protocol=protocol, compress=compress)

    def to_dict(self, protocol: str = "jsonschema", **kwargs: Any) -> dict[str, Any]:
        """JSON-friendly Python values, in legacy's ``'jsonschema'`` (every field) or
        ``'protobuf'`` shape (see :mod:`docmill.io._json`)."""
        from docmill import io

        return io.document_to_dict(self, protocol, **kwargs)

    @classmethod
    def from_dict(
        cls, obj: dict[str, Any], protocol: str | None = "jsonschema", **kwargs: Any
    ) -> Document:
        """Inverse of :meth:`to_dict` (another ``protocol``: ``Document(obj)``)."""
        from docmill import io

        return io.document_from_dict(obj, protocol, **kwargs)

    def to_json(self, protocol: str = "jsonschema", **kwargs: Any) -> str:
        """:meth:`to_dict` as a JSON string."""
        from docmill import io

        return io.document_to_json(self, protocol, **kwargs)

    @classmethod
    def from_json(
        cls, obj: str | bytes, protocol: str | None = "jsonschema", **kwargs: Any
    ) -> Document:
        """Inverse of :meth:`to_json`."""
        from docmill import io

        return io.document_from_json(obj, protocol, **kwargs)

    def to_protobuf(self, ndarray_type: str | None = None) -> Any:
        """This Document as docarray 0.21's ``DocumentProto`` message (protobuf extra).
        ``ndarray_type`` is accepted for legacy calls; arrays stay numpy."""
        from docmill.io._protobuf import document_to_proto

        _check_ndarray_type(ndarray_type)
        return document_to_proto(self)

    @classmethod
    def from_protobuf(cls, pb_msg: Any) -> Document:
        """Inverse of :meth:`to_protobuf`."""
        from docmill.io._protobuf import document_from_proto

        return document_from_proto(pb_msg)

    def __bytes__(self) -> bytes:
        return self.to_bytes()

    # ------------------------------------------------------------------ legacy converters
    def convert_text_to_datauri(self, charset: str = "utf-8", base64: bool = False) -> Document:
        """Set :attr:`uri` to a ``data:`` URI holding :attr:`text`."""
        from docmill import uri as _uri

        text = self._need("text")
        data = text.encode(charset if base64 else "utf-8")  # percent-encoding is of UTF-8
        self.uri = _uri.to_datauri(data, self.mime_type or "", charset, base64)
        return self

    def convert_content_to_datauri(self) -> Document:
        """:meth:`convert_text_to_datauri` or :meth:`convert_blob_to_datauri`, by content."""
        if self._text:
            return self.convert_text_to_datauri()
        if self._blob:
            return self.convert_blob_to_datauri()
        if self._tensor is not None:
            raise NotImplementedError(
                "a tensor has no data URI form; use convert_image_tensor_to_uri for images"
            )
        return self

    def convert_blob_to_tensor(
        self, dtype: str | None = None, count: int = -1, offset: int = 0
    ) -> Document:
        """Read :attr:`blob` as a 1-d ndarray of ``dtype`` (numpy.frombuffer) into
        :attr:`tensor`."""
        self.tensor = np.frombuffer(
            self._need("blob"), dtype=dtype or float, count=count, offset=offset
        )
        return self

    def convert_tensor_to_blob(self) -> Document:
        """Store :attr:`tensor`'s raw bytes in :attr:`blob`."""
        self.blob = np.ascontiguousarray(self._need("tensor")).tobytes()
        return self


# ---------------------------------------------------------------------- helpers
_SLOT_OF = dict(zip(FIELDS, _SLOTS, strict=True))
#: the empty value of a field besides None (docarray 0.21's defaults)
_EMPTY_VALUES: dict[str, Any] = {
    "granularity": 0,
    "adjacency": 0,
    "parent_id": "",
    "blob": b"",
    "text": "",
    "weight": 0.0,
    "uri": "",
    "mime_type": "",
    "offset": 0.0,
    "modality": "",
}
_CONTAINERS = frozenset(("tags", "evaluations", "scores", "chunks", "matches", "location"))
#: the fields legacy's hash covers (the hashable, scalar ones)
_HASHED = ("id", "parent_id", "granularity", "adjacency", "blob", "mime_type", "text",
           "weight", "uri", "offset", "modality")  # fmt: skip


def _not_empty(field: str, v: Any) -> bool:
    if v is None:
        return False
    if field in _CONTAINERS:
        return len(v) > 0
    empty = _EMPTY_VALUES.get(field, _NOTHING)
    if empty is _NOTHING or isinstance(v, np.ndarray):
        return True
    try:
        return bool(v != empty)
    except Exception:
        return True


_NOTHING = object()


def _legacy_id(value: Any) -> str:
    """A non-str id as a str (docarray 0.21 kept it as given; ids here are always str,
    so ``da['1']`` finds ``Document(id=1)``)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    return str(value)


_INIT_FIELDS = frozenset((*FIELDS, "content"))


def _lenient_init(
    doc: Document,
    obj: Any,
    copy: bool,
    given: dict[str, Any],
    unknown: dict[str, Any],
    resolver: dict[str, str] | None,
    handler: str,
) -> None:
    """``Document(other | dict | json_text, copy=..., **fields)`` as docarray 0.21 builds it."""
    if handler not in ("catch", "drop", "raise"):
        raise ValueError(
            f"unknown_fields_handler must be 'catch', 'drop' or 'raise', got {handler!r}"
        )
    if resolver is not None and not isinstance(resolver, dict):
        raise TypeError(f"field_resolver must be a dict of names, got {type(resolver).__name__}")
    base: Document | None = None
    fields: dict[str, Any] = {}
    if isinstance(obj, Document):
        base = obj
    elif isinstance(obj, str | bytes | bytearray):
        import json

        try:
            parsed = json.loads(obj)
        except ValueError as e:
            raise ValueError(
                f"a str given to Document() must be a JSON object of fields; {e}"
            ) from None
        if not isinstance(parsed, dict):
            raise ValueError(f"a str given to Document() must be a JSON object, got {parsed!r}")
        from docmill.io import document_from_dict

        base = document_from_dict(parsed, protocol="jsonschema")
    elif isinstance(obj, dict):
        fields.update(obj)
    elif obj is not None:
        raise TypeError(
            f"cannot build a Document from a {type(obj).__name__}; pass a Document, a dict "
            f"of fields, JSON text or keyword arguments"
        )
    fields.update(given)
    fields.update(unknown)
    if resolver:
        fields = {resolver.get(k, k): v for k, v in fields.items()}
    extra = {k: fields.pop(k) for k in list(fields) if k not in _INIT_FIELDS}
    if extra and handler == "raise":
        raise AttributeError(
            f"unknown Document field(s) {', '.join(map(repr, extra))} (with "
            f"unknown_fields_handler='raise'); fields are: {', '.join(FIELDS)}"
        )
    if base is None:
        Document.__init__(doc, **fields)
    else:
        state = _get_slots(base)
        if copy:
            import copy as _copy

            state = _copy.deepcopy(state)
        _set_slots(doc, state)  # shares the values, as legacy shares the data
        for name in _INIT_FIELDS:  # the keywords win, through the setters
            if name in fields:
                setattr(doc, name, fields[name])
    if extra and handler == "catch":
        doc.tags.update(extra)


@functools.cache
def _scores_class() -> Any:
    from docmill.score import Scores

    return Scores


@functools.cache
def _child_class(field: str) -> Any:
    from docmill.array import ChunkArray, MatchArray

    return ChunkArray if field == "chunks" else MatchArray


def _check_ndarray_type(ndarray_type: Any) -> None:
    if ndarray_type not in (None, "numpy", "list"):
        raise ValueError(f"ndarray_type must be None, 'numpy' or 'list', got {ndarray_type!r}")


def _check_dict(name: str, value: Any) -> dict | None:
    if value is not None and not isinstance(value, dict):
        raise TypeError(f"Document.{name} must be a dict, got {type(value).__name__}")
    return value


def _to_array(name: str, value: Any) -> DocumentArray | None:
    from docmill.array import DocumentArray

    if value is None or isinstance(value, DocumentArray):
        return value
    try:
        return DocumentArray(value)
    except TypeError as e:
        raise TypeError(f"Document.{name} must be an iterable of Documents: {e}") from None


def _values_equal(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        if not (isinstance(a, np.ndarray) and isinstance(b, np.ndarray)):
            return False
        return a.dtype == b.dtype and a.shape == b.shape and bool(np.array_equal(a, b))
    if a is None or b is None:
        # an empty lazy container equals "not set"
        return _is_empty(a) and _is_empty(b)
    if hasattr(a, "__len__") and hasattr(b, "__len__") and len(a) != len(b):
        return False
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_values_equal(a[k], b[k]) for k in a)
    try:
        return bool(a == b)
    except ValueError:  # e.g. lists holding arrays
        return False


def _is_empty(v: Any) -> bool:
    return v is None or ((isinstance(v, dict | list) or hasattr(v, "_docs")) and len(v) == 0)


def _short(v: Any, width: int = 40) -> str:
    if isinstance(v, np.ndarray):
        return f"ndarray{v.shape}:{v.dtype}"
    if isinstance(v, bytes):
        return f"bytes[{len(v)}]"
    if hasattr(v, "_docs"):  # DocumentArray
        return f"DocumentArray[{len(v)}]"
    s = repr(v)
    return s if len(s) <= width else s[: width - 3] + "..."
