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
crash-safe, shared-memory transport) or ``'serial'`` (in the caller, for
debugging); ``pool=`` runs on a pool you own instead. Keyword options (all
validated before anything starts, see :class:`Options`): ``ordered``,
``window``, ``chunksize``, ``timeout``, ``initializer``/``initargs`` (with
:func:`worker_state` for per-worker objects such as a model),
``max_tasks_per_worker``, ``start_method``, ``transport``, ``shm_threshold``.

The layers: this module (arguments) -> :mod:`._docs` (batches, in-place
write-back) -> :mod:`._core` (streaming, window, errors) -> a
:class:`Backend` (:mod:`.serial`, :mod:`.thread`, :mod:`.process`, :mod:`.pool`,
imported when first used).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from docmill.parallel._base import Backend
from docmill.parallel._core import stream
from docmill.parallel._docs import (
    apply_doc_batches,
    apply_docs,
    batch_source,
    describe_batch,
    item_nbytes,
)
from docmill.parallel._options import BACKENDS, Options
from docmill.parallel._runner import worker_state

if TYPE_CHECKING:
    from docmill.array import DocumentArray

__all__ = [
    "BACKENDS",
    "Backend",
    "Options",
    "apply",
    "apply_batch",
    "map",
    "map_batch",
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
    opts = Options.from_kwargs(
        "map",
        backend=backend,
        num_worker=num_worker,
        show_progress=show_progress,
        pool=pool,
        **options,
    )
    _check_func("map", func)
    return stream(func, _iter("map", iterable), opts, total=_len(iterable), sizeof=item_nbytes)


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
    opts = Options.from_kwargs(
        "map_batch",
        backend=backend,
        num_worker=num_worker,
        show_progress=show_progress,
        pool=pool,
        **options,
    )
    _check_func("map_batch", func)
    _check_batch_size(batch_size)
    _iter("map_batch", iterable)
    n = _len(iterable)
    return stream(
        func,
        batch_source(iterable, batch_size, shuffle),
        opts,
        total=None if n is None else math.ceil(n / batch_size),
        unit="batch",
        describe=describe_batch,
        auto_chunks=False,
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
    opts = Options.from_kwargs(
        "apply",
        backend=backend,
        num_worker=num_worker,
        show_progress=show_progress,
        pool=pool,
        **options,
    )
    _check_func("apply", func)
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
    opts = Options.from_kwargs(
        "apply_batch",
        backend=backend,
        num_worker=num_worker,
        show_progress=show_progress,
        pool=pool,
        **options,
    )
    _check_func("apply_batch", func)
    _check_batch_size(batch_size)
    apply_doc_batches(da, func, batch_size, shuffle, opts)
    return da


def __getattr__(name: str) -> Any:
    # The backends are imported on first use: `process` pulls in multiprocessing,
    # cloudpickle and the shared-memory transport.
    backends = {"SerialBackend": "serial", "ThreadBackend": "thread", "ProcessBackend": "process"}
    if name in backends or name == "PoolBackend":
        import importlib

        module = importlib.import_module(f"docmill.parallel.{backends.get(name, 'pool')}")
        return getattr(module, name)
    raise AttributeError(f"module 'docmill.parallel' has no attribute {name!r}")


# ---------------------------------------------------------------------- helpers
def _check_func(caller: str, func: Any) -> None:
    if not callable(func):
        raise TypeError(f"{caller}() needs a callable func, got {type(func).__name__}")


def _check_batch_size(batch_size: Any) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")


def _iter(caller: str, iterable: Any) -> Iterator[Any]:
    try:
        return iter(iterable)
    except TypeError:
        raise TypeError(
            f"{caller}() needs an iterable of items, got {type(iterable).__name__}"
        ) from None


def _len(iterable: Any) -> int | None:
    try:
        return len(iterable)
    except TypeError:
        return None
