"""Ordered, bounded thread pipeline for compressing frames while earlier ones are written.

The seed's overlap technique: while the caller writes frame *k*, worker threads
already encode and compress frames *k+1 ... k+window*. It runs on docmill's own
engine (:func:`docmill.parallel.map` with ``backend='thread'``: ordered, lazy,
bounded look-ahead, cancelled when the consumer stops). The items are whole
frames grouped by size (:func:`docmill.io._format.group_docs`), not a fixed
``batch_size`` of Documents as ``map_batch`` would take: a fixed count cannot
bound a frame's bytes when Document sizes vary.

While the engine is not importable (it is optional for this module's tests),
a small ``concurrent.futures`` pipeline with the same contract stands in.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

__all__ = ["ordered_thread_map"]

T = TypeVar("T")
R = TypeVar("R")


def ordered_thread_map(
    func: Callable[[T], R], items: Iterable[T], num_worker: int | None = None
) -> Iterator[R]:
    """Lazily yield ``func(item)`` in input order, computed on worker threads."""
    try:
        from docmill import parallel

        pmap = parallel.map
    except (ImportError, AttributeError):
        return _fallback(func, items, num_worker or min(4, os.cpu_count() or 1))
    # one frame per task: a frame is already a big unit of work (~8 MB), and the window
    # (2 x workers frames) is what bounds the memory held ahead of the caller
    return pmap(func, items, backend="thread", num_worker=num_worker, chunksize=1)


def _fallback(func: Callable[[T], R], items: Iterable[T], workers: int) -> Iterator[R]:
    window = 2 * workers  # enough to keep every worker busy while the caller writes
    pending: deque[Future[Any]] = deque()
    pool = ThreadPoolExecutor(workers, thread_name_prefix="docmill-io")
    try:
        for item in items:
            pending.append(pool.submit(func, item))
            if len(pending) >= window:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for f in pending:
            f.cancel()
        pool.shutdown(wait=True, cancel_futures=True)
