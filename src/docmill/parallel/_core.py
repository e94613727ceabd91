"""The streaming core: ordering, window, chunking, progress and error mapping, once for
every backend.

::

    caller's iterable                                   backend (serial / thread /
         |  pulled only while fewer than `window`        process / pool), any number
         v  items are in flight                          of workers
    [chunker] --list of items--> backend.submit(chunk) --> worker: ChunkRunner(func)
         |                            |  Future              (results, seconds, error)
         |                  pending {future: (start, chunk)}          |
         |                            |  <---- done callback sets `wake` ----'
         v                            v
    next(map(...)) <-- yield results of the head chunk (ordered=True)
                       or of any finished chunk (ordered=False);
                       then refill; on exit: backend.shutdown(cancel=...)

Design points:

- **Chunks everywhere.** Each backend task is a list of items, so per-item cost
  is a list append and a yield, never a Future. With ``chunksize=None`` chunks
  start at one item (so the first result comes back as early as possible) and
  grow from the runner's measured time towards ~10 ms of work per chunk
  (``TARGET_SECONDS``): enough to hide a process round trip (~0.1-0.3 ms) and a
  thread hand-off (~20 us) behind at most a few percent, while keeping
  latency and cancellation prompt. Growth is capped at 8x per step, at
  ``MAX_CHUNK`` items, and, when the input has a length, at
  ``len / (4 x workers)`` so every worker gets several chunks (load balance).
  Big items (Documents with large tensors) also cap chunks at ``CHUNK_BYTES``
  of array data, sampled from the first item of each chunk: the window then
  holds tens of MB, not thousands of 100 KB tensors, whatever the stream's
  length. ``map_batch`` and maps with a ``timeout`` use one item (batch) per
  task, so a timeout and an error name exactly one item.
- **Window.** At most ``window`` items are taken from the input and not yet
  consumed (default ``2 x workers x chunksize``: one chunk running and one
  queued per worker, so workers never wait for the consumer's next call). The
  input is pulled only when a chunk is consumed; after k results at most
  k + window items have been taken. The serial backend gets a window of one
  chunk: nothing runs ahead of the consumer.
- **Cancellation.** Everything happens inside the generator, so ``break``,
  ``close()``, garbage collection, an exception or Ctrl-C all run its
  ``finally``: ``backend.shutdown(cancel=True)`` stops the workers.
- **Errors.** An exception in ``func`` comes back as a value from the runner;
  the results before it are yielded, then it is raised as its original type
  with the worker's traceback (:class:`~docmill.errors.RemoteTraceback`) as its
  cause and the item's index and id in its message. A failed *task* (worker
  crash, timeout) is noticed as soon as it happens, even behind a slower head
  chunk, and re-raised naming the items it held.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import CancelledError, Future
from itertools import islice
from typing import Any

from docmill.errors import RemoteTraceback, WorkerCrashed, add_note
from docmill.parallel._base import Backend
from docmill.parallel._options import BACKENDS, Options
from docmill.parallel._runner import ChunkRunner

__all__ = ["CHUNK_BYTES", "MAX_CHUNK", "TARGET_SECONDS", "describe_item", "make_backend", "stream"]

TARGET_SECONDS = 0.01
MAX_CHUNK = 1024
CHUNK_BYTES = 4 << 20
_GROWTH = 8


def make_backend(options: Options) -> Backend:
    """Build the backend named by ``options.backend`` (imported on first use)."""
    if options.backend == "pool":
        from docmill.parallel.pool import PoolBackend

        return PoolBackend(options)
    module, _, cls = BACKENDS[options.backend].partition(":")
    return getattr(importlib.import_module(module), cls)(options)


def describe_item(index: int, item: Any) -> str:
    """``item 3`` or ``item 3 (id 'abc')`` for items with a string ``id``."""
    ident = getattr(item, "id", None)
    return f"item {index} (id {ident!r})" if isinstance(ident, str) else f"item {index}"


def stream(
    func: Callable[[Any], Any],
    it: Iterator[Any],
    options: Options,
    *,
    total: int | None = None,
    unit: str = "item",
    describe: Callable[[int, Any], str] = describe_item,
    auto_chunks: bool = True,
    flat: bool = True,
    sizeof: Callable[[Any], int] | None = None,
) -> Iterator[Any]:
    """Run ``func`` over ``it`` on the backend ``options`` name, lazily.

    Yields each result (``flat=True``), or ``(start, items, results)`` per chunk.
    ``sizeof(item)``, when given, estimates an item's payload bytes (for
    ``CHUNK_BYTES``).
    ``auto_chunks=False``: one item per task unless ``options.chunksize`` says
    otherwise (``map_batch``: a batch is already a big unit of work).
    Nothing starts before the first ``next()``.
    """
    backend = make_backend(options)
    bar = _progress_bar(total, unit) if options.show_progress else None
    finished = False
    try:
        backend.start(ChunkRunner(func))
        sizer = _Sizer(backend, options, total, auto_chunks)
        yield from _run(backend, it, options, sizer, describe, unit, flat, sizeof, bar)
        finished = True
    finally:
        try:
            backend.shutdown(cancel=not finished)
        finally:
            if bar is not None:
                bar.close()


class _Sizer:
    """How many items the next chunk takes, and whether the window has room for it."""

    def __init__(
        self, backend: Backend, options: Options, total: int | None, auto_chunks: bool
    ) -> None:
        self.workers = max(1, backend.num_workers)
        self.ahead = getattr(backend, "concurrent", True)  # False: never run ahead (serial)
        self.window = options.window
        self.adapt = options.chunksize is None and options.timeout is None and auto_chunks
        self.size = options.chunksize or 1
        self.cap = MAX_CHUNK
        if total is not None:  # several chunks per worker, so none idles at the end
            self.cap = max(1, min(MAX_CHUNK, total // (4 * self.workers)))
        self.byte_cap = MAX_CHUNK

    def next_chunk(self, inflight: int, running: bool) -> int:
        """Items to take now (0: the window is full)."""
        n = self.size
        win = self.window or (2 * self.workers * n if self.ahead else n)
        n = min(n, win)
        return 0 if running and inflight + n > win else n

    def sample(self, item_bytes: int) -> None:
        """Keep chunks of big items under ``CHUNK_BYTES``."""
        self.byte_cap = max(1, CHUNK_BYTES // max(1, item_bytes))
        self.size = min(self.size, self.byte_cap)

    def observe(self, n: int, seconds: float) -> None:
        """A chunk of ``n`` items took ``seconds`` in the worker: aim at ``TARGET_SECONDS``."""
        ideal = int(TARGET_SECONDS * n / seconds) if seconds > 0 else self.cap
        self.size = max(1, min(self.cap, self.byte_cap, ideal, self.size * _GROWTH))


def _run(
    backend: Backend,
    it: Iterator[Any],
    options: Options,
    sizer: _Sizer,
    describe: Callable[[int, Any], str],
    unit: str,
    flat: bool,
    sizeof: Callable[[Any], int] | None,
    bar: Any,
) -> Iterator[Any]:
    timeout = options.timeout
    ordered = options.ordered
    adapt = sizer.adapt
    sample = adapt and sizeof is not None
    pending: dict[Future, tuple[int, list]] = {}  # insertion order = input order
    wake = threading.Event()

    def on_done(_f: Future) -> None:
        wake.set()

    taken = inflight = 0
    exhausted = False
    while True:
        # -- refill: submit chunks while the window has room (always keep one running)
        while not exhausted and (n := sizer.next_chunk(inflight, bool(pending))):
            chunk = list(islice(it, n))
            if len(chunk) < n:
                exhausted = True
                if not chunk:
                    break
            if sample:
                sizer.sample(sizeof(chunk[0]))
            f = backend.submit(chunk, None if timeout is None else timeout * len(chunk))
            pending[f] = (taken, chunk)
            taken += len(chunk)
            inflight += len(chunk)
            f.add_done_callback(on_done)
        if not pending:
            return

        # -- wait for the next chunk to hand out
        f = next(iter(pending))
        if not f.done() or not ordered:
            f = _wait(pending, wake, ordered)
        start, chunk = pending.pop(f)
        inflight -= len(chunk)
        try:
            outs, seconds, err = f.result()
        except BaseException as e:
            mapped = _task_error(e, start, chunk, options, unit, describe)
            if mapped is e:
                raise
            raise mapped from (None if isinstance(mapped, TimeoutError) else e)

        if adapt and outs:
            sizer.observe(len(outs), seconds)
        if bar is not None:
            bar.update(len(outs))
        if flat:
            yield from outs
        else:
            yield start, chunk, outs
        if err is not None:
            pos, exc, tb = err
            _annotate(exc, describe(start + pos, chunk[pos]), backend.name)
            raise exc from RemoteTraceback(tb)


def _wait(pending: dict[Future, Any], wake: threading.Event, ordered: bool) -> Future:
    """The future to consume next: the head (ordered) or the first finished one;
    a task that *failed* (crash, timeout) is returned at once in both modes."""
    head = next(iter(pending))
    while True:
        wake.clear()  # before looking, so a completion after the look wakes us
        if ordered and head.done():
            return head
        for f in pending:
            if f.done() and (not ordered or f.cancelled() or f.exception() is not None):
                return f
        wake.wait()


def _task_error(
    e: BaseException,
    start: int,
    chunk: list,
    options: Options,
    unit: str,
    describe: Callable[[int, Any], str],
) -> BaseException:
    """Turn a failed task into an error naming the items it held."""
    if len(chunk) == 1:
        what = describe(start, chunk[0])
    else:
        what = f"one of {unit}s {start}..{start + len(chunk) - 1}"
    if isinstance(e, TimeoutError):
        limit = options.timeout or 0.0
        per = f" ({limit:g} s per {unit} x {len(chunk)})" if len(chunk) > 1 else ""
        return TimeoutError(
            f"{what} did not finish within {limit * len(chunk):g} s{per}; "
            f"raise timeout= or make func faster"
        )
    if isinstance(e, WorkerCrashed):
        items = [(start + i, _ident(x)) for i, x in enumerate(chunk)]
        return WorkerCrashed(f"{e} while running {what}", exitcode=e.exitcode, items=items)
    if isinstance(e, CancelledError):
        return RuntimeError(f"the backend cancelled the task holding {what}")
    add_note(e, f"docmill: the task holding {what} failed")
    return e


def _ident(item: Any) -> str | None:
    ident = getattr(item, "id", None)
    return ident if isinstance(ident, str) else None


def _annotate(exc: BaseException, where: str, backend: str) -> None:
    """Put ``where`` (index and id) into ``exc``'s message when that is safe, and a note."""
    args = exc.args
    plain_str = type(exc).__str__ is BaseException.__str__
    if plain_str and len(args) <= 1 and all(isinstance(a, str) for a in args):
        exc.args = (f"{args[0]} [in {where}]" if args and args[0] else f"in {where}",)
    add_note(exc, f"docmill: func raised this on {where} (backend {backend!r})")


def _progress_bar(total: int | None, unit: str) -> Any:
    from tqdm.auto import tqdm

    class _Bar(tqdm):  # no monitor thread: nothing may outlive a map
        monitor_interval = 0

    return _Bar(total=total, unit=unit, dynamic_ncols=True)
