"""The backend contract: run one callable over tasks (chunks) on some workers.

A backend knows nothing about Documents, ordering, windows or progress bars —
the streaming core in :mod:`docmill.parallel._core` does all of that once, above
every backend. A backend only has to:

- ``start(fn)``: get workers ready to run ``fn(task)`` (for processes ``fn`` is
  shipped once per worker with cloudpickle, not once per task);
- ``submit(task, timeout)``: run ``fn(task)`` on some worker, return a
  :class:`concurrent.futures.Future` for its result;
- ``shutdown(cancel)``: stop the workers; idempotent; bounded in time.

Failure contract for the futures a backend returns:

- ``fn`` raised: the future holds that exception (``fn`` is the core's chunk
  runner, which already catches per-item errors and returns them as values, so
  this only happens for bugs or unpicklable results);
- the worker died while holding the task: :class:`docmill.WorkerCrashed`
  (exit code set), within seconds, never a hang;
- the task ran longer than ``timeout`` seconds: ``TimeoutError``; a process
  backend kills and replaces the worker, a thread backend abandons the thread.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

__all__ = ["Backend"]


class Backend(ABC):
    """Runs ``fn(task)`` for submitted tasks on a set of workers."""

    #: short name used in messages and progress bars ('thread', 'process', ...)
    name: str = "?"
    #: how many tasks can run at the same time
    num_workers: int = 1

    @abstractmethod
    def start(self, fn: Callable[[Any], Any]) -> None:
        """Prepare the workers to run ``fn``."""

    @abstractmethod
    def submit(self, task: Any, timeout: float | None = None) -> Future:
        """Run ``fn(task)`` on a worker; the future resolves to its return value."""

    @abstractmethod
    def shutdown(self, cancel: bool = False) -> None:
        """Stop the workers. ``cancel=True`` abandons queued and running tasks
        (killing processes if needed). Idempotent; returns within a few seconds."""

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.shutdown(cancel=exc_type is not None)
