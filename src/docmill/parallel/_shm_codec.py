"""Encoding for :mod:`docmill.parallel.shm`: what goes out of band, and the message layout.

:func:`encode` pickles an object with protocol 5 and hands back separately the
buffers of at least :data:`MIN_BUFFER` bytes (ndarray data, ``bytearray``,
``Document.blob``, datetime arrays, non-contiguous arrays) when together they
reach the transport's threshold; otherwise everything stays in the pickle. The
shared-memory transport places those buffers in one segment and sends::

    plain pickle (first byte 0x80)                  when nothing went out of band
    b"S" | u16 len(segment) | u16 len(reply) | u32 n | u64 reply capacity |
      segment name | reply name | n x (u64 offset, u64 length) | pickle

``segment`` holds the buffers at the given offsets; ``reply`` (tasks only) names
a segment the worker may write its result into. :func:`parse` splits a message;
the receiver rebuilds the object with
``pickle.loads(stream, buffers=[views at those spans])``.
"""

from __future__ import annotations

import io
import os
import pickle
import struct
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from docmill.parallel.transport import gc_paused

__all__ = [
    "ALIGN",
    "BATCH_REDUCERS",
    "COPIERS",
    "INHERITED",
    "MIN_BUFFER",
    "REDUCERS",
    "Batch",
    "Message",
    "Span",
    "batched",
    "encode",
    "is_plain",
    "layout",
    "make_message",
    "parse",
    "reducer_modules",
    "register_batch_reducer",
    "register_copier",
    "register_reducer",
    "results_were",
]

#: Buffers start on cache-line boundaries inside a segment: aligned for every dtype.
ALIGN = 64
#: Smaller buffers always stay in the pickle (not worth a header entry).
MIN_BUFFER = 4096

_SHM = 0x53  # "S"
_HEAD = struct.Struct("<BHHIQ")

#: type -> ``reduce(obj, min_buffer)``: a reduce tuple (whose args may hold
#: ``pickle.PickleBuffer`` s to send out of band) or NotImplemented. The codec knows no
#: model class: the model's layer registers its own (the Document reducer is in
#: :mod:`docmill.parallel._inplace`).
REDUCERS: dict[type, Callable[[Any, int], Any]] = {}
_REGISTRANTS: dict[str, None] = {}  # modules whose import registers reducers, in order


def register_reducer(cls: type, reduce: Callable[[Any, int], Any]) -> None:
    """Reduce instances of exactly ``cls`` with ``reduce`` (see :data:`REDUCERS`), in
    this process and in every worker started afterwards."""
    REDUCERS[cls] = reduce
    _REGISTRANTS[reduce.__module__] = None


#: type -> ``reduce_many(items, min_buffer)``: one reduce tuple for a whole list of
#: exactly that type (rebuilt as a plain list), or NotImplemented for one reduce each.
#: A chunk of 1,000 tiny Documents costs ~2.5x less to pickle as one state list than
#: as 1,000 reduce calls (measured: 0.58 vs 1.52 us per Document).
BATCH_REDUCERS: dict[type, Callable[[list, int], Any]] = {}


def register_batch_reducer(cls: type, reduce_many: Callable[[list, int], Any]) -> None:
    """Pickle a list of exactly ``cls`` instances with ``reduce_many`` (see
    :data:`BATCH_REDUCERS`), in this process and in every worker started afterwards."""
    BATCH_REDUCERS[cls] = reduce_many
    _REGISTRANTS[reduce_many.__module__] = None


class Batch:
    """A list of items of one type with a batch reducer; unpickles as a plain list."""

    __slots__ = ("items",)

    def __init__(self, items: list) -> None:
        self.items = items

    def __reduce__(self) -> Any:
        r = BATCH_REDUCERS[type(self.items[0])](self.items, MIN_BUFFER)
        return (list, (self.items,)) if r is NotImplemented else r


def batched(items: Any) -> Any:
    """``items`` wrapped as a :class:`Batch` when it is a list of two or more items of
    one type with a batch reducer, else ``items`` itself."""
    if type(items) is list and len(items) > 1 and _for_all(items, BATCH_REDUCERS):
        return Batch(items)
    return items


