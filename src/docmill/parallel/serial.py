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
from typing import TYPE_CHECKING, Any

from docmill.parallel._base import Backend, Capabilities, settle

if TYPE_CHECKING:
    from docmill.parallel._options import Options

__all__ = ["SerialBackend"]


class SerialBackend(Backend):
    """Runs ``fn(task)`` inside :meth:`submit`, in the calling thread."""

    name = "serial"
    num_workers = 1
    #: nothing is started ahead of the consumer
    capabilities = Capabilities(concurrent=False, task_overhead=1e-6, replaces_workers=False)

    @classmethod
    def default_workers(cls, options: Options) -> int | None:
        return 1

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
            settle(f, error=e)
            return f
        if timeout is not None and perf_counter() - t0 > timeout:
            settle(f, error=TimeoutError(f"the task ran longer than {timeout:g} s"))
        else:
            settle(f, result)
        return f

    def shutdown(self, cancel: bool = False) -> None:
        self._fn = None
