"""The ``pool=`` backend: run tasks on a pool the caller already owns.

Accepts a :class:`multiprocessing.pool.Pool` / ``ThreadPool`` or any
:class:`concurrent.futures.Executor`. The pool is used as is and never closed
or resized; its workers belong to the caller. What this adapter adds:

- thread pools (``ThreadPool``, ``ThreadPoolExecutor``) get the chunk runner
  directly; any other pool gets it as cloudpickle bytes, rebuilt once per
  worker process (:func:`docmill.parallel._runner.call_pickled`), so lambdas and
  closures work there too;
- at most ``num_worker`` tasks are handed to the pool at a time, the rest wait
  here. That keeps ``timeout`` honest (it counts from the hand-over, which is
  then also the start) and leaves the pool free for the caller's other work;
- a task past its timeout fails with ``TimeoutError``; it cannot be killed and
  keeps running in the caller's pool until it returns.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError, ThreadPoolExecutor
from functools import partial
from multiprocessing.pool import ThreadPool
from time import monotonic
from typing import Any

from docmill.parallel._base import Backend
from docmill.parallel._options import Options, pool_kind
from docmill.parallel._runner import call_pickled

__all__ = ["PoolBackend"]


class PoolBackend(Backend):
    """Adapter for a caller's pool (see the module docstring)."""

    name = "pool"

    def __init__(self, options: Options) -> None:
        self._pool = options.pool
        self._kind = pool_kind(options.pool)
        self.num_workers = options.num_worker
        self._in_process = isinstance(options.pool, ThreadPool | ThreadPoolExecutor)
        self._call: Callable[[Any], Any] | None = None
        self._lock = threading.Lock()
        self._waiting: deque[tuple[Future, Any, float | None]] = deque()
        self._handed = 0
        self._inner: dict[Future, Future] = {}  # outer -> executor future (to cancel)
        self._deadlines: dict[Future, float] = {}
        self._watchdog: threading.Thread | None = None
        self._stopping = threading.Event()
        self._closed = False

    # ------------------------------------------------------------------ Backend
    def start(self, fn: Callable[[Any], Any]) -> None:
        if self._in_process:
            self._call = fn
        else:
            import cloudpickle

            self._call = partial(call_pickled, cloudpickle.dumps(fn))

    def submit(self, task: Any, timeout: float | None = None) -> Future:
        if self._closed:
            raise RuntimeError("PoolBackend.submit() after shutdown()")
        outer: Future = Future()
        if timeout is not None and self._watchdog is None:
            self._watchdog = threading.Thread(
                target=self._watch, name="docmill-pool-watchdog", daemon=True
            )
            self._watchdog.start()
        with self._lock:
            hand = self._handed < self.num_workers
            if hand:
                self._handed += 1
            else:
                self._waiting.append((outer, task, timeout))
        if hand:
            self._hand(outer, task, timeout)
        return outer

    def shutdown(self, cancel: bool = False) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            waiting = list(self._waiting)
            self._waiting.clear()
            inner = list(self._inner.values())
        for outer, _task, _timeout in waiting:
            outer.cancel()
        if cancel:
            for f in inner:
                f.cancel()  # only succeeds for tasks the pool has not started
        self._stopping.set()
        if self._watchdog is not None and self._watchdog is not threading.current_thread():
            self._watchdog.join(2.0)

    # ------------------------------------------------------------------ internals
    def _hand(self, outer: Future, task: Any, timeout: float | None) -> None:
        """Give one task to the pool (the caller has reserved a slot for it)."""
        if self._closed or not outer.set_running_or_notify_cancel():
            self._release()
            return
        if timeout is not None:
            self._deadlines[outer] = monotonic() + timeout
        try:
            if self._kind == "executor":
                inner = self._pool.submit(self._call, task)
                self._inner[outer] = inner
                inner.add_done_callback(partial(self._from_future, outer))
            else:
                self._pool.apply_async(
                    self._call,
                    (task,),
                    callback=partial(self._finish, outer, error=None),
                    error_callback=partial(self._finish, outer, None),
                )
        except BaseException as e:  # e.g. the caller closed the pool
            self._finish(outer, None, e)

    def _from_future(self, outer: Future, inner: Future) -> None:
        if inner.cancelled():
            self._finish(outer, None, None, cancelled=True)
        elif (e := inner.exception()) is not None:
            self._finish(outer, None, e)
        else:
            self._finish(outer, inner.result(), None)

    def _finish(
        self, outer: Future, result: Any, error: BaseException | None, cancelled: bool = False
    ) -> None:
        self._deadlines.pop(outer, None)
        self._inner.pop(outer, None)
        try:
            if cancelled:
                outer.set_exception(RuntimeError("the pool cancelled the task"))
            elif error is None:
                outer.set_result(result)
            else:
                outer.set_exception(error)
        except InvalidStateError:  # already failed by the watchdog
            pass
        self._release()

    def _release(self) -> None:
        """A slot is free: hand the next waiting task to the pool."""
        with self._lock:
            if self._closed or not self._waiting:
                self._handed -= 1
                return
            nxt = self._waiting.popleft()
        self._hand(*nxt)

    def _watch(self) -> None:
        while not self._stopping.wait(0.02):
            now = monotonic()
            for outer, end in list(self._deadlines.items()):
                if end <= now and self._deadlines.pop(outer, None) is not None:
                    try:
                        outer.set_exception(TimeoutError("the task ran longer than its timeout"))
                    except InvalidStateError:
                        pass
