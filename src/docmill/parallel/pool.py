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
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from functools import partial
from multiprocessing.pool import Pool, ThreadPool
from typing import TYPE_CHECKING, Any

from docmill.parallel._base import Backend, Capabilities, Watchdog, settle
from docmill.parallel._runner import call_pickled

if TYPE_CHECKING:
    from docmill.parallel._options import Options

__all__ = ["PoolBackend"]


class PoolBackend(Backend):
    """Adapter for a caller's pool (see the module docstring)."""

    name = "pool"
    capabilities = Capabilities(task_overhead=200e-6, worker_hooks=False, replaces_workers=False)

    @classmethod
    def check(cls, options: Options) -> None:
        if not isinstance(options.pool, Executor | Pool):  # ThreadPool is a Pool subclass
            raise TypeError(
                f"pool must be a multiprocessing.pool.Pool / ThreadPool or a "
                f"concurrent.futures.Executor, got {type(options.pool).__name__}; "
                f"pass pool=None to let docmill start its own workers"
            )
        if options.initializer is not None:
            raise ValueError(
                "initializer cannot be used with pool=...: your pool's workers are "
                "already running; give the initializer to the pool when you create it"
            )
        if options.max_tasks_per_worker is not None:
            raise ValueError(
                "max_tasks_per_worker cannot be used with pool=...: set it on your "
                "pool (Pool(maxtasksperchild=...)) instead"
            )

    @classmethod
    def default_workers(cls, options: Options) -> int | None:
        """The pool's size, when it says so."""
        pool = options.pool
        n = getattr(pool, "_max_workers", None) or getattr(pool, "_processes", None)
        return n if isinstance(n, int) and n > 0 else None

    def __init__(self, options: Options) -> None:
        self._pool = options.pool
        self._executor = isinstance(options.pool, Executor)
        self.num_workers = options.num_workers  # type: ignore[assignment]
        self._in_process = isinstance(options.pool, ThreadPool | ThreadPoolExecutor)
        if self._in_process:
            self.capabilities = Capabilities(worker_hooks=False, replaces_workers=False)
        self._call: Callable[[Any], Any] | None = None
        self._lock = threading.Lock()
        self._waiting: deque[tuple[Future, Any, float | None]] = deque()
        self._handed = 0
        self._inner: dict[Future, Future] = {}  # outer -> executor future (to cancel)
        self._watchdog = Watchdog("docmill-pool-watchdog")
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
        self._watchdog.stop()

    # ------------------------------------------------------------------ internals
    def _hand(self, outer: Future, task: Any, timeout: float | None) -> None:
        """Give one task to the pool (the caller has reserved a slot for it)."""
        if self._closed or not outer.set_running_or_notify_cancel():
            self._release()
            return
        if timeout is not None:
            self._watchdog.arm(outer, timeout, partial(_time_out, outer))
        try:
            if self._executor:
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
        self._watchdog.disarm(outer)
        self._inner.pop(outer, None)
        if cancelled:
            error = RuntimeError("the pool cancelled the task")
        settle(outer, result, error)  # unless the watchdog failed it already
        self._release()

    def _release(self) -> None:
        """A slot is free: hand the next waiting task to the pool."""
        with self._lock:
            if self._closed or not self._waiting:
                self._handed -= 1
                return
            nxt = self._waiting.popleft()
        self._hand(*nxt)


def _time_out(f: Future) -> None:
    settle(f, error=TimeoutError("the task ran longer than its timeout"))
