"""The Document: one unit of data (text, image, tensor, embedding) with its metadata.

A Document is a plain object with the legacy docarray field names. It knows
nothing about pools or files: image work lives in :mod:`docmill.image`,
storage in :mod:`docmill.io`; the methods here are thin wrappers that return
``self`` so calls chain::

    d = Document(uri="cat.jpg").load_uri_to_image_tensor().set_image_tensor_normalization()
"""

from __future__ import annotations

import operator
import uuid
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from docmill.array import DocumentArray

__all__ = ["FIELDS", "Document", "approx_nbytes", "from_state", "set_state", "state_of"]

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
_SLOTS = tuple("_" + f if f in _LAZY_DICTS + _LAZY_ARRAYS else f for f in FIELDS)


# Pickling many small Documents is the hot path of the process backend: read all
# slots with one attrgetter call and write them with one generated tuple unpacking.
_get_slots = operator.attrgetter(*_SLOTS)
_ns: dict[str, Any] = {}
exec(  # builds `self.a, self.b, ... = state`, several times faster than a setattr loop
    "def _set_slots(self, state):\n    " + ", ".join("self." + s for s in _SLOTS) + " = state\n",
    _ns,
)
_set_slots = _ns["_set_slots"]


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


_rebuild = from_state  # the name pickles written by docmill 0.1 refer to


_data_slots = operator.attrgetter("tensor", "embedding", "blob", "text", "_chunks", "_matches")


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


class Document:
    """One document. Every field defaults to ``None`` (``id`` to a fresh uuid4 hex;
    ``tags``/``evaluations``/``scores`` to an empty dict and ``chunks``/``matches``
    to an empty DocumentArray, created on first access)."""

    __slots__ = _SLOTS

    def __init__(
        self,
        id: str | None = None,
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
    ) -> None:
        if id is None:
            id = uuid.uuid4().hex
        elif not isinstance(id, str):
            raise TypeError(f"Document id must be a str, got {type(id).__name__}: {id!r}")
        self.id = id
        self.parent_id = parent_id
        self.granularity = granularity
        self.adjacency = adjacency
        self.blob = blob
        self.tensor = tensor
        self.mime_type = mime_type
        self.text = text
        self.weight = weight
        self.uri = uri
        self._tags = _check_dict("tags", tags)
        self.offset = offset
        self.location = location
        self.embedding = embedding
        self.modality = modality
        self._evaluations = _check_dict("evaluations", evaluations)
        self._scores = _check_dict("scores", scores)
        self._chunks = None
        self._matches = None
        if chunks is not None:
            self.chunks = chunks
        if matches is not None:
            self.matches = matches

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
        if self._evaluations is None:
            self._evaluations = {}
        return self._evaluations

    @evaluations.setter
    def evaluations(self, value: dict[str, Any] | None) -> None:
        self._evaluations = _check_dict("evaluations", value)

    @property
    def scores(self) -> dict[str, Any]:
        if self._scores is None:
            self._scores = {}
        return self._scores

    @scores.setter
    def scores(self, value: dict[str, Any] | None) -> None:
        self._scores = _check_dict("scores", value)

    @property
    def chunks(self) -> DocumentArray:
        if self._chunks is None:
            from docmill.array import DocumentArray

            self._chunks = DocumentArray()
        return self._chunks

    @chunks.setter
    def chunks(self, value: Any) -> None:
        self._chunks = _to_array("chunks", value)

    @property
    def matches(self) -> DocumentArray:
        if self._matches is None:
            from docmill.array import DocumentArray

            self._matches = DocumentArray()
        return self._matches

    @matches.setter
    def matches(self, value: Any) -> None:
        self._matches = _to_array("matches", value)

    # ------------------------------------------------------------------ state
    def __reduce__(self):
        # A flat tuple pickles several times faster than the default slots state dict.
        return (from_state, (_get_slots(self),))

    def is_set(self, field: str) -> bool:
        """True when ``field`` holds a non-empty value."""
        if field not in FIELDS:
            raise ValueError(f"unknown field {field!r}; fields are: {', '.join(FIELDS)}")
        if field in _LAZY_DICTS or field in _LAZY_ARRAYS:
            v = getattr(self, "_" + field)
            return v is not None and len(v) > 0
        return getattr(self, field) is not None

    def non_empty_fields(self) -> tuple[str, ...]:
        """Names of the fields that hold a value, in ``FIELDS`` order."""
        return tuple(f for f in FIELDS if self.is_set(f))

    def copy(self) -> Document:
        """A deep copy (arrays and containers are copied too)."""
        import copy

        return copy.deepcopy(self)

    def __deepcopy__(self, memo: dict) -> Document:
        import copy

        return from_state(copy.deepcopy(_get_slots(self), memo))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Document):
            return NotImplemented
        if self is other:
            return True
        return all(_values_equal(getattr(self, f), getattr(other, f)) for f in FIELDS)

    __hash__ = None  # type: ignore[assignment]  # equality is by content, like a dataclass

    # ------------------------------------------------------------------ display
    def __repr__(self) -> str:
        parts = [f"id={self.id!r}"]
        for f in self.non_empty_fields():
            if f == "id":
                continue
            parts.append(f"{f}={_short(getattr(self, f))}")
        return f"<Document {' '.join(parts)}>"

    def summary(self) -> None:
        """Print the fields that are set, one per line."""
        print(self._summary_text())

    def _summary_text(self) -> str:
        lines = [f"Document {self.id}"]
        for f in self.non_empty_fields():
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
        value = getattr(self, field)
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

    def to_dict(self) -> dict[str, Any]:
        """The set fields as JSON-friendly Python values (ndarrays become nested lists)."""
        from docmill import io

        return io.document_to_dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Document:
        """Inverse of :meth:`to_dict`."""
        from docmill import io

        return io.document_from_dict(data)

    def to_json(self) -> str:
        """:meth:`to_dict` as a JSON string."""
        from docmill import io

        return io.document_to_json(self)

    @classmethod
    def from_json(cls, data: str | bytes) -> Document:
        """Inverse of :meth:`to_json`."""
        from docmill import io

        return io.document_from_json(data)


# ---------------------------------------------------------------------- helpers
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