def _for_all(items: list, registry: dict[type, Any]) -> Any:
    """What ``registry`` holds for the type of ``items``, when they all are of exactly
    that one type (else None)."""
    cls = type(items[0])
    handler = registry.get(cls)
    if handler is None or not all(type(x) is cls for x in items):
        return None
    return handler


#: type -> ``copy_many(items)``: shallow copies of a list of exactly that type, so that
#: ``func`` in a forked worker changes copies of the inherited items (see :class:`Span`)
COPIERS: dict[type, Callable[[list], list]] = {}


def register_copier(cls: type, copy_many: Callable[[list], list]) -> None:
    """Hand ``func`` in a forked worker copies of inherited ``cls`` items, made by
    ``copy_many`` (see :data:`COPIERS`)."""
    COPIERS[cls] = copy_many
    _REGISTRANTS[copy_many.__module__] = None


#: token -> (pid of the process that made it, a list the workers inherited when they
#: were forked) (see :class:`Span`)
INHERITED: dict[str, tuple[int, list]] = {}


class Span:
    """Items ``start .. start + len(items)`` of an inherited sequence (``INHERITED[token]``):
    pickled as those three numbers, rebuilt in a forked worker from its own copy of
    the sequence, so the items themselves never cross the process boundary (as a
    torch DataLoader's workers index their dataset). With ``batch`` > 0 the items are
    lists of ``batch`` consecutive elements (the last may be shorter), and ``start``
    counts such lists."""

    __slots__ = ("batch", "items", "start", "token")

    def __init__(self, token: str, start: int, items: list, batch: int = 0) -> None:
        self.token, self.start, self.items, self.batch = token, start, items, batch

    def __reduce__(self) -> Any:
        if not self.batch:
            return _inherited, (self.token, self.start, self.start + len(self.items))
        first = self.start * self.batch
        stop = first + sum(map(len, self.items))
        return _inherited_batches, (self.token, first, stop, self.batch)


def _inherited(token: str, start: int, stop: int) -> list:
    owner, seq = INHERITED[token]
    items = seq[start:stop]
    if os.getpid() == owner:
        return items
    # In a worker, ``func`` must not change the inherited objects: a Document that
    # ``apply``'s func fills with its result stays referenced by the worker's copy of
    # the caller's array (and of any other list holding it), so every result would
    # stay alive in the worker and each new one need fresh pages. So the worker hands
    # ``func`` copies of items with a copier (Documents), and lets go of its copy of
    # the range (it reads each range once: a re-run sends the items themselves).
    # Both cost (a copy ~0.3 us a Document; letting go frees it in the worker), which
    # tiny items with tiny results feel and do not need: so that is done only while
    # the worker's last results were big (see `results_were`).
    if not _big_results[0]:
        return items
    seq[start:stop] = [None] * len(items)
    return _copies(items)


#: (in a worker) whether its last message of results was big: at first, yes
_big_results = [True]


def results_were(message: bytes, n: int) -> None:
    """A worker tells what its last ``n`` results were like (the message it sent):
    big ones (out of band, or pickled at :data:`MIN_BUFFER` bytes a result or more)
    make the next inherited items be copied. Small results held by items are
    harmless; when results grow again, only the chunk that showed it keeps its
    results alive."""
    _big_results[0] = not is_plain(message) or len(message) >= MIN_BUFFER * max(1, n)


def _inherited_batches(token: str, start: int, stop: int, batch: int) -> list[list]:
    items = _inherited(token, start, stop)
    return [items[i : i + batch] for i in range(0, len(items), batch)]


def _copies(items: list) -> list:
    """Shallow copies of the items (through the copier registered for their type), or
    ``items`` when they have none."""
    copy_many = _for_all(items, COPIERS) if items else None
    if copy_many is None:
        return items
    with gc_paused():
        return copy_many(items)


def reducer_modules() -> tuple[str, ...]:
    """The modules a worker imports to register the same reducers as this process."""
    return tuple(_REGISTRANTS)


def _as_dtype(a: np.ndarray, dtype: np.dtype) -> np.ndarray:
    return a.view(dtype)


