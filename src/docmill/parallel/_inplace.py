"""The in-place layer, the one part of the engine that knows Documents: batches for
``map_batch``, in-place ``apply`` / ``apply_batch`` on every backend, and the
Document reducer of the shared-memory transport.

The streaming core and the backends know nothing about Documents. This module adds:

- **Batches.** ``map_batch`` cuts its input into batches here, in the caller:
  a :class:`~docmill.DocumentArray` when the items are Documents, else a list.
  ``shuffle`` draws the order with :mod:`random` (seed it for repeatable runs).
- **In place everywhere.** ``apply`` runs ``func`` through :class:`_InPlace`,
  which returns the Document itself when ``func`` returns ``None``. On threads
  that is the very object in the array; from a worker process it is the
  mutated copy. Writing back, per position: the same object -> nothing to do;
  a Document with the same id -> its state is copied into the original
  (:func:`docmill.document.set_state`), so references the caller holds stay valid;
  a Document with another id -> it replaces the original at its position
  (``da[i] = new`` keeps the id index true). ``apply_batch`` does the same per
  Document of each batch. Results are written back as they stream in, so
  after an error the Documents before the failing one are already updated.
- **Transport.** Registers how a Document crosses to a worker process
  (:func:`docmill.parallel._shm_codec.register_reducer`): its state tuple in one
  call, a large ``blob`` out of band.
"""

from __future__ import annotations

import operator
import pickle
from collections.abc import Callable, Iterable, Iterator
from contextlib import closing
from typing import Any

from docmill._array_access import batches
from docmill.array import DocumentArray
from docmill.document import (
    FIELDS,
    Document,
    approx_nbytes,
    from_state,
    from_states,
    set_state,
    shallow_copies,
    state_of,
)
from docmill.parallel._core import describe_item, stream
from docmill.parallel._options import Options
from docmill.parallel._runner import FAILED
from docmill.parallel._shm_codec import (
    register_batch_reducer,
    register_copier,
    register_reducer,
)

__all__ = [
    "AsBatch",
    "apply_doc_batches",
    "apply_docs",
    "batch_source",
    "describe_batch",
    "item_nbytes",
]


def item_nbytes(x: Any) -> int:
    """Rough payload bytes of an item (a Document's arrays, blob, text and nested
    Documents; an ndarray's or bytes' length), so the core keeps chunks of big items
    small."""
    return approx_nbytes(x)


def describe_batch(index: int, batch: Any) -> str:
    """``batch 2 (16 documents, ids 'a'..'p')`` for error messages."""
    try:
        n = len(batch)
    except TypeError:
        return f"batch {index}"
    ids = [d.id for d in batch if isinstance(d, Document)] if n else []
    if ids and len(ids) == n:
        span = f"id {ids[0]!r}" if n == 1 else f"ids {ids[0]!r}..{ids[-1]!r}"
        return f"batch {index} ({n} documents, {span})"
    return f"batch {index} ({n} items)"


def batch_source(items: Iterable[Any], batch_size: int, shuffle: bool) -> Iterator[list]:
    """Lazily cut ``items`` into batches, as lists (:class:`AsBatch` makes a batch of
    Documents a DocumentArray in the worker, off the consumer's path and after the
    transport: a list of Documents travels cheaper than an array). A bad ``shuffle``
    is refused now, not at the first batch."""
    return batches(items, batch_size, shuffle)


class _Wrapped:
    """A user's ``func`` with a layer around it; pickles as ``func`` itself."""

    __slots__ = ("func",)

    def __init__(self, func: Callable[[Any], Any]) -> None:
        self.func = func

    def __getstate__(self) -> Callable[[Any], Any]:
        return self.func

    def __setstate__(self, func: Callable[[Any], Any]) -> None:
        self.func = func


class AsBatch(_Wrapped):
    """``func`` for map_batch: called with a DocumentArray when the batch holds
    Documents (else with the list)."""

    __slots__ = ()

    def __call__(self, batch: list) -> Any:
        return self.func(_as_array(batch))

    async def acall(self, batch: list) -> Any:
        """The same for an ``async def`` func (the asyncio backend calls this)."""
        return await self.func(_as_array(batch))


def _as_array(batch: Any) -> Any:
    if type(batch) is list and batch and isinstance(batch[0], Document):
        return DocumentArray(batch)
    return batch


class _InPlace(_Wrapped):
    """``func`` for apply: hands back the (mutated) Document when ``func`` returns None."""

    __slots__ = ()

    def __call__(self, x: Any) -> Any:
        r = self.func(x)
        return x if r is None else r

    async def acall(self, x: Any) -> Any:
        """The same for an ``async def`` func (the asyncio backend calls this)."""
        r = await self.func(x)
        return x if r is None else r


