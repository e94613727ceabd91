"""Run a function over many items in parallel, lazily and with bounded memory.

::

    from docmill import parallel

    for out in parallel.map(func, docs, backend="process", num_worker=4):
        ...                                   # results in input order, as they are ready
    for out in parallel.map_batch(func, docs, batch_size=16):
        ...                                   # func gets DocumentArray batches
    parallel.apply(da, func)                  # in place, on every backend
    parallel.apply_batch(da, func, batch_size=16)

``backend``: ``'thread'`` (default), ``'process'`` (own worker processes,
crash-safe, shared-memory transport), ``'serial'`` (in the caller, for
debugging) or any name given to :func:`register_backend`; ``pool=`` runs on a
pool you own instead. Keyword options (all validated before anything starts,
see :class:`Options`): ``ordered``, ``window``, ``chunksize``, ``timeout``,
``initializer``/``initargs`` (with :func:`worker_state` for per-worker objects
such as a model), ``init_timeout``, ``max_tasks_per_worker``, and the chosen
backend's own (the process backend's ``start_method``, ``transport``,
``shm_threshold``).

The layers: this module (arguments) -> :mod:`._inplace` (the only part that
knows Documents: batches, in-place write-back, the transport's Document
reducer) -> :mod:`._core` (streaming, window, chunk sizing, errors) -> a
:class:`Backend` found in the registry (:mod:`._registry`: :mod:`.serial`,
:mod:`.thread`, :mod:`.process`, :mod:`.pool`, imported when first used).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from docmill._checks import check_int
from docmill.parallel._base import Backend, Capabilities
from docmill.parallel._core import stream
from docmill.parallel._inplace import (
    AsBatch,
    apply_doc_batches,
    apply_docs,
    batch_source,
    describe_batch,
    item_nbytes,
)
from docmill.parallel._options import Options
from docmill.parallel._registry import BACKENDS, backend_class, register_backend
from docmill.parallel._report import Failure, Report, TooManyFailures
from docmill.parallel._runner import provide_worker_state, worker_state

if TYPE_CHECKING:
    from docmill.array import DocumentArray

__all__ = [
    "BACKENDS",
    "Backend",
    "Capabilities",
    "Failure",
    "Options",
    "Report",
    "TooManyFailures",
    "amap",
    "apply",
    "apply_batch",
    "backend_class",
    "map",
    "map_batch",
    "provide_worker_state",
    "register_backend",
    "worker_state",
]


def map(
    func: Callable[[Any], Any],
    iterable: Iterable[Any],
    backend: str = "thread",
    num_worker: int | None = None,
    show_progress: bool = False,
    pool: Any = None,
    **options: Any,
) -> Iterator[Any]:
    """Lazily yield ``func(item)`` for every item of ``iterable``, computed in parallel.

    Results come in input order (``ordered=False``: as they finish) while later
    items still run; the input is pulled only as results are consumed, so endless
    generators work. Stopping early (``break``, ``close()``, dropping the iterator)
    stops the workers. An exception in ``func`` is re-raised here as its original
    type, naming the item's index and id. See the module docstring for the options.
    """
    opts = _options("map", func, backend, num_worker, show_progress, pool, options)
    return stream(func, _iter("map", iterable), opts, total=_len(iterable), sizeof=item_nbytes,
                  source=_source(iterable))  # fmt: skip


def map_batch(
    func: Callable[[Any], Any],
    iterable: Iterable[Any],
    batch_size: int,
    backend: str = "thread",
    num_worker: int | None = None,
    shuffle: bool = False,
    show_progress: bool = False,
    pool: Any = None,
    **options: Any,
) -> Iterator[Any]:
    """Lazily yield ``func(batch)`` for every batch of ``batch_size`` items.

    Batches of Documents are :class:`~docmill.DocumentArray` s (else lists); the
    last one may be shorter. ``shuffle=True`` draws the batches in a random order
    (the input needs a length). ``timeout`` is per batch. Otherwise like :func:`map`.
    """
    opts = _options("map_batch", func, backend, num_worker, show_progress, pool, options)
    check_int("batch_size", batch_size)
    _iter("map_batch", iterable)
    n = _len(iterable)
    return stream(
        AsBatch(func),
        batch_source(iterable, batch_size, shuffle),
        opts,
        total=None if n is None else math.ceil(n / batch_size),
        unit="batch",
        describe=describe_batch,
        auto_chunks=False,
        source=None if shuffle else _source(iterable),  # (forked workers cut the batches)
        source_batch=batch_size,
    )


def apply(
    da: DocumentArray,
    func: Callable[[Any], Any],
    backend: str = "thread",
    num_worker: int | None = None,
    show_progress: bool = False,
    pool: Any = None,
    **options: Any,
) -> DocumentArray:
    """Run ``func`` on every Document of ``da`` in parallel and keep its changes.

    ``func`` may change the Document in place and return None, return it, or
    return another Document; the changes are kept on every backend (with
    processes the worker's copy is written back). Returns ``da``.
    """
    opts = _options("apply", func, backend, num_worker, show_progress, pool, options)
    apply_docs(da, func, opts)
    return da


def apply_batch(
    da: DocumentArray,
    func: Callable[[Any], Any],
    batch_size: int,
    backend: str = "thread",
    num_worker: int | None = None,
    shuffle: bool = False,
    show_progress: bool = False,
    pool: Any = None,
    **options: Any,
) -> DocumentArray:
    """Run ``func`` on batches of ``da`` in parallel and keep its changes; returns ``da``.

    ``func`` gets a DocumentArray of up to ``batch_size`` Documents and may change
    them in place (returning None or the batch) or return a DocumentArray of the
    same length.
    """
    opts = _options("apply_batch", func, backend, num_worker, show_progress, pool, options)
    check_int("batch_size", batch_size)
    apply_doc_batches(da, func, batch_size, shuffle, opts)
    return da


async def amap(
    func: Callable[[Any], Any],
    iterable: Iterable[Any],
    backend: str = "thread",
    num_worker: int | None = None,
    show_progress: bool = False,
    pool: Any = None,
    **options: Any,
) -> AsyncIterator[Any]:
    """:func:`map` for ``async for`` inside a running event loop::

        async for page in parallel.amap(fetch, urls, concurrency=50):
            ...

    The work runs as with :func:`map` (an ``async def`` func on the asyncio backend's
    own loop thread, anything else on its backend); this loop only waits for each
    result, never blocking. Leaving the ``async for`` early stops the work.
    """
    import asyncio

    it = map(func, iterable, backend, num_worker, show_progress, pool, **options)
    end = object()
    try:
        while (item := await asyncio.to_thread(next, it, end)) is not end:
            yield item
    finally:
        await asyncio.to_thread(it.close)  # type: ignore[attr-defined]


def __getattr__(name: str) -> Any:
    # The backend classes by their class names (``parallel.ProcessBackend``), imported
    # on first use from the registry: `process` pulls in multiprocessing, cloudpickle
    # and the shared-memory transport.
    for backend in BACKENDS:
        entry = BACKENDS[backend]
        if (entry.rpartition(":")[2] if isinstance(entry, str) else entry.__name__) == name:
            return backend_class(backend)
    raise AttributeError(f"module 'docmill.parallel' has no attribute {name!r}")


# ---------------------------------------------------------------------- helpers
def _options(
    caller: str,
    func: Any,
    backend: str,
    num_worker: int | None,
    show_progress: bool,
    pool: Any,
    options: dict[str, Any],
) -> Options:
    """The validated options of one call, and its ``func`` checked. An ``async def``
    func runs on the asyncio backend (chosen for it when no backend was named)."""
    if inspect.iscoroutinefunction(func):
        if backend == "thread" and pool is None:
            backend = "asyncio"
        elif backend != "asyncio":
            raise TypeError(
                f"{caller}(): {getattr(func, '__name__', func)!r} is an async def function, "
                f"which runs on backend='asyncio', not {backend!r}"
            )
    opts = Options.from_kwargs(
        caller,
        backend=backend,
        num_worker=num_worker,
        show_progress=show_progress,
        pool=pool,
        **options,
    )
    if not callable(func):
        raise TypeError(f"{caller}() needs a callable func, got {type(func).__name__}")
    return opts


def _iter(caller: str, iterable: Any) -> Iterator[Any]:
    try:
        return iter(iterable)
    except TypeError:
        raise TypeError(
            f"{caller}() needs an iterable of items, got {type(iterable).__name__}"
        ) from None


def _source(iterable: Any) -> Any:
    """What forked workers may index instead of receiving the items: a list (or a
    DocumentArray's own list of Documents). Not a tuple: a worker drops its copy of
    the items it has read, which a tuple's slots cannot do."""
    if type(iterable) is list:
        return iterable
    docs = getattr(iterable, "_docs", None)  # a DocumentArray
    return docs if type(docs) is list else None


def _len(iterable: Any) -> int | None:
    try:
        return len(iterable)
    except TypeError:
        return None