def _strided(buf: Any, dtype: np.dtype, shape: tuple, strides: tuple, offset: int) -> np.ndarray:
    return np.ndarray(shape, dtype, buffer=buf, offset=offset, strides=strides)


def _dense_extent(a: np.ndarray) -> tuple | None:
    """A reduce tuple sending the memory ``a`` spans as one flat buffer, with its
    strides, when that memory holds nothing but ``a``'s elements (a transposed or
    reversed view, e.g. an image after a channel-axis move): the sender copies
    it with one memcpy and the receiver gets the same view, instead of a strided
    gather into a new contiguous array. None for sparse or overlapping views."""
    item = a.itemsize
    if a.size == 0 or any(s == 0 or s % item for s in a.strides):
        return None
    lo = sum((n - 1) * s for n, s in zip(a.shape, a.strides, strict=True) if s < 0)
    hi = sum((n - 1) * s for n, s in zip(a.shape, a.strides, strict=True) if s > 0)
    if hi - lo + item != a.nbytes:  # gaps (a[::2]) or overlaps: not a permutation
        return None
    # a view whose first element is the lowest address, then the span as 1-d
    first = a[tuple(slice(-1, None) if s < 0 else slice(0, 1) for s in a.strides)]
    flat = np.lib.stride_tricks.as_strided(first, shape=(a.size,), strides=(item,))
    flat = flat.reshape(-1).view(np.uint8)
    return _strided, (pickle.PickleBuffer(flat), a.dtype, a.shape, a.strides, -lo)


def _taker(min_buffer: int, buffers: list) -> Any:
    def take(pb: pickle.PickleBuffer) -> bool:
        try:
            m = pb.raw()
        except BufferError:  # a non-contiguous exporter: let pickle keep it in band
            return True
        if m.nbytes < min_buffer:
            return True  # in band
        buffers.append(m)
        return False

    return take


def _reduce_array(obj: Any, min_buffer: int) -> Any:
    """The reductions docmill's picklers add for ndarrays (see :class:`_Pickler`), or
    NotImplemented."""
    if type(obj) is np.ndarray:
        if obj.nbytes < min_buffer or obj.dtype.hasobject:
            return NotImplemented
        if not obj.flags.c_contiguous and not obj.flags.f_contiguous:
            dense = _dense_extent(obj)
            if dense is not None:
                return dense
            obj = np.ascontiguousarray(obj)  # sparse or overlapping: compact it
            if obj.dtype.kind not in "mM":
                return obj.__reduce_ex__(5)
        if obj.dtype.kind in "mM":  # numpy pickles datetimes in band: send int64s
            return _as_dtype, (obj.view(np.int64), obj.dtype)
    return NotImplemented


class _Pickler(pickle.Pickler):
    """Protocol-5 pickler that also takes out of band what pickle alone would not:
    non-contiguous arrays (as their memory and strides when they are a dense
    permutation of it, else made contiguous), datetime64 / timedelta64 arrays and
    ``Document.blob`` bytes."""

    def __init__(self, file: Any, min_buffer: int, buffers: list) -> None:
        # The callback is a closure, not a bound method: a pickler referring to
        # itself is a reference cycle, and the garbage collector then walks its
        # memo again and again while it pickles (~50% slower for many Documents).
        super().__init__(file, protocol=5, buffer_callback=_taker(min_buffer, buffers))
        self._min = min_buffer

    def reducer_override(self, obj: Any) -> Any:
        # called once per object of a non-builtin type (not per int, str, dict, ...)
        registered = REDUCERS.get(type(obj))
        if registered is not None:
            return registered(obj, self._min)
        return _reduce_array(obj, self._min)

    @staticmethod
    def dumps(obj: Any) -> bytes:
        return pickle.dumps(obj, protocol=5)


_cloud_pickler: Any = None