def apply_docs(da: DocumentArray, func: Callable[[Document], Any], options: Options) -> None:
    """Run ``func`` on every Document of ``da`` and keep its changes (see the module doc)."""
    docs = list(da)  # positions are fixed at the start
    chunks = stream(
        _InPlace(func),
        iter(docs),
        options,
        total=len(docs),
        flat=False,
        sizeof=item_nbytes,
        source=docs,
    )
    with closing(chunks):
        for start, chunk, outs in chunks:
            for j, r in enumerate(outs):
                if r is not chunk[j] and r is not FAILED:  # a skipped one stays as it was
                    if not isinstance(r, Document):
                        raise _not_a_document("apply", r, describe_item(start + j, chunk[j]))
                    _put(da, start + j, chunk[j], r)


def apply_doc_batches(
    da: DocumentArray,
    func: Callable[[DocumentArray], Any],
    batch_size: int,
    shuffle: bool,
    options: Options,
) -> None:
    """Run ``func`` on batches of ``da`` and keep its changes (see the module doc)."""
    docs = list(da)
    spans = list(batches(range(len(docs)), batch_size, shuffle))  # positions per batch
    chunks = stream(
        _InPlace(func),
        (DocumentArray([docs[p] for p in span]) for span in spans),
        options,
        total=len(spans),
        unit="batch",
        describe=describe_batch,
        auto_chunks=False,
        flat=False,
    )
    with closing(chunks):
        for start, chunk, outs in chunks:
            for k, (batch, ret) in enumerate(zip(chunk, outs, strict=False)):
                if ret is FAILED:  # skipped (on_error='skip'): the batch stays as it was
                    continue
                b = start + k
                where = describe_batch(b, batch)
                if not isinstance(ret, Iterable) or not hasattr(ret, "__len__"):
                    raise TypeError(
                        f"apply_batch: func returned {type(ret).__name__} for {where}; it "
                        f"must return the batch, a DocumentArray of the same length, or None"
                    )
                if len(ret) != len(batch):
                    raise ValueError(
                        f"apply_batch: func returned {len(ret)} Documents for {where}; "
                        f"return one Document per input Document (or None to keep the "
                        f"batch's changes)"
                    )
                for p, r in zip(spans[b], ret, strict=True):
                    if r is not docs[p]:
                        if not isinstance(r, Document):
                            raise _not_a_document("apply_batch", r, f"document {p} of {where}")
                        _put(da, p, docs[p], r)


def _put(da: DocumentArray, i: int, orig: Document, new: Document) -> None:
    """Make position ``i`` of ``da`` hold what ``func`` made of ``orig``."""
    if new.id == orig.id:
        set_state(orig, state_of(new))  # same Document: keep the caller's object
    else:
        da[i] = new


def _not_a_document(caller: str, value: Any, where: str) -> TypeError:
    return TypeError(
        f"{caller}: func returned {type(value).__name__} for {where}; it must return a "
        f"Document (or None to keep the changes it made in place). Use map() to "
        f"collect other values"
    )


# ---------------------------------------------------------------------- transport
_BLOB = FIELDS.index("blob")


def _reduce_document(d: Document, min_buffer: int) -> Any:
    """A Document as its state tuple; a ``blob`` of ``min_buffer`` bytes or more out of band."""
    state = state_of(d)
    blob = state[_BLOB]
    if type(blob) is bytes and len(blob) >= min_buffer:
        state = (*state[:_BLOB], None, *state[_BLOB + 1 :])
        return _with_blob, (state, pickle.PickleBuffer(blob))
    return from_state, (state,)


def _with_blob(state: tuple, blob: Any) -> Document:
    # bytes cannot wrap foreign memory: the one copy on this side
    return from_state((*state[:_BLOB], bytes(blob), *state[_BLOB + 1 :]))


def _reduce_documents(docs: list[Document], min_buffer: int) -> Any:
    """A list of Documents as one list of state tuples (NotImplemented when a blob should
    go out of band: then each Document is reduced on its own)."""
    states = list(map(state_of, docs))
    for blob in map(_blob_of, states):
        if blob is not None and type(blob) is bytes and len(blob) >= min_buffer:
            return NotImplemented
    return from_states, (states,)


_blob_of = operator.itemgetter(_BLOB)
register_reducer(Document, _reduce_document)
register_batch_reducer(Document, _reduce_documents)
register_copier(Document, shallow_copies)
