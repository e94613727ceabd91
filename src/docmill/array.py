"""DocumentArray: a list of Documents with an id index.

A thin class: it keeps the list and the id index true and delegates the rest —
parallel work to :mod:`docmill.parallel`, storage to :mod:`docmill.io`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from docmill.document import Document

__all__ = ["DocumentArray"]


class DocumentArray:
    """A list of :class:`Document` with O(1) lookup by id."""

    def __init__(self, docs: Iterable[Document] | None = None) -> None:
        self._docs: list[Document] = []
        self._index: dict[str, int] = {}
        if docs is not None:
            self.extend(docs)

    def __len__(self) -> int:
        return len(self._docs)

    def __iter__(self) -> Iterator[Document]:
        return iter(self._docs)

    def append(self, doc: Document) -> None:
        if not isinstance(doc, Document):
            raise TypeError(f"DocumentArray holds Documents, got {type(doc).__name__}")
        if doc.id in self._index:
            raise ValueError(f"a Document with id {doc.id!r} is already in this DocumentArray")
        self._index[doc.id] = len(self._docs)
        self._docs.append(doc)

    def extend(self, docs: Iterable[Document]) -> None:
        for d in docs:
            self.append(d)

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
        self, file: Any, protocol: str = "docmill", compress: str | None = None
    ) -> None:
        """Write the array to ``file`` (path, binary file object or fsspec URL), atomically."""
        from docmill import io

        io.save_binary(self, file, protocol=protocol, compress=compress)

    @classmethod
    def load_binary(
        cls,
        file: Any,
        protocol: str = "docmill",
        compress: str | None = None,
        streaming: bool = False,
    ) -> DocumentArray | Iterator[Document]:
        """Read an array written by :meth:`save_binary` (``streaming=True``: a lazy iterator)."""
        from docmill import io

        return io.load_binary(file, protocol=protocol, compress=compress, streaming=streaming)

    def to_list(self) -> list[dict[str, Any]]:
        """Every Document as :meth:`Document.to_dict`."""
        from docmill import io

        return io.array_to_list(self)

    @classmethod
    def from_list(cls, data: Iterable[dict[str, Any]]) -> DocumentArray:
        """Inverse of :meth:`to_list`."""
        from docmill import io

        return io.array_from_list(data)

    def to_json(self) -> str:
        """:meth:`to_list` as a JSON string."""
        from docmill import io

        return io.array_to_json(self)

    @classmethod
    def from_json(cls, data: str | bytes) -> DocumentArray:
        """Inverse of :meth:`to_json`."""
        from docmill import io

        return io.array_from_json(data)

    def save_json(self, file: Any) -> None:
        """Write :meth:`to_json` to ``file``, atomically."""
        from docmill import io

        io.save_json(self, file)

    @classmethod
    def load_json(cls, file: Any) -> DocumentArray:
        """Inverse of :meth:`save_json`."""
        from docmill import io

        return io.load_json(file)
