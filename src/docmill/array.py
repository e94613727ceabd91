"""DocumentArray: a list of Documents with an id index.

A thin class: it keeps the list and the id index true and delegates the rest —
parallel work to :mod:`docmill.parallel`, storage to :mod:`docmill.io`, file
listing to :mod:`docmill.files`, key parsing and bulk fields to
:mod:`docmill._array_access`.

The index maps each id to its position, and every mutation made through the
array keeps it exact. A Document's id can still be changed behind the array's
back (``da[0].id = 'x'``), so a lookup checks that the Document it finds has
the id asked for and rebuilds the index when it has not; a lookup that finds
nothing rebuilds once before raising ``KeyError``. Only ``in`` and the
duplicate check of ``append``/``extend``/``insert`` trust a miss without
rebuilding, to stay O(1); they see such a change after the next lookup or
:meth:`DocumentArray.reindex`.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Iterator, MutableSequence, Sequence
from typing import Any, overload

from docmill import _array_access as sup
from docmill._checks import check_int, is_int
from docmill.document import Document

__all__ = ["DocumentArray"]


def _rebuild_array(cls: type[DocumentArray], docs: list[Document]) -> DocumentArray:
    return cls._from_docs(list(docs))


class DocumentArray(MutableSequence[Document]):
    """A list of :class:`Document` with O(1) lookup by id.

    Keys accepted by ``da[key]``, ``da[key] = value`` and ``del da[key]``:

    - an ``int`` (negative counts from the end) or a ``str`` id: one Document;
    - a ``slice``, a list of ints, a list of ids, a boolean mask (list or numpy
      array of ``len(da)`` bools) or a 1-d numpy array: a new DocumentArray
      holding the *same* Document objects;
    - ``(docs_key, 'field')`` or ``(docs_key, ['f1', 'f2'])``: field values
      (``tensor``/``embedding`` stacked into one ndarray), e.g. ``da[:, 'text']``;
      assigning a list/ndarray gives one value per Document, any other value
      goes to every Document;
    - legacy traversal paths, read-only: ``'@r'`` roots, ``'@c'`` chunks, ``'@m'``
      matches, ``'@cm'`` matches of chunks, ``'@r,c'`` several, each step with an
      optional slice (``'@c:1'``, ``'@c1:3c'``, ``'@r:1cc,m'``);
    - ``...``: every Document, flattened through chunks and matches (as legacy).

    Ids are unique: adding a Document whose id is already present raises
    ``ValueError``; assigning at the position (or id) of a Document replaces it.
    (A view read with repeated positions, ``da[[1, 1]]``, may hold one twice.)

    ``DocumentArray(docs, copy=True)`` holds deep copies; ``storage='memory'`` and
    ``config=None`` are accepted for legacy code (arrays live in memory; persist
    them with ``save_binary`` or ``push``), and ``with da:`` is a no-op.
    """

    def __init__(
        self,
        docs: Iterable[Document] | Document | None = None,
        copy: bool = False,
        storage: str = "memory",
        config: Any = None,
        subindex_configs: Any = None,
    ) -> None:
        if storage != "memory":
            raise ValueError(
                f"storage={storage!r}: docmill keeps DocumentArrays in memory (there are no "
                f"storage backends); persist one with da.save_binary(...) or da.push(...)"
            )
        if config or subindex_configs:
            raise ValueError(
                "config= and subindex_configs= configure legacy storage backends, which "
                "docmill does not have; keep them None"
            )
        self._docs: list[Document] = []
        self._index: dict[str, int] = {}
        if docs is not None:
            docs = (docs,) if isinstance(docs, Document) else docs
            if copy:
                docs = [d.copy() if isinstance(d, Document) else d for d in docs]
            self.extend(docs)

    def __enter__(self) -> DocumentArray:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    @classmethod
    def _from_docs(cls, docs: list[Document]) -> DocumentArray:
        """Wrap ``docs`` (a fresh list of Documents, not copied); ids must be unique."""
        da = cls.__new__(cls)
        da._docs = docs
        da._index = sup.build_index(docs)
        return da

    @classmethod
    def _view(cls, docs: list[Document]) -> DocumentArray:
        """Like :meth:`_from_docs`, for what a key reads: a Document may come twice (an
        id then names its first place)."""
        da = cls.__new__(cls)
        da._docs = docs
        index = dict(
            zip(map(sup.get_id, reversed(docs)), range(len(docs) - 1, -1, -1), strict=True)
        )
        da._index = index
        return da

    @classmethod
    def empty(cls, size: int = 0) -> DocumentArray:
        """``size`` new, empty Documents, each with a fresh id."""
        check_int("size", size, 0)
        return cls._from_docs(sup.empty_documents(size))

    @classmethod
    def from_files(
        cls,
        patterns: str | Sequence[str],
        recursive: bool = True,
        size: int | None = None,
        sampling_rate: float | None = None,
        read_mode: str | None = None,
        to_dataturi: bool = False,
        exclude_regex: str | None = None,
    ) -> DocumentArray:
        """Every Document :func:`docmill.from_files` yields, in one array (same parameters)."""
        from docmill.files import from_files

        docs = from_files(
            patterns,
            recursive=recursive,
            size=size,
            sampling_rate=sampling_rate,
            read_mode=read_mode,
            to_dataturi=to_dataturi,
            exclude_regex=exclude_regex,
        )
        return cls._from_docs(list(docs))

    # ------------------------------------------------------------------ basics
    def __len__(self) -> int:
        return len(self._docs)

    def __iter__(self) -> Iterator[Document]:
        return iter(self._docs)

    def __reversed__(self) -> Iterator[Document]:
        return reversed(self._docs)

    def __contains__(self, item: object) -> bool:
        """``id in da`` or ``doc in da`` (a Document is looked up by its id, as in legacy)."""
        if isinstance(item, Document):
            item = item.id
        return isinstance(item, str) and self._lookup(item) is not None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DocumentArray):
            return NotImplemented
        return len(self) == len(other) and all(
            a == b for a, b in zip(self._docs, other._docs, strict=True)
        )

    __hash__ = None  # type: ignore[assignment]  # mutable, compared by content

    def __repr__(self) -> str:
        return f"<{type(self).__name__} (length={len(self)})>"

    def __reduce__(self):
        # pickle the Documents only; the index is rebuilt on load
        return (_rebuild_array, (type(self), self._docs))

    def __add__(self, other: Iterable[Document]) -> DocumentArray:
        out = self._from_docs(list(self._docs))
        out.extend(other)
        return out

    def __iadd__(self, other: Iterable[Document]) -> DocumentArray:
        self.extend(other)
        return self

    # ------------------------------------------------------------------ id index
    def reindex(self) -> None:
        """Rebuild the id index from the Documents' current ids.

        Only needed after changing the id of a Document inside the array, and
        only for ``in`` / ``append`` to see the new id at once.
        """
        self._index = sup.build_index(self._docs)

    def _lookup(self, doc_id: str) -> int | None:
        """Position of ``doc_id`` or ``None``; a hit is verified, a stale hit rebuilds."""
        pos = self._index.get(doc_id)
        if pos is None:
            return None
        if pos < len(self._docs) and self._docs[pos].id == doc_id:
            return pos
        self.reindex()  # an id was changed after insertion
        return self._index.get(doc_id)

    def _find(self, doc_id: str) -> int:
        """Position of ``doc_id``; rebuilds the index once before raising ``KeyError``."""
        pos = self._lookup(doc_id)
        if pos is None:
            self.reindex()
            pos = self._index.get(doc_id)
            if pos is None:
                raise KeyError(f"no Document with id {doc_id!r} in this {type(self).__name__}")
        return pos

    def _pos(self, i: int) -> int:
        n = len(self._docs)
        if not -n <= i < n:
            raise IndexError(f"position {i} is out of range for a DocumentArray of length {n}")
        return i + n if i < 0 else i

    def _check_new(self, doc_id: str, replacing: set[int] | frozenset[int] = frozenset()) -> None:
        """``ValueError`` if ``doc_id`` is present anywhere but at the ``replacing`` positions."""
        pos = self._lookup(doc_id)
        if pos is not None and pos not in replacing:
            raise ValueError(
                f"a Document with id {doc_id!r} is already in this DocumentArray "
                f"(at position {pos}); ids must be unique"
            )

    def _shift_index(self, start: int) -> None:
        """Re-point the ids at positions ``start..`` after an insert or delete there."""
        docs = self._docs
        self._index.update(zip(map(sup.get_id, docs[start:]), range(start, len(docs)), strict=True))

    # ------------------------------------------------------------------ list methods
    def append(self, doc: Document) -> None:
        """Add ``doc`` at the end; ``ValueError`` if its id is already present."""
        if not isinstance(doc, Document):
            raise TypeError(f"a DocumentArray holds Documents, got {type(doc).__name__}")
        self._check_new(doc.id)
        self._index[doc.id] = len(self._docs)
        self._docs.append(doc)

    def extend(self, docs: Iterable[Document]) -> None:
        """Add every Document of ``docs`` at the end: all of them, or none on an error."""
        if isinstance(docs, Document):
            raise TypeError("extend() takes an iterable of Documents; use append() for one")
        new = list(docs._docs if isinstance(docs, DocumentArray) else docs)
        sup.check_documents(new)
        new_index = sup.build_index(new, start=len(self._docs))
        if self._index and not self._index.keys().isdisjoint(new_index):
            for doc_id in new_index:
                self._check_new(doc_id)
        self._docs.extend(new)
        self._index.update(new_index)

    def insert(self, index: int, doc: Document) -> None:
        """Insert ``doc`` before position ``index`` (list semantics)."""
        if not isinstance(doc, Document):
            raise TypeError(f"a DocumentArray holds Documents, got {type(doc).__name__}")
        self._check_new(doc.id)
        n = len(self._docs)
        i = min(max(index + n, 0) if index < 0 else index, n)
        self._docs.insert(i, doc)
        self._shift_index(i)

    def index(self, value: Document | str, start: int = 0, stop: int | None = None) -> int:
        """Position of a Document (by its id) or of an id; ``ValueError`` if absent."""
        doc_id = value.id if isinstance(value, Document) else value
        pos = self._lookup(doc_id) if isinstance(doc_id, str) else None
        lo, hi, _ = slice(start, stop).indices(len(self._docs))
        if pos is None or not lo <= pos < hi:
            raise ValueError(f"{doc_id!r} is not in this DocumentArray")
        return pos

    def count(self, value: Document | str) -> int:
        """1 if a Document with this id is present, else 0 (ids are unique)."""
        return int(value in self)

    def clear(self) -> None:
        """Remove every Document."""
        self._docs.clear()
        self._index.clear()

    def reverse(self) -> None:
        """Reverse the order in place."""
        self._docs.reverse()
        self.reindex()

    # ------------------------------------------------------------------ get / set / del
    @overload
    def __getitem__(self, key: int) -> Document: ...

    @overload
    def __getitem__(self, key: slice) -> DocumentArray: ...

    @overload
    def __getitem__(self, key: Any) -> Any: ...

    def __getitem__(self, key: Any) -> Any:
        if is_int(key):
            return self._docs[self._pos(int(key))]
        if isinstance(key, str):
            if key.startswith("@"):
                return self._view(sup.traverse(self._docs, key))
            return self._docs[self._find(key)]
        if key is Ellipsis:
            return self._view(sup.flatten(self._docs))
        if isinstance(key, slice):
            return self._from_docs(self._docs[key])
        if isinstance(key, tuple) and (fk := sup.field_key(self, key)) is not None:
            docs_key, fields, one_field = fk
            target = self[docs_key]
            if isinstance(target, Document):
                values = [getattr(target, f) for f in fields]
            else:
                values = [sup.bulk_get(target._docs, f) for f in fields]
            return values[0] if one_field else values
        docs = self._docs
        return self._view([docs[p] for p in sup.positions(self, key)])

    def __setitem__(self, key: Any, value: Any) -> None:
        if isinstance(key, tuple) and (fk := sup.field_key(self, key)) is not None:
            docs_key, fields, one_field = fk
            positions, one_doc = self._key_positions(docs_key)
            values = [value] if one_field else sup.as_list(value, len(fields), "field")
            for f, v in zip(fields, values, strict=True):
                self._set_field(positions, f, [v] if one_doc else v, strict=False)
        elif isinstance(key, slice):
            self._set_slice(key, value)
        else:
            positions, one_doc = self._key_positions(key)
            if one_doc != isinstance(value, Document):
                raise TypeError(
                    f"assign a Document to one position or id, a sequence of Documents to "
                    f"several; got {type(value).__name__} for key {key!r}"
                )
            self._replace(positions, [value] if one_doc else list(value))

    def __delitem__(self, key: Any) -> None:
        if isinstance(key, tuple) and (fk := sup.field_key(self, key)) is not None:
            docs_key, fields, _ = fk
            if "id" in fields:
                raise ValueError("cannot delete the id of a Document")
            positions, _ = self._key_positions(docs_key)
            for f in fields:
                self._set_field(positions, f, None, strict=False)
            return
        positions = self._key_positions(slice(None) if key is ... else key)[0]
        if len(positions) == 1:
            doc = self._docs.pop(positions[0])
            if self._index.get(doc.id) == positions[0]:
                del self._index[doc.id]
            self._shift_index(positions[0])
        elif positions:
            drop = set(positions)
            self._docs[:] = [d for i, d in enumerate(self._docs) if i not in drop]
            self.reindex()

    def _key_positions(self, key: Any) -> tuple[list[int], bool]:
        """Positions for any Document key, and whether the key names one Document."""
        if is_int(key):
            return [self._pos(int(key))], True
        if isinstance(key, str):
            if key.startswith("@"):
                raise TypeError(f"traversal path {key!r} can only be read, not assigned or deleted")
            return [self._find(key)], True
        return sup.positions(self, key), False

    def _replace(self, positions: list[int], new: list[Document]) -> None:
        """Put ``new[k]`` at ``positions[k]``; the ids being replaced may be reused."""
        if len(new) != len(positions):
            raise ValueError(
                f"cannot assign {len(new)} Documents to {len(positions)} positions; "
                "the lengths must match"
            )
        sup.check_documents(new)
        replacing = set(positions)
        if len(replacing) != len(positions):
            raise ValueError("the key selects the same position more than once")
        sup.build_index(new)  # raises on an id repeated among the new Documents
        for d in new:
            self._check_new(d.id, replacing)
        docs, index = self._docs, self._index
        for p in positions:
            if index.get(docs[p].id) == p:
                del index[docs[p].id]
        for p, d in zip(positions, new, strict=True):
            docs[p] = d
            index[d.id] = p

    def _set_slice(self, key: slice, value: Iterable[Document]) -> None:
        if isinstance(value, Document):
            raise TypeError("assign a sequence of Documents to a slice, not one Document")
        new = list(value)
        sup.check_documents(new)
        replaced = range(len(self._docs))[key]
        if key.step not in (None, 1) and len(new) != len(replaced):
            raise ValueError(
                f"cannot assign {len(new)} Documents to an extended slice of "
                f"{len(replaced)} positions; the lengths must match"
            )
        sup.build_index(new)
        replacing = set(replaced)
        for d in new:
            self._check_new(d.id, replacing)
        self._docs[key] = new
        self.reindex()

    # ------------------------------------------------------------------ fields in bulk
    texts = sup.BulkField("text", "Every Document's ``text`` (a list); settable.")
    blobs = sup.BulkField("blob", "Every Document's ``blob`` (a list); settable.")
    uris = sup.BulkField("uri", "Every Document's ``uri`` (a list); settable.")
    tags = sup.BulkField("tags", "Every Document's ``tags`` dict (a list); settable.")
    tensors = sup.BulkField(
        "tensor",
        "Every ``tensor`` stacked along a new first axis (``None`` when none is set); "
        "settable from an ndarray (split along axis 0) or a sequence of arrays.",
    )
    embeddings = sup.BulkField("embedding", "Every ``embedding``, stacked like ``tensors``.")

    @property
    def contents(self) -> Any:
        """Every Document's ``content`` (a list; ``None`` when the array is empty)."""
        return [d.content for d in self._docs] if self._docs else None

    @contents.setter
    def contents(self, value: Any) -> None:
        values = sup.as_list(value, len(self._docs), "Document")
        for d, v in zip(self._docs, values, strict=True):
            d.content = v

    def _set_field(self, positions: list[int], field: str, value: Any, strict: bool) -> None:
        """Set ``field`` on the Documents at ``positions`` (see :func:`_array_access.spread`).

        Bulk setters are ``strict``: a sequence of ``len(positions)`` values or ``None``.
        """
        values = sup.spread(field, value, len(positions), strict)
        docs = self._docs
        if field == "id":
            self._set_ids(positions, values)
            return
        for p, v in zip(positions, values, strict=True):
            try:
                setattr(docs[p], field, v)
            except (TypeError, ValueError) as e:
                raise type(e)(f"Document {p} (id {docs[p].id!r}): {e}") from e

    def _set_ids(self, positions: list[int], ids: list[Any]) -> None:
        for v in ids:
            if not isinstance(v, str):
                raise TypeError(f"a Document id must be a str, got {type(v).__name__}: {v!r}")
        if len(set(ids)) != len(ids):
            raise ValueError(f"the new ids repeat a value: {ids!r}; ids must be unique")
        replacing = set(positions)
        for v in ids:
            self._check_new(v, replacing)
        for p, v in zip(positions, ids, strict=True):
            self._docs[p].id = v
        self.reindex()

    # ------------------------------------------------------------------ batches & sampling
    def batch(
        self, batch_size: int, shuffle: bool = False, show_progress: bool = False
    ) -> Iterator[DocumentArray]:
        """Yield DocumentArrays of ``batch_size`` Documents (the last may be shorter).

        The batches hold the same Document objects as this array, so changes
        made through them are seen here. ``shuffle`` draws from the
        :mod:`random` module (``random.seed`` makes it repeatable, as in legacy);
        ``show_progress`` shows a tqdm bar.
        """
        check_int("batch_size", batch_size)
        # the Documents present when iteration starts
        parts = sup.batches(list(self._docs), batch_size, shuffle)
        return self._batches(parts, -(-len(self._docs) // batch_size), show_progress)

    def _batches(
        self, parts: Iterator[list], n: int, show_progress: bool
    ) -> Iterator[DocumentArray]:
        bar = None
        if show_progress:
            from tqdm import tqdm

            bar = tqdm(total=n, desc="Batching documents", unit="batch")
        try:
            for part in parts:
                yield self._from_docs(part)
                if bar is not None:
                    bar.update()
        finally:
            if bar is not None:
                bar.close()

    def batch_ids(self, batch_size: int, shuffle: bool = False) -> Iterator[list[str]]:
        """Like :meth:`batch`, but yield lists of ids."""
        check_int("batch_size", batch_size)
        return sup.batches(list(map(sup.get_id, self._docs)), batch_size, shuffle)

    def sample(self, k: int, seed: int | None = None) -> DocumentArray:
        """``k`` Documents drawn without replacement, as a new DocumentArray.

        A ``seed`` makes the draw repeatable (the same draw legacy docarray
        makes for that seed) without touching the global :mod:`random` state.
        """
        check_int("k", k, 0)
        if k > len(self._docs):
            raise ValueError(
                f"cannot sample k={k} Documents from a DocumentArray of length {len(self)}"
            )
        rng = random if seed is None else random.Random(seed)
        return self._from_docs(rng.sample(self._docs, k))

    def shuffle(self, seed: int | None = None) -> DocumentArray:
        """A new DocumentArray with the same Documents in random order (this one is unchanged)."""
        return self.sample(len(self._docs), seed=seed)

    def split_by_tag(self, tag: str) -> dict[Any, DocumentArray]:
        """``{tag value: DocumentArray}``, order kept; Documents without the tag under ``None``.

        ``'a__b'`` reads the nested ``tags['a']['b']`` (when no tag is named ``'a__b'``).
        """
        groups = sup.group_by_tag(self._docs, tag)
        return {value: self._from_docs(docs) for value, docs in groups.items()}

    def summary(self) -> None:
        """Print the length, how many Documents set each field, and tensor shapes/dtypes."""
        print(sup.summary_text(self))

    # ------------------------------------------------------------------ parallel
    # (delegates to docmill.parallel; see its docs for the keyword options)
    def map(
        self,
        func: Callable[[Document], Any],
        backend: str = "thread",
        num_worker: int | None = None,
        show_progress: bool = False,
        pool: Any = None,
        **options: Any,
    ) -> Iterator[Any]:
        """Lazily yield ``func(doc)`` for every Document, in order, computed in parallel."""
        from docmill import parallel

        return parallel.map(
            func,
            self,
            backend=backend,
            num_worker=num_worker,
            show_progress=show_progress,
            pool=pool,
            **options,
        )

    def map_batch(
        self,
        func: Callable[[DocumentArray], Any],
        batch_size: int,
        backend: str = "thread",
        num_worker: int | None = None,
        shuffle: bool = False,
        show_progress: bool = False,
        pool: Any = None,
        **options: Any,
    ) -> Iterator[Any]:
        """Lazily yield ``func(batch)`` for every batch of ``batch_size`` Documents."""
        from docmill import parallel

        return parallel.map_batch(
            func,
            self,
            batch_size,
            backend=backend,
            num_worker=num_worker,
            shuffle=shuffle,
            show_progress=show_progress,
            pool=pool,
            **options,
        )

    def apply(
        self,
        func: Callable[[Document], Any],
        backend: str = "thread",
        num_worker: int | None = None,
        show_progress: bool = False,
        pool: Any = None,
        **options: Any,
    ) -> DocumentArray:
        """Run ``func`` on every Document in parallel and keep its changes in place."""
        from docmill import parallel

        return parallel.apply(
            self,
            func,
            backend=backend,
            num_worker=num_worker,
            show_progress=show_progress,
            pool=pool,
            **options,
        )

    def apply_batch(
        self,
        func: Callable[[DocumentArray], Any],
        batch_size: int,
        backend: str = "thread",
        num_worker: int | None = None,
        shuffle: bool = False,
        show_progress: bool = False,
        pool: Any = None,
        **options: Any,
    ) -> DocumentArray:
        """Run ``func`` on every batch in parallel and keep its changes in place."""
        from docmill import parallel

        return parallel.apply_batch(
            self,
            func,
            batch_size,
            backend=backend,
            num_worker=num_worker,
            shuffle=shuffle,
            show_progress=show_progress,
            pool=pool,
            **options,
        )

    # ------------------------------------------------------------------ storage
    # (delegates to docmill.io)
    def to_bytes(self, protocol: str = "docmill", compress: str | None = None) -> bytes:
        """Serialize the whole array (see :mod:`docmill.io` for protocols and compressions)."""
        from docmill import io

        return io.array_to_bytes(self, protocol=protocol, compress=compress)

    @classmethod
    def from_bytes(
        cls, data: bytes, protocol: str = "docmill", compress: str | None = None
    ) -> DocumentArray:
        """Inverse of :meth:`to_bytes`."""
        from docmill import io

        return io.array_from_bytes(data, protocol=protocol, compress=compress)

    def save_binary(
        self, file: Any, protocol: str | None = None, compress: str | None = None
    ) -> None:
        """Write the array to ``file`` (path, binary file object or fsspec URL), atomically."""
        from docmill import io

        io.save_binary(self, file, protocol=protocol, compress=compress)

    @classmethod
    def load_binary(
        cls,
        file: Any,
        protocol: str | None = None,
        compress: str | None = None,
        streaming: bool = False,
    ) -> DocumentArray | Iterator[Document]:
        """Read an array written by :meth:`save_binary` (``streaming=True``: a lazy iterator)."""
        from docmill import io

        return io.load_binary(file, protocol=protocol, compress=compress, streaming=streaming)

    def __bytes__(self) -> bytes:
        return self.to_bytes()

    # ------------------------------------------------------------------ push / pull
    def push(
        self,
        name: str,
        show_progress: bool = False,
        public: bool = True,
        token: str | None = None,
        compress: str | None = "lz4",
    ) -> dict[str, Any]:
        """Upload the array as ``name`` (a hub URL, an fsspec URL, or a plain name: see
        :mod:`docmill.hub`); serialization overlaps the upload."""
        from docmill import hub

        return hub.push(self, name, show_progress, public, token, compress)

    @classmethod
    def push_stream(cls, docs: Iterable[Document], name: str, **kwargs: Any) -> dict[str, Any]:
        """Upload any iterable of Documents as ``name`` without collecting it."""
        from docmill import hub

        return hub.push_stream(docs, name, **kwargs)

    @classmethod
    def pull(
        cls,
        name: str,
        show_progress: bool = False,
        local_cache: bool = True,
        token: str | None = None,
    ) -> DocumentArray:
        """Download the array ``name`` (cached and revalidated when from a hub)."""
        from docmill import hub

        return hub.pull(name, show_progress, local_cache, token)

    @classmethod
    def pull_stream(cls, name: str, **kwargs: Any) -> Iterator[Document]:
        """The Documents of ``name``, decoded as its bytes arrive."""
        from docmill import hub

        return hub.pull_stream(name, **kwargs)

    def to_list(self, protocol: str = "jsonschema", **kwargs: Any) -> list[dict[str, Any]]:
        """Every Document as :meth:`Document.to_dict`."""
        from docmill import io

        return io.array_to_list(self, protocol, **kwargs)

    to_dict = to_list  # legacy has both names

    @classmethod
    def from_list(
        cls, values: Iterable[dict[str, Any]], protocol: str | None = "jsonschema", **kwargs: Any
    ) -> DocumentArray:
        """Inverse of :meth:`to_list`."""
        from docmill import io

        return io.array_from_list(values, protocol, **kwargs)

    @classmethod
    def from_dict(
        cls, values: Iterable[dict[str, Any]], protocol: str | None = "jsonschema", **kwargs: Any
    ) -> DocumentArray:
        """Inverse of :meth:`to_dict` (the same as :meth:`from_list`)."""
        return cls.from_list(values, protocol, **kwargs)

    def to_json(self, protocol: str = "jsonschema", **kwargs: Any) -> str:
        """:meth:`to_list` as a JSON string."""
        from docmill import io

        return io.array_to_json(self, protocol, **kwargs)

    @classmethod
    def from_json(
        cls, file: str | bytes, protocol: str | None = "jsonschema", **kwargs: Any
    ) -> DocumentArray:
        """Inverse of :meth:`to_json` (JSON text)."""
        from docmill import io

        return io.array_from_json(file, protocol, **kwargs)

    def save_json(self, file: Any, protocol: str = "jsonschema", encoding: str = "utf-8") -> None:
        """Write :meth:`to_json` to ``file``, atomically."""
        from docmill import io

        io.save_json(self, file, protocol=protocol, encoding=encoding)

    @classmethod
    def load_json(
        cls, file: Any, protocol: str | None = "jsonschema", encoding: str = "utf-8"
    ) -> DocumentArray:
        """Inverse of :meth:`save_json`."""
        from docmill import io

        return io.load_json(file, protocol=protocol, encoding=encoding)

    def to_protobuf(self, ndarray_type: str | None = None) -> Any:
        """The array as docarray 0.21's ``DocumentArrayProto`` (protobuf extra)."""
        from docmill.io._protobuf import messages

        msg = messages()["DocumentArrayProto"]()
        for d in self._docs:
            msg.docs.append(d.to_protobuf(ndarray_type))
        return msg

    @classmethod
    def from_protobuf(cls, pb_msg: Any) -> DocumentArray:
        """Inverse of :meth:`to_protobuf`."""
        from docmill.io._protobuf import document_from_proto

        return cls(document_from_proto(m) for m in pb_msg.docs)

    # ------------------------------------------------------------------ legacy's generic IO
    def save(self, file: Any, file_format: str = "binary", encoding: str = "utf-8") -> None:
        """``save_binary`` / ``save_json`` / ``save_csv`` by ``file_format``."""
        if file_format == "binary":
            self.save_binary(file)
        elif file_format == "json":
            self.save_json(file, encoding=encoding)
        elif file_format == "csv":
            self.save_csv(file, encoding=encoding)
        else:
            raise ValueError(f"file_format must be 'binary', 'json' or 'csv', got {file_format!r}")

    @classmethod
    def load(
        cls, file: Any, file_format: str = "binary", encoding: str = "utf-8", **kwargs: Any
    ) -> DocumentArray:
        """``load_binary`` / ``load_json`` / ``load_csv`` by ``file_format``."""
        if file_format == "binary":
            return cls.load_binary(file, **kwargs)  # type: ignore[return-value]
        if file_format == "json":
            return cls.load_json(file, encoding=encoding, **kwargs)
        if file_format == "csv":
            return cls.load_csv(file, encoding=encoding, **kwargs)
        raise ValueError(f"file_format must be 'binary', 'json' or 'csv', got {file_format!r}")

    def save_csv(
        self,
        file: Any,
        flatten_tags: bool = True,
        exclude_fields: Sequence[str] | None = None,
        dialect: Any = "excel",
        with_header: bool = True,
        encoding: str = "utf-8",
    ) -> None:
        """One CSV row per Document (see :mod:`docmill.io._tabular`)."""
        from docmill.io import _tabular

        _tabular.save_csv(self, file, flatten_tags, exclude_fields, dialect, with_header, encoding)

    @classmethod
    def load_csv(
        cls, file: Any, field_resolver: dict[str, str] | None = None, encoding: str = "utf-8"
    ) -> DocumentArray:
        """A Document per CSV row (columns that are not fields go into ``tags``)."""
        return cls.from_csv(file, field_resolver=field_resolver, encoding=encoding)

    @classmethod
    def from_csv(cls, file: Any, **kwargs: Any) -> DocumentArray:
        """See :func:`docmill.io._tabular.from_csv` for the keywords."""
        from docmill.io import _tabular

        return cls(_tabular.from_csv(file, **kwargs))

    @classmethod
    def from_ndjson(cls, fp: Iterable[str], **kwargs: Any) -> DocumentArray:
        """A Document per line of JSON objects."""
        from docmill.io import _tabular

        return cls(_tabular.from_ndjson(fp, **kwargs))

    @classmethod
    def from_lines(cls, lines: Iterable[str] | None = None, **kwargs: Any) -> DocumentArray:
        """Documents from JSON / CSV / text lines or a file (``filepath=``)."""
        from docmill.io import _tabular

        return cls(_tabular.from_lines(lines, **kwargs))

    @classmethod
    def from_ndarray(cls, array: Any, **kwargs: Any) -> DocumentArray:
        """A Document per row of ``array`` (``axis``, ``size``, ``shuffle``)."""
        from docmill.io import _tabular

        return cls(_tabular.from_ndarray(array, **kwargs))

    def to_dataframe(self, **kwargs: Any) -> Any:
        """A pandas DataFrame, one row per Document (pandas needed)."""
        from docmill.io import _tabular

        return _tabular.to_dataframe(self, **kwargs)

    @classmethod
    def from_dataframe(cls, df: Any) -> DocumentArray:
        """Inverse of :meth:`to_dataframe`."""
        from docmill.io import _tabular

        return _tabular.from_dataframe(df)


class _ChildArray(DocumentArray):
    """The ``chunks`` or ``matches`` of a Document (its ``_ref``): adding a Document
    with ``append`` (or setting the whole array) sets the metadata docarray 0.21 sets.
    ``extend`` and ``+=`` add Documents as they are, as in legacy."""

    _ref: Document | None = None

    @classmethod
    def _of(cls, ref: Document, arr: DocumentArray | None, adopt: bool) -> _ChildArray:
        """A child array of ``ref`` sharing ``arr``'s Documents (``adopt``: set their
        metadata now, as assigning them does)."""
        out = cls.__new__(cls)
        out._docs, out._index = ([], {}) if arr is None else (arr._docs, arr._index)
        out._ref = ref
        if adopt:
            for d in out._docs:
                out._adopt(d)
        return out

    def _adopt(self, doc: Document) -> None:
        raise NotImplementedError

    def append(self, doc: Document) -> None:
        if self._ref is not None and isinstance(doc, Document):
            self._adopt(doc)
        super().append(doc)


class ChunkArray(_ChildArray):
    """A Document's chunks: each gets ``parent_id`` and ``granularity`` + 1."""

    def _adopt(self, doc: Document) -> None:
        ref = self._ref
        doc.parent_id = ref.id  # type: ignore[union-attr]
        doc.granularity = (ref.granularity or 0) + 1  # type: ignore[union-attr]


class MatchArray(_ChildArray):
    """A Document's matches: each gets ``adjacency`` + 1."""

    def _adopt(self, doc: Document) -> None:
        doc.adjacency = (self._ref.adjacency or 0) + 1  # type: ignore[union-attr]
