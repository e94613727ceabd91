"""The serial backend: runs every task in the caller's thread, for tests and debugging.

``backend='serial'`` gives the same results, errors and messages as the
parallel backends with none of their machinery, so a breakpoint or a profiler
in ``func`` just works. The streaming core does not run ahead on it (its
window is one chunk), so items are processed only as results are consumed.
A ``timeout`` cannot interrupt the caller: a task that took longer than it
fails with ``TimeoutError`` after it returns.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from time import perf_counter
from typing import Any

from docmill.parallel._base import Backend
from docmill.parallel._options import Options

__all__ = ["SerialBackend"]


class SerialBackend(Backend):
    """Runs ``fn(task)`` inside :meth:`submit`, in the calling thread."""

    name = "serial"
    num_workers = 1
    #: the core reads this: no work is started ahead of the consumer
    concurrent = False

    def __init__(self, options: Options) -> None:
        self._options = options
        self._fn: Callable[[Any], Any] | None = None

    def start(self, fn: Callable[[Any], Any]) -> None:
        self._fn = fn
        if self._options.initializer is not None:
            self._options.initializer(*self._options.initargs)

    def submit(self, task: Any, timeout: float | None = None) -> Future:
        if self._fn is None:
            raise RuntimeError("SerialBackend.submit() called before start() or after shutdown()")
        f: Future = Future()
        t0 = perf_counter()
        try:
            result = self._fn(task)
        except BaseException as e:
            f.set_exception(e)
            return f
        if timeout is not None and perf_counter() - t0 > timeout:
            f.set_exception(TimeoutError(f"the task ran longer than {timeout:g} s"))
        else:
            f.set_result(result)
        return f

    def shutdown(self, cancel: bool = False) -> None:
        self._fn = None