def _cloud() -> Any:
    """:class:`_Pickler`'s reductions on top of cloudpickle's (built on first use)."""
    global _cloud_pickler
    if _cloud_pickler is None:
        import cloudpickle

        class _CloudPickler(cloudpickle.Pickler):
            def __init__(self, file: Any, min_buffer: int, buffers: list) -> None:
                super().__init__(file, protocol=5, buffer_callback=_taker(min_buffer, buffers))
                self._min = min_buffer

            def reducer_override(self, obj: Any) -> Any:
                registered = REDUCERS.get(type(obj))
                r = (registered or _reduce_array)(obj, self._min)
                return super().reducer_override(obj) if r is NotImplemented else r

            @staticmethod
            def dumps(obj: Any) -> bytes:
                return cloudpickle.dumps(obj, protocol=5)

        _cloud_pickler = _CloudPickler
    return _cloud_pickler


def encode(obj: Any, threshold: int) -> tuple[bytes, list[memoryview]]:
    """Pickle ``obj``; return the stream and the buffers taken out of band (each a
    flat byte view).

    Buffers of at least :data:`MIN_BUFFER` bytes are candidates; they go out of
    band only if together they reach ``threshold`` bytes. What a segment costs
    is per message, not per buffer, so a task of 100 Documents with 30 KB
    tensors gains as much as one with a 3 MB tensor, while a message with a few
    KB of arrays stays a plain pickle (re-pickled in band: it is small).

    What the standard pickler refuses is pickled again with cloudpickle (see
    :func:`docmill.parallel.transport.dumps` for why).
    """
    if type(obj) is Span:  # a task of inherited items: three numbers, nothing to take out
        return pickle.dumps(obj, protocol=5), []
    try:
        return _encode(obj, threshold, _Pickler)
    except Exception as e:
        try:
            return _encode(obj, threshold, _cloud())
        except Exception:
            raise e from None


def _encode(obj: Any, threshold: int, pickler: Any) -> tuple[bytes, list[memoryview]]:
    buffers: list[memoryview] = []
    f = io.BytesIO()
    pickler(f, MIN_BUFFER, buffers).dump(obj)
    if buffers and sum(m.nbytes for m in buffers) < max(threshold, 1):
        return pickler.dumps(obj), []
    return f.getvalue(), buffers


def layout(buffers: list[memoryview]) -> tuple[list[int], int]:
    """Offsets that place ``buffers`` one after another, aligned; and the total size."""
    offsets: list[int] = []
    pos = 0
    for m in buffers:
        pos += -pos % ALIGN
        offsets.append(pos)
        pos += m.nbytes
    return offsets, pos


def make_message(
    stream: bytes,
    segment: str = "",
    buffers: list[memoryview] = (),  # type: ignore[assignment]
    offsets: list[int] = (),  # type: ignore[assignment]
    reply: str = "",
    reply_size: int = 0,
) -> bytes:
    name_b, reply_b = segment.encode(), reply.encode()
    spans = [v for off, m in zip(offsets, buffers, strict=True) for v in (off, m.nbytes)]
    return b"".join(
        (
            _HEAD.pack(_SHM, len(name_b), len(reply_b), len(buffers), reply_size),
            name_b,
            reply_b,
            struct.pack(f"<{len(spans)}Q", *spans),
            stream,
        )
    )


class Message(NamedTuple):
    segment: str
    reply: str
    reply_size: int
    spans: list[tuple[int, int]]  # (offset, length) of each out-of-band buffer
    stream: memoryview  # the pickle


def is_plain(payload: bytes) -> bool:
    """True when ``payload`` is a plain pickle (nothing out of band)."""
    return payload[0] != _SHM


def parse(payload: bytes) -> Message:
    """Split a message made by :func:`make_message`."""
    kind, name_len, reply_len, n, reply_size = _HEAD.unpack_from(payload)
    if kind != _SHM:
        raise ValueError("not a shared-memory transport message")
    pos = _HEAD.size
    name = bytes(payload[pos : pos + name_len]).decode()
    pos += name_len
    reply = bytes(payload[pos : pos + reply_len]).decode()
    pos += reply_len
    flat = struct.unpack_from(f"<{2 * n}Q", payload, pos)
    pos += 16 * n
    spans = list(zip(flat[::2], flat[1::2], strict=True))
    return Message(name, reply, reply_size, spans, memoryview(payload)[pos:])
