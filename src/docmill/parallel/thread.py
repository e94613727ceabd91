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
from concurrent.futures import Future
from time import monotonic
from typing import TYPE_CHECKING, Any

from docmill.errors import add_note
from docmill.parallel._base import Backend, Capabilities, Watchdog, settle, start_timeout

if TYPE_CHECKING:
    from docmill.parallel._options import Options

__all__ = ["ThreadBackend"]

_STOP = None  # queue sentinel: one per worker thread
_JOIN_SECONDS = 2.0  # total time shutdown() waits for threads to finish


class ThreadBackend(Backend):
    """Runs ``fn(task)`` on ``options.num_workers`` daemon threads."""

    name = "thread"
    capabilities = Capabilities(task_overhead=20e-6)

    def __init__(self, options: Options) -> None:
        self.num_workers = options.num_workers  # type: ignore[assignment]
        self._options = options
        self._fn: Callable[[Any], Any] | None = None
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads: set[threading.Thread] = set()
        self._abandoned: set[threading.Thread] = set()  # timed out in func (or its initializer)
        self._watchdog = Watchdog("docmill-thread-watchdog")
        self._broken: BaseException | None = None
        self._closed = False
        self._started = 0  # threads started for tasks (replacements not counted)

    # ------------------------------------------------------------------ Backend
    def start(self, fn: Callable[[Any], Any]) -> None:
        # The threads start with the first tasks, one per submit (as a
        # ThreadPoolExecutor's): starting a thread makes the caller wait for it, so
        # the thread that took the first task is already at work while the others
        # start (all started first, the first task would wait for them).
        self._fn = fn

    def submit(self, task: Any, timeout: float | None = None) -> Future:
        f: Future = Future()
        if self._closed:
            raise RuntimeError("ThreadBackend.submit() after shutdown()")
        if self._broken is not None:
            f.set_exception(self._broken)
            return f
        self._queue.put((f, task, timeout))
        if self._started < self.num_workers:
            with self._lock:
                if self._started < self.num_workers and not self._closed:
                    self._started += 1
                    self._spawn()
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
        self._watchdog.stop()
        deadline = monotonic() + _JOIN_SECONDS
        for t in threads:
            # a thread stuck in func cannot be stopped; it is a daemon and exits
            # when func returns (it then finds the backend closed)
            if t not in stuck and t is not threading.current_thread():
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
                self._watchdog.arm(
                    me,
                    opts.init_timeout,  # type: ignore[arg-type]
                    lambda me=me: self._start_timed_out(me),
                )
                try:
                    opts.initializer(*opts.initargs)
                except BaseException as e:
                    add_note(e, "(raised by the initializer of a docmill thread worker)")
                    self._broken = e
                    self._fail_all(e)
                    return
                finally:
                    self._watchdog.disarm(me)
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
                    settle(f, error=self._broken)
                    continue
                if timeout is not None:
                    self._watchdog.arm(me, timeout, lambda me=me, f=f: self._timed_out(me, f))
                try:
                    result = fn(task)
                except BaseException as e:
                    settle(f, error=e)
                else:
                    settle(f, result)
                finally:
                    if timeout is not None:
                        self._watchdog.disarm(me)
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
                settle(item[0], error=error)

    def _fail_all(self, error: BaseException) -> None:
        """A broken worker keeps serving the queue by failing every task with ``error``
        until shutdown, so no task submitted around the failure is left waiting."""
        while (item := self._queue.get()) is not _STOP:
            if item[0].set_running_or_notify_cancel():
                settle(item[0], error=error)

    # ------------------------------------------------------------------ watchdog callbacks
    def _timed_out(self, thread: threading.Thread, f: Future) -> None:
        """A task passed its deadline: fail it and replace the thread stuck in it."""
        with self._lock:
            self._abandoned.add(thread)
            if not self._closed:
                self._spawn()
        settle(f, error=TimeoutError("the task ran longer than its timeout"))

    def _start_timed_out(self, thread: threading.Thread) -> None:
        """An initializer passed init_timeout: no task can run."""
        with self._lock:
            self._abandoned.add(thread)
        if self._broken is None:
            self._broken = start_timeout("a thread worker", self._options)
            self._drain(self._broken)
