"""The streaming core: ordering, window, chunking, progress and error mapping, once for
every backend.

::

    caller's iterable                                   backend (serial / thread /
         |  pulled only while fewer than `window`        process / pool), any number
         v  items are in flight                          of workers
    [chunker] --list of items--> backend.submit(chunk) --> worker: ChunkRunner(func)
         |                            |  Future              (results, seconds, error)
         |                  pending {start: _Slot(chunk)}             |
         |                            |  <-- done callback fills the slot, --'
         |                            |      sets `wake`
         v                            v
    next(map(...)) <-- yield results of the head chunk (ordered=True)
                       or of any finished chunk (ordered=False);
                       then refill; on exit: backend.shutdown(cancel=...)

Design points:

- **Chunks everywhere.** Each backend task is a list of items, so per-item cost
  is a list append and a yield, never a Future. With ``chunksize=None`` chunks
  start at one item (so the first result comes back as early as possible) and
  grow from the runner's measured time towards ~10 ms of work per chunk
  (``TARGET_SECONDS``), or 50x the backend's declared per-task overhead
  (:class:`~docmill.parallel.Capabilities`) when that is more: enough to hide a
  process round trip (~0.1-0.3 ms), a thread hand-off (~20 us) or a cluster's
  scheduling cost behind at most ~2%, while keeping latency and cancellation
  prompt. Growth is capped at 8x per step, at
  ``MAX_CHUNK`` items, and, when the input has a length, at
  ``len / (4 x workers)`` so every worker gets several chunks (load balance).
  Big items (Documents with large tensors) also cap chunks at ``CHUNK_BYTES``
  of array data, sampled from the first item of each chunk: the window then
  holds tens of MB, not thousands of 100 KB tensors, whatever the stream's
  length. ``map_batch`` and maps with a ``timeout`` use one item (batch) per
  task, so a timeout and an error name exactly one item.
- **Window.** At most ``window`` items are taken from the input and not yet
  consumed (default ``2 x workers x chunksize``: one chunk running and one
  queued per worker, so workers never wait for the consumer's next call; an
  elastic backend's worker count is read again before each refill). The
  input is pulled only when a chunk is consumed; after k results at most
  k + window items have been taken. A consumer slower than the workers (its next
  chunk was ready when it asked) gets its window refilled once half of it is free,
  several chunks in one pass, rather than one chunk per ``next()``. A backend that
  is not ``concurrent`` (serial) gets a window of one chunk: nothing runs ahead of
  the consumer.
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

import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import CancelledError, Future
from itertools import chain, islice
from typing import Any

from docmill.errors import RemoteTraceback, StartTimeout, WorkerCrashed, add_note
from docmill.parallel._base import Backend
from docmill.parallel._options import Options
from docmill.parallel._registry import backend_class
from docmill.parallel._report import Failure, Report
from docmill.parallel._runner import FAILED, ChunkRunner, Policy, Skipped
from docmill.parallel._shm_codec import Span

__all__ = ["CHUNK_BYTES", "MAX_CHUNK", "TARGET_SECONDS", "describe_item", "make_backend", "stream"]

TARGET_SECONDS = 0.01
CALLER_SECONDS = 0.001
MAX_CHUNK = 1 << 16
CHUNK_BYTES = 4 << 20
_GROWTH = 8


def make_backend(options: Options) -> Backend:
    """Build the backend named by ``options.backend`` (imported on first use)."""
    return backend_class(options.backend)(options)


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
    source: Sequence[Any] | None = None,
    source_batch: int = 0,
) -> Iterator[Any]:
    """Run ``func`` over ``it`` on the backend ``options`` name, lazily.

    ``source``: the list ``it`` iterates from its start, when there is one: a
    backend that forks its workers (``inherit``) then sends index ranges of it instead
    of the items (the workers read the items as they were when they were started).
    ``source_batch``: ``it``'s items are lists of that many consecutive elements of
    ``source`` (the last may be shorter), as ``map_batch`` cuts them.

    Yields each result (``flat=True``), or ``(start, items, results)`` per chunk.
    ``sizeof(item)``, when given, estimates an item's payload bytes (for
    ``CHUNK_BYTES``).
    ``auto_chunks=False``: one item per task unless ``options.chunksize`` says
    otherwise (``map_batch``: a batch is already a big unit of work).
    Nothing starts before the first ``next()``. With a known ``total``, no more
    workers start than there are items. The returned iterator's ``report`` (a
    :class:`Report`) holds the failures ``on_error='skip'`` skipped and the counts.
    """
    report = options.report if options.report is not None else Report()
    skip = [0]  # shared with the Run (the generator must not hold the Run: no cycle)
    gen = _stream(func, it, options, total, unit, describe, auto_chunks, flat, sizeof, report,
                  skip, source, source_batch)  # fmt: skip
    return Run(gen, report, skip, options.checkpoint is None, flat)


class Run(Iterator[Any]):
    """The lazy results of a map, and its :class:`Report` (``.report``)."""

    __slots__ = ("_can_skip", "_gen", "_it", "_skip", "report")

    def __init__(
        self, gen: Iterator[Any], report: Report, skip: list, can_skip: bool, flat: bool
    ) -> None:
        self._gen, self.report = gen, report
        # flat: the core yields each chunk's results as a list, flattened here by
        # itertools.chain: a result costs the consumer one C-level step, not a resume
        # of two generators and a Python __next__
        self._it = chain.from_iterable(gen) if flat else gen
        self._skip = skip
        self._can_skip = can_skip

    def __iter__(self) -> Iterator[Any]:
        self._can_skip = False
        return self._it

    def __next__(self) -> Any:
        self._can_skip = False
        return next(self._it)

    def close(self) -> None:
        self._gen.close()  # type: ignore[attr-defined]

    def skip_input(self, n: int) -> bool:
        """Before the first result: leave out the first ``n`` inputs without running
        ``func`` on them (their results are known elsewhere, e.g. in a
        ``save_binary_stream`` checkpoint). False when that is no longer possible (the
        run has started, or has its own checkpoint): consume ``n`` results instead."""
        if not self._can_skip:
            return False
        self._skip[0] = n
        return True


def _stream(
    func: Callable[[Any], Any],
    it: Iterator[Any],
    options: Options,
    total: int | None,
    unit: str,
    describe: Callable[[int, Any], str],
    auto_chunks: bool,
    flat: bool,
    sizeof: Callable[[Any], int] | None,
    report: Report,
    skip: list,
    source: Sequence[Any] | None,
    source_batch: int,
) -> Iterator[Any]:
    first = None
    if skip[0]:  # done elsewhere: skip them unseen, and count positions from there
        first = sum(1 for _ in islice(it, skip[0]))
        if total is not None:
            total -= first
    if total is not None and options.num_workers > max(1, total):  # type: ignore[operator]
        options = options.replace(num_workers=max(1, total))
    policy = None
    if options.on_error == "skip" or options.retries:
        policy = Policy(
            options.on_error == "skip", options.retries, options.retry_on, options.retry_backoff
        )
    ckpt = None
    if options.checkpoint is not None:
        from docmill.io._checkpoint import Checkpoint, fingerprint

        ckpt = Checkpoint(options.checkpoint, fingerprint(func), options.checkpoint_every,
                          options.checkpoint_check, skipped=FAILED)  # fmt: skip
        ckpt.load()
        for i, result in ckpt.restored():  # done by an earlier run: read back, in order
            item = ckpt.next_input(it, i)
            if result is FAILED:  # skipped by the earlier run (on_error='skip')
                if not flat:
                    yield i, [item], [result]
                continue
            report.done += 1
            if flat:
                yield [result]
            else:
                yield i, [item], [result]
        first = len(ckpt.done)
        ckpt.open(background=not flat)  # flat: results reach the caller at once
    backend = make_backend(options)
    bar = _progress_bar(total, unit) if options.show_progress else None
    finished = False
    try:
        inherit = getattr(backend, "inherit", None)
        token = inherit(source) if source is not None and inherit is not None else None
        backend.start(ChunkRunner(func, policy))
        sizer = _Sizer(backend, options, total, auto_chunks)
        yield from _run(backend, it, options, sizer, describe, unit, flat, sizeof, bar, report,
                        first or 0, ckpt, token, source_batch)  # fmt: skip
        finished = True
        report._limit(options.max_failures, report.done + report.failed, total, final=True)
        report._warn()
    finally:
        try:
            backend.shutdown(cancel=not finished)
        finally:
            if ckpt is not None:
                ckpt.close(finished)
            if bar is not None:
                bar.close()


class _Sizer:
    """How many items the next chunk takes, and whether the window has room for it."""

    def __init__(
        self, backend: Backend, options: Options, total: int | None, auto_chunks: bool
    ) -> None:
        caps = backend.capabilities
        self.backend = backend  # read again: caller_cost, and num_workers when elastic
        self.elastic = caps.elastic
        self.num_workers = max(1, backend.num_workers)
        self.ahead = caps.concurrent  # False: never run ahead (serial)
        # chunks of this much work hide the backend's per-task cost behind <= 2%
        self.target = max(TARGET_SECONDS, 50 * caps.task_overhead)
        self.window = options.window
        self.adapt = options.chunksize is None and options.timeout is None and auto_chunks
        self.size = options.chunksize or 1
        self.total = total
        self.cap = self._cap()
        self.byte_cap = MAX_CHUNK
        self.in_bytes = self.out_bytes = 0  # an item's, and a result's, sampled
        self._limits()

    def _limits(self) -> None:
        """Recompute the next chunk's size ``n`` and the most items in flight at which
        a refill begins, ``low`` (after the chunk size or the workers changed).
        ``low_gather`` is for a consumer that is the slower side (the chunk it last
        asked for was ready): its window is refilled only once half of it is free, in
        one go. After a consumer's long pause each pass through the refill code is cold
        (~50 us, measured), and one pass for several chunks costs barely more than one
        for a single chunk."""
        n = self.size
        win = self.window or (2 * self.num_workers * n if self.ahead else n)
        n = min(n, win)
        self.n, self.low, self.low_gather = n, win - n, win - max(n, win // 2)

    def _cap(self) -> int:
        if self.total is None:
            return MAX_CHUNK
        # several chunks per worker, so none idles at the end
        return max(1, min(MAX_CHUNK, self.total // (4 * self.num_workers)))

    def next_chunk(self, inflight: int, running: bool, gather: bool = False) -> int:
        """Items to take now (0: the window is full; ``gather``: see :meth:`_limits`)."""
        if self.elastic and self.backend.num_workers != self.num_workers:
            self.num_workers = max(1, self.backend.num_workers)
            self.cap = self._cap()
            self._limits()
        if not running:
            return self.n
        return self.n if inflight <= (self.low_gather if gather else self.low) else 0

    def sample(self, item_bytes: int | None = None, result_bytes: int | None = None) -> None:
        """Keep chunks of big items, or of big results, under ``CHUNK_BYTES`` (a result
        made in the worker counts as much as an input: both cross the boundary, and
        a message of many big results overflows the transport's segment pool)."""
        if item_bytes is not None:
            self.in_bytes = item_bytes
        if result_bytes is not None:
            self.out_bytes = result_bytes
        self.byte_cap = max(1, CHUNK_BYTES // max(1, self.in_bytes + self.out_bytes))
        self.size = min(self.size, self.byte_cap)
        self._limits()

    def observe(self, n: int, seconds: float) -> None:
        """A chunk of ``n`` items took ``seconds`` in the worker: aim at ``self.target``."""
        ideal = int(self.target * n / seconds) if seconds > 0 else self.cap
        caller = getattr(self.backend, "caller_cost", 0.0)
        if caller > 0:  # results the caller must decode one by one (tiny Documents)
            ideal = min(ideal, max(1, int(CALLER_SECONDS / caller)))
        self.size = max(1, min(self.cap, self.byte_cap, ideal, self.size * _GROWTH))
        self._limits()


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
    report: Report,
    first: int = 0,
    ckpt: Any = None,
    token: str | None = None,
    source_batch: int = 0,
) -> Iterator[Any]:
    timeout = options.timeout
    ordered = options.ordered
    skip = options.on_error == "skip"
    adapt = sizer.adapt
    sample = adapt and sizeof is not None
    # start index -> _Slot(chunk); insertion order = input order, and a chunk re-run
    # item by item keeps its place (a new value for an existing key)
    pending: dict[int, _Slot] = {}
    wake = threading.Event()

    taken, inflight = first, 0  # indices count from the start of the whole input
    exhausted = gather = False
    while True:
        # -- refill: submit chunks while the window has room (always keep one running)
        while not exhausted and (n := sizer.next_chunk(inflight, bool(pending), gather)):
            gather = False  # (once begun, the window is filled)
            chunk = list(islice(it, n))
            if len(chunk) < n:
                exhausted = True
                if not chunk:
                    break
            if sample and token is None:  # (inherited items do not travel)
                sizer.sample(sizeof(chunk[0]))
            # (inherited: indices only)
            task = chunk if token is None else Span(token, taken, chunk, source_batch)
            f = backend.submit(task, None if timeout is None else timeout * len(chunk))
            pending[taken] = slot = _Slot(chunk, wake)
            taken += len(chunk)
            inflight += len(chunk)
            f.add_done_callback(slot.take)
        if not pending:
            return

        # -- wait for the next chunk to hand out
        start = next(iter(pending))
        slot = pending[start]
        gather = ordered and slot.done  # ready before it was asked for
        if not ordered or not slot.done:
            start = _wait(pending, wake, ordered)
            slot = pending[start]
        chunk = slot.chunk
        if (e := slot.error) is not None:
            if (len(chunk) > 1 or skip) and _rerunnable(e):
                # A crash (or an unpicklable result) of a chunk of many items names no
                # item: run them one by one to find it (items before it run again).
                # With on_error='skip', each item whose task fails runs once more (on a
                # fresh worker), then is recorded and skipped.
                pending[start] = slot = _Slot(chunk, wake)
                _OneByOne(backend, chunk, timeout, slot.take, skip)
                continue
            pending.pop(start)
            found = isinstance(e, _AtItem)
            if found:  # a re-run found the item: name exactly that one
                start, chunk, e = start + e.pos, [chunk[e.pos]], e.error
            mapped = _task_error(e, start, chunk, options, unit, describe)
            if mapped is e:
                if not found:
                    raise e
                raise e from e.__cause__
            raise mapped from (None if isinstance(mapped, TimeoutError) else e)
        outs, seconds, err = slot.value
        pending.pop(start)
        inflight -= len(chunk)
        if adapt and outs:
            if sample:
                sizer.sample(result_bytes=sizeof(outs[0]))
            sizer.observe(len(outs), seconds)
        if bar is not None:
            bar.update(len(outs))
        if ckpt is not None:  # (skipped items too, as such: the file stays positional)
            for j, out in enumerate(outs):
                ckpt.add(start + j, chunk[j], out)
            # results the caller gets at once are written before it can change them
            ckpt.written(full=flat)
        if isinstance(err, Skipped):
            _record(report, err, start, chunk, backend.name, describe)
            report.done += len(outs) - len(err.failures)
            if err.failures:
                if bar is not None:
                    bar.set_postfix(failed=report.failed, retried=report.retried, refresh=False)
                if flat:
                    outs = [o for o in outs if o is not FAILED]
                report._limit(options.max_failures, start + len(chunk), sizer.total)
            err = None
        else:
            report.done += len(outs)
        if flat:
            yield outs  # a whole chunk: the Run flattens it (in C)
        else:
            yield start, chunk, outs
        if err is not None:
            pos, exc, tb = err
            _annotate(exc, describe(start + pos, chunk[pos]), backend.name)
            raise exc from RemoteTraceback(tb)


def _record(
    report: Report,
    skipped: Skipped,
    start: int,
    chunk: list,
    backend: str,
    describe: Callable[[int, Any], str],
) -> None:
    report.retried += skipped.retried
    for pos, exc, tb, retries in skipped.failures:
        message = str(exc)  # before the item is added to it
        _annotate(exc, describe(start + pos, chunk[pos]), backend)
        report.failures.append(
            Failure(start + pos, _ident(chunk[pos]), type(exc).__name__, message, tb, retries, exc)
        )


class _Slot:
    """A submitted chunk and, once its task has ended, its outcome: filled by the
    future's done callback (on the worker's side), so handing out a finished chunk
    reads two attributes instead of calling into the future (after a consumer's long
    pause every call is a cache miss: measured ~45 us for one ``Future.result()``)."""

    __slots__ = ("chunk", "done", "error", "value", "wake")

    def __init__(self, chunk: list, wake: threading.Event) -> None:
        self.chunk, self.wake = chunk, wake
        self.done, self.error, self.value = False, None, None

    def take(self, f: Future) -> None:
        try:
            self.value = f.result()
        except BaseException as e:  # (CancelledError too)
            self.error = e
        self.done = True
        self.wake.set()


def _wait(pending: dict[int, _Slot], wake: threading.Event, ordered: bool) -> int:
    """The chunk to consume next (its start): the head (ordered) or the first finished
    one; a task that *failed* (crash, timeout) is returned at once in both modes."""
    head = next(iter(pending))
    while True:
        wake.clear()  # before looking, so a completion after the look wakes us
        if ordered and pending[head].done:
            return head
        for start, slot in pending.items():
            if slot.done and (not ordered or slot.error is not None):
                return start
        wake.wait()


def _rerunnable(e: BaseException) -> bool:
    """A chunk's task failed for one of its items, not for time or cancellation. A
    ``BaseException`` that is not an ``Exception`` (``SystemExit``, ``KeyboardInterrupt``,
    a custom one) raised by ``func`` in this process stops the run as it is."""
    return isinstance(e, Exception) and not isinstance(
        e, _AtItem | TimeoutError | CancelledError | StartTimeout
    )


class _AtItem(Exception):
    """The task-level failure of item ``pos`` of a chunk re-run item by item."""

    def __init__(self, pos: int, error: BaseException) -> None:
        super().__init__(pos, error)
        self.pos, self.error = pos, error


class _OneByOne:
    """Runs a chunk's items as one-item tasks, one after the other, into one future
    that resolves like the chunk's own (``(results, seconds, error)``), or fails
    with :class:`_AtItem` naming the item whose task failed."""

    def __init__(
        self,
        backend: Backend,
        chunk: list,
        timeout: float | None,
        on_done: Callable,
        skip: bool = False,
    ) -> None:
        self.future: Future = Future()
        self._backend, self._chunk, self._timeout = backend, chunk, timeout
        self._results: list = []
        self._seconds = 0.0
        self._skip = skip
        self._failures: list = []  # (position, exception, traceback, retries) when skipping
        self._retried = 0
        self._again = -1  # the item being run a second time after its task failed
        self.future.add_done_callback(on_done)
        self._advance(0)

    def _advance(self, i: int) -> None:
        # a loop, not recursion through callbacks: a serial backend's futures are done
        # at once, and a chunk holds up to MAX_CHUNK items
        while i < len(self._chunk):
            try:
                f = self._backend.submit([self._chunk[i]], self._timeout)
            except BaseException as e:
                self.future.set_exception(_AtItem(i, e))
                return
            if not f.done():
                f.add_done_callback(
                    lambda f, i=i: (
                        self._settled(f, i) and self._advance(i if self._again == i else i + 1)
                    )
                )
                return
            if not self._settled(f, i):
                return
            if self._again != i:
                i += 1
        skipped = (
            Skipped(self._failures, self._retried) if self._failures or self._retried else None
        )
        self.future.set_result((self._results, self._seconds, skipped))

    def _settled(self, f: Future, i: int) -> bool:
        """Take item ``i``'s outcome; True to go on (with the next item, or with item
        ``i`` again when ``self._again == i``)."""
        try:
            outs, seconds, err = f.result()
        except BaseException as e:
            if not self._skip or not _rerunnable(e):
                self.future.set_exception(_AtItem(i, e))
                return False
            if self._again != i:  # once more, on a fresh worker
                self._again = i
                self._retried += 1
                return True
            self._again = -1
            self._results.append(FAILED)
            self._failures.append((i, e, "", 1))
            return True
        self._again = -1
        self._results.extend(outs)
        self._seconds += seconds
        if isinstance(err, Skipped):
            self._failures.extend((i + p, e, tb, r) for p, e, tb, r in err.failures)
            self._retried += err.retried
        elif err is not None:
            self.future.set_result((self._results, self._seconds, (i + err[0], *err[1:])))
            return False
        return True


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
    if isinstance(e, TimeoutError) and not isinstance(e, StartTimeout):
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


_NOTE = "docmill: func raised this on "


def _annotate(exc: BaseException, where: str, backend: str) -> None:
    """Put ``where`` (index and id) into ``exc``'s message when that is safe, and a note.

    Idempotent: the same exception object raised again (by another map, on another
    item) is annotated afresh, not once more. Only the message changes, never data a
    handler reads: ``KeyError``'s key stays its key (the note names the item);
    an ``OSError`` gets it in ``strerror``, keeping ``errno`` and ``filename``.
    """
    state = getattr(exc, "__dict__", None)
    if state is not None:
        args, strerror = state.setdefault(
            "_docmill_original", (exc.args, getattr(exc, "strerror", None))
        )
        suffix = f" [in {where}]"
        if isinstance(exc, OSError) and isinstance(strerror, str):
            exc.strerror = strerror + suffix
        elif (
            (type(exc).__str__ is BaseException.__str__ or type(exc).__str__ is OSError.__str__)
            and len(args) <= 1
            and all(isinstance(a, str) for a in args)
        ):  # not KeyError (its own __str__): its one argument is the key, not a message
            exc.args = (f"{args[0]}{suffix}" if args and args[0] else f"in {where}",)
        notes = getattr(exc, "__notes__", None)
        if isinstance(notes, list):
            notes[:] = [n for n in notes if not (isinstance(n, str) and n.startswith(_NOTE))]
    add_note(exc, f"{_NOTE}{where} (backend {backend!r})")


def _progress_bar(total: int | None, unit: str) -> Any:
    from tqdm.auto import tqdm

    class _Bar(tqdm):  # no monitor thread: nothing may outlive a map
        monitor_interval = 0

    return _Bar(total=total, unit=unit, dynamic_ncols=True)
