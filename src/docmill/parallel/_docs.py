"""The Document-aware layer: batches for ``map_batch`` and in-place ``apply`` /
``apply_batch`` on every backend.

The streaming core knows nothing about Documents. This module adds:

- **Batches.** ``map_batch`` cuts its input into batches here, in the caller:
  a :class:`~docmill.DocumentArray` when the items are Documents, else a list.
  ``shuffle`` draws the order with :mod:`random` (seed it for repeatable runs).
- **In place everywhere.** ``apply`` runs ``func`` through :class:`_InPlace`,
  which returns the Document itself when ``func`` returns ``None``. On threads
  that is the very object in the array; from a worker process it is the
  mutated copy. Writing back, per position: the same object -> nothing to do;
  a Document with the same id -> its state is copied into the original
  (``Document._update_from``), so references the caller holds stay valid;
  a Document with another id -> it replaces the original at its position
  (``da[i] = new`` keeps the id index true). ``apply_batch`` does the same per
  Document of each batch. Results are written back as they stream in, so
  after an error the Documents before the failing one are already updated.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import closing
from typing import Any

from docmill.array import DocumentArray
from docmill.document import Document
from docmill.parallel._core import describe_item, stream
from docmill.parallel._options import Options

__all__ = [
    "apply_doc_batches",
    "apply_docs",
    "batch_source",
    "describe_batch",
    "item_nbytes",
]


def item_nbytes(x: Any) -> int:
    """Rough size of an item's array data (a Document's tensor, embedding, blob and
    text; an ndarray; bytes): lets the core keep chunks of big items small."""
    if isinstance(x, Document):
        return _nbytes(x.tensor) + _nbytes(x.embedding) + _nbytes(x.blob) + _nbytes(x.text)
    return _nbytes(x)


def _nbytes(v: Any) -> int:
    if v is None:
        return 0
    if isinstance(v, bytes | bytearray | str):
        return len(v)
    n = getattr(v, "nbytes", 0)  # numpy arrays, memoryviews
    return n if isinstance(n, int) else 0


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


def _order(items: Iterable[Any], shuffle: bool) -> Sequence[Any] | Iterator[Any]:
    if not shuffle:
        return iter(items)
    if not hasattr(items, "__len__"):
        raise ValueError(
            f"shuffle=True needs an input with a length (a DocumentArray or a list); got "
            f"{type(items).__name__}. Collect it first (list(...)) or pass shuffle=False"
        )
    seq = list(items)
    random.shuffle(seq)
    return seq


def batch_source(items: Iterable[Any], batch_size: int, shuffle: bool) -> Iterator[Any]:
    """Lazily cut ``items`` into batches: DocumentArrays of Documents, else lists.
    (A bad ``shuffle`` is refused now, not at the first batch.)"""
    return _batches(iter(_order(items, shuffle)), batch_size)


def _batches(it: Iterator[Any], batch_size: int) -> Iterator[Any]:
    while True:
        chunk = []
        for x in it:
            chunk.append(x)
            if len(chunk) == batch_size:
                break
        if not chunk:
            return
        yield DocumentArray(chunk) if isinstance(chunk[0], Document) else chunk
        if len(chunk) < batch_size:
            return


class _InPlace:
    """``func`` for apply: hands back the (mutated) Document when ``func`` returns None."""

    __slots__ = ("func",)

    def __init__(self, func: Callable[[Any], Any]) -> None:
        self.func = func

    def __getstate__(self) -> Callable[[Any], Any]:
        return self.func

    def __setstate__(self, func: Callable[[Any], Any]) -> None:
        self.func = func

    def __call__(self, x: Any) -> Any:
        r = self.func(x)
        return x if r is None else r


def apply_docs(da: DocumentArray, func: Callable[[Document], Any], options: Options) -> None:
    """Run ``func`` on every Document of ``da`` and keep its changes (see the module doc)."""
    docs = list(da)  # positions are fixed at the start
    chunks = stream(
        _InPlace(func), iter(docs), options, total=len(docs), flat=False, sizeof=item_nbytes
    )
    with closing(chunks):
        for start, chunk, outs in chunks:
            for j, r in enumerate(outs):
                if r is not chunk[j]:
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
    order = list(range(len(docs)))
    if shuffle:
        random.shuffle(order)
    spans = range(0, len(order), batch_size)
    batches = (DocumentArray([docs[p] for p in order[s : s + batch_size]]) for s in spans)
    chunks = stream(
        _InPlace(func),
        batches,
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
                positions = order[b * batch_size : b * batch_size + len(batch)]
                for p, r in zip(positions, ret, strict=True):
                    if r is not docs[p]:
                        if not isinstance(r, Document):
                            raise _not_a_document("apply_batch", r, f"document {p} of {where}")
                        _put(da, p, docs[p], r)


def _put(da: DocumentArray, i: int, orig: Document, new: Document) -> None:
    """Make position ``i`` of ``da`` hold what ``func`` made of ``orig``."""
    if new.id == orig.id:
        orig._update_from(new)  # same Document: keep the caller's object, take the new state
    else:
        da[i] = new


def _not_a_document(caller: str, value: Any, where: str) -> TypeError:
    return TypeError(
        f"{caller}: func returned {type(value).__name__} for {where}; it must return a "
        f"Document (or None to keep the changes it made in place). Use map() to "
        f"collect other values"
    )
