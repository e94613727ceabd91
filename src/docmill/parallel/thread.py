"""The thread backend: a small pool of daemon threads owned by one map.

Why not :class:`concurrent.futures.ThreadPoolExecutor`: its threads are joined
at interpreter exit, so one ``func`` stuck forever would hang the program, and
it has no per-task timeout. Here:

- workers are daemon threads pulling ``(future, task, timeout)`` from one
  queue; ``shutdown`` wakes them with one sentinel each and joins them within
  a bounded time;
- with a timeout, a watchdog thread fails a task's future with
  ``TimeoutError`` when its deadline passes, abandons the stuck thread (it
  exits when ``func`` returns) and starts a replacement, so the map goes on at
  full width;
- ``initializer`` runs once in each worker thread (use
  :func:`docmill.parallel.worker_state` to keep per-thread state); if it
  raises, every task fails with that exception;
- ``max_tasks_per_worker`` replaces a thread after that many tasks.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError
from time import monotonic
from typing import Any

from docmill.errors import StartTimeout, add_note
from docmill.parallel._base import Backend
from docmill.parallel._options import Options

__all__ = ["ThreadBackend"]

_STOP = None  # queue sentinel: one per worker thread
_JOIN_SECONDS = 2.0  # total time shutdown() waits for threads to finish


class ThreadBackend(Backend):
    """Runs ``fn(task)`` on ``options.num_worker`` daemon threads."""

    name = "thread"

    def __init__(self, options: Options) -> None:
        self.num_workers = options.num_worker
        self._options = options
        self._fn: Callable[[Any], Any] | None = None
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads: set[threading.Thread] = set()
        # thread -> (future, deadline) of the task it runs, when that task has a timeout
        self._deadlines: dict[threading.Thread, tuple[Future, float]] = {}
        self._abandoned: set[threading.Thread] = set()
        # thread -> deadline of its initializer (init_timeout)
        self._starting: dict[threading.Thread, float] = {}
        self._watchdog: threading.Thread | None = None
        self._stopping = threading.Event()
        self._broken: BaseException | None = None
        self._closed = False

    # ------------------------------------------------------------------ Backend
    def start(self, fn: Callable[[Any], Any]) -> None:
        self._fn = fn
        with self._lock:
            for _ in range(self.num_workers):
                self._spawn()
        if self._options.initializer is not None:
            self._start_watchdog()

    def _start_watchdog(self) -> None:
        with self._lock:
            if self._watchdog is not None:
                return
            self._watchdog = threading.Thread(
                target=self._watch, name="docmill-thread-watchdog", daemon=True
            )
        self._watchdog.start()

    def submit(self, task: Any, timeout: float | None = None) -> Future:
        f: Future = Future()
        if self._closed:
            raise RuntimeError("ThreadBackend.submit() after shutdown()")
        if self._broken is not None:
            f.set_exception(self._broken)
            return f
        if timeout is not None and self._watchdog is None:
            self._start_watchdog()
        self._queue.put((f, task, timeout))
        return f

    def shutdown(self, cancel: bool = False) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            threads = list(self._threads)
            stuck = set(self._abandoned)  # timed out in func: waiting for them is pointless
        if cancel:
            self._drain()
        for _ in threads:
            self._queue.put(_STOP)
        self._stopping.set()
        deadline = monotonic() + _JOIN_SECONDS
        for t in [*threads, self._watchdog]:
            # a thread stuck in func cannot be stopped; it is a daemon and exits
            # when func returns (it then finds the backend closed)
            if t is not None and t not in stuck and t is not threading.current_thread():
                t.join(max(0.0, deadline - monotonic()))
        self._fn = None

    # ------------------------------------------------------------------ workers
    def _spawn(self) -> None:
        # caller holds self._lock
        t = threading.Thread(target=self._work, name="docmill-thread-worker", daemon=True)
        self._threads.add(t)
        t.start()

    def _work(self) -> None:
        me = threading.current_thread()
        opts = self._options
        try:
            if opts.initializer is not None:
                with self._lock:
                    self._starting[me] = monotonic() + opts.init_timeout  # type: ignore[operator]
                try:
                    opts.initializer(*opts.initargs)
                    with self._lock:
                        self._starting.pop(me, None)
                except BaseException as e:
                    add_note(e, "(raised by the initializer of a docmill thread worker)")
                    self._broken = e
                    self._fail_all(e)
                    return
            fn = self._fn
            todo = opts.max_tasks_per_worker or -1
            get = self._queue.get
            while todo != 0:
                item = get()
                if item is _STOP:
                    return
                f, task, timeout = item
                if not f.set_running_or_notify_cancel():
                    continue
                if self._broken is not None:  # another worker's initializer failed
                    _settle(f, None, self._broken)
                    continue
                if timeout is not None:
                    with self._lock:
                        self._deadlines[me] = (f, monotonic() + timeout)
                try:
                    result = fn(task)
                except BaseException as e:
                    _settle(f, None, e)
                else:
                    _settle(f, result, None)
                finally:
                    if timeout is not None:
                        with self._lock:
                            self._deadlines.pop(me, None)
                if me in self._abandoned or self._closed:
                    return
                todo -= 1
            with self._lock:  # max_tasks_per_worker reached: hand over to a fresh thread
                if not self._closed:
                    self._spawn()
        finally:
            with self._lock:
                self._threads.discard(me)
                self._abandoned.discard(me)

    def _drain(self, error: BaseException | None = None) -> None:
        """Cancel every task queued now, or fail it with ``error`` (the watchdog does
        that when no worker may be free to)."""
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if item is _STOP:
                self._queue.put(_STOP)  # keep it for the thread it was meant for
                return
            if error is None:
                item[0].cancel()
            elif item[0].set_running_or_notify_cancel():
                _settle(item[0], None, error)

    def _fail_all(self, error: BaseException) -> None:
        """A broken worker keeps serving the queue by failing every task with ``error``
        until shutdown, so no task submitted around the failure is left waiting."""
        while (item := self._queue.get()) is not _STOP:
            if item[0].set_running_or_notify_cancel():
                _settle(item[0], None, error)

    def _watch(self) -> None:
        """Fail tasks that passed their deadline; replace the threads that ran them."""
        while not self._stopping.wait(0.02):
            now = monotonic()
            with self._lock:
                stuck = [t for t, end in self._starting.items() if end <= now]
                for t in stuck:
                    del self._starting[t]
                    self._abandoned.add(t)
            if stuck and self._broken is None:
                init = self._options.initializer
                self._broken = StartTimeout(
                    f"the initializer {getattr(init, '__qualname__', init)!r} of a thread worker "
                    f"did not return within init_timeout={self._options.init_timeout:g} s, so no "
                    f"task can run; raise init_timeout= or find what it waits for"
                )
                self._drain(self._broken)
            with self._lock:
                late = [(t, f) for t, (f, end) in self._deadlines.items() if end <= now]
                for t, _f in late:
                    del self._deadlines[t]
                    self._abandoned.add(t)
                    if not self._closed:
                        self._spawn()
            for _t, f in late:
                _settle(f, None, TimeoutError("the task ran longer than its timeout"))


def _settle(f: Future, result: Any, error: BaseException | None) -> None:
    # a task that timed out was already settled by the watchdog
    try:
        if error is None:
            f.set_result(result)
        else:
            f.set_exception(error)
    except InvalidStateError:
        pass
