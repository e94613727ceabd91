"""The backend contract: run one callable over tasks (chunks) on some workers.

A backend knows nothing about Documents, ordering, windows or progress bars —
the streaming core in :mod:`docmill.parallel._core` does all of that once, above
every backend. A backend is one class (registered by name with
:func:`docmill.parallel.register_backend`) that has to:

- ``__init__(options)``: take the validated :class:`~docmill.parallel.Options`;
  its own options (``options.backend_options``) are an instance of its
  :attr:`Backend.options_class` dataclass, validated there;
- ``start(fn)``: get workers ready to run ``fn(task)`` (for processes ``fn`` is
  shipped once per worker with cloudpickle, not once per task);
- ``submit(task, timeout)``: run ``fn(task)`` on some worker, return a
  :class:`concurrent.futures.Future` for its result;
- ``shutdown(cancel)``: stop the workers; idempotent; bounded in time;
- declare what it can do in :attr:`Backend.capabilities` (the core sizes
  chunks and the window from it, the conformance suite picks its tests by it).

Failure contract for the futures a backend returns:

- ``fn`` raised: the future holds that exception (``fn`` is the core's chunk
  runner, which already catches per-item errors and returns them as values, so
  this only happens for bugs or unpicklable results);
- the worker died while holding the task: :class:`docmill.WorkerCrashed`
  (exit code set), within seconds, never a hang;
- the task ran longer than ``timeout`` seconds: ``TimeoutError``; a process
  backend kills and replaces the worker, a thread backend abandons the thread
  (:class:`Watchdog` does the clock for backends without an event loop of their own).
"""

from __future__ import annotations

import heapq
import itertools
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass
from time import monotonic
from typing import TYPE_CHECKING, Any, ClassVar

from docmill.errors import StartTimeout, require

if TYPE_CHECKING:
    from docmill.parallel._options import Options

__all__ = ["AddressOptions", "Backend", "Capabilities", "Watchdog", "settle", "start_timeout"]


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do; the streaming core and the conformance suite read it."""

    #: tasks may run ahead of the consumer (False: each task runs inside ``submit``)
    concurrent: bool = True
    #: typical seconds one task costs beyond its work (hand-off, round trip): the
    #: chunk sizer aims at chunks of ``max(TARGET_SECONDS, 50 x task_overhead)`` of work
    task_overhead: float = 20e-6
    #: a worker is a separate process: a crash fails its task with ``WorkerCrashed``
    isolated: bool = False
    #: a task past its timeout is stopped (its worker killed), not abandoned
    stops_timed_out: bool = False
    #: ``num_workers`` may change while it runs (a cluster that scales): the core reads
    #: it again before each refill
    elastic: bool = False
    #: ``initializer`` runs once per worker (else refused up front)
    worker_hooks: bool = True
    #: workers can be replaced: ``max_tasks_per_worker`` is honoured (else refused up
    #: front) and ``init_timeout`` enforced
    replaces_workers: bool = True


@dataclass(frozen=True)
class AddressOptions:
    """The options of a backend that connects to a cluster: ``address`` (its
    scheduler / head, e.g. ``tcp://host:8786`` or ``'auto'``), or None for the
    backend's default (see its module docstring)."""

    address: str | None = None

    def __post_init__(self) -> None:
        if self.address is not None and not isinstance(self.address, str):
            raise TypeError(f"address must be a cluster address str, got {self.address!r}")


class Backend(ABC):
    """Runs ``fn(task)`` for submitted tasks on a set of workers."""

    #: short name used in messages and progress bars ('thread', 'process', ...)
    name: ClassVar[str] = "?"
    #: what this backend can do (see :class:`Capabilities`)
    capabilities: ClassVar[Capabilities] = Capabilities()
    #: a frozen dataclass of the options only this backend takes (validated in its
    #: ``__post_init__``), or None; the caller passes them as keywords
    options_class: ClassVar[type | None] = None
    #: ``(module, extra)`` the backend cannot run without: :meth:`check` looks for the
    #: module (found, not imported: an engine can take seconds to import) and raises
    #: :class:`~docmill.MissingExtra` naming ``pip install 'docmill[extra]'``
    requires: ClassVar[tuple[str, str] | None] = None
    #: how many tasks can run at the same time (read again by the core when elastic)
    num_workers: int = 1
    #: seconds one result costs the caller's process to take in (decoding it), as
    #: last measured (0: nothing measurable). The core keeps a chunk's share of it
    #: under ``CALLER_SECONDS``, so that work interleaves finely with the workers'
    caller_cost: float = 0.0

    @classmethod
    def default_workers(cls, options: Options) -> int | None:
        """The worker count when the caller gives none (None: the usable cores)."""
        return None

    @classmethod
    def check(cls, options: Options) -> None:
        """Refuse generic options this backend cannot honour (raise ``ValueError``)."""
        caps = cls.capabilities
        for name, honoured in (
            ("initializer", caps.worker_hooks),
            ("max_tasks_per_worker", caps.replaces_workers),
        ):
            if not honoured and getattr(options, name) is not None:
                raise ValueError(f"backend {cls.name!r} does not support {name}=")
        if cls.requires is not None:
            import importlib.util

            module, extra = cls.requires
            if importlib.util.find_spec(module) is None:
                require(module, extra, f"backend={cls.name!r}")

    @abstractmethod
    def __init__(self, options: Options) -> None: ...

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


def settle(f: Future, result: Any = None, error: BaseException | None = None) -> bool:
    """Set ``f``'s result (or ``error``) unless it is already settled (a watchdog or
    a shutdown got there first). True if this call settled it."""
    try:
        if error is None:
            f.set_result(result)
        else:
            f.set_exception(error)
    except InvalidStateError:
        return False
    return True


def start_timeout(worker: str, options: Options) -> StartTimeout:
    """The error for a worker (``"worker process 123"``) that did not finish starting
    within ``init_timeout``: no task can run."""
    init = options.initializer
    what = f"the initializer {getattr(init, '__qualname__', init)!r}" if init else "startup"
    return StartTimeout(
        f"{worker} did not finish starting ({what}) within init_timeout="
        f"{options.init_timeout:g} s, so no task can run; raise init_timeout= or find "
        f"what the start waits for"
    )


class Watchdog:
    """One daemon thread that calls ``callback()`` when its deadline passes.

    ``arm(key, seconds, callback)`` (re-arming a key replaces its deadline),
    ``disarm(key)``; the thread starts with the first ``arm`` and sleeps until the
    soonest deadline, so an idle watchdog costs nothing. Callbacks run on the
    watchdog thread, outside its lock. ``stop()`` ends it (bounded).
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Any]] = []
        self._armed: dict[Any, tuple[float, int, Callable[[], Any]]] = {}
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None
        self._stopped = False

    def arm(self, key: Any, seconds: float, callback: Callable[[], Any]) -> None:
        with self._cond:
            if self._stopped:
                return
            entry = (monotonic() + seconds, next(self._seq), callback)
            self._armed[key] = entry
            heapq.heappush(self._heap, (entry[0], entry[1], key))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            elif self._heap[0][1] == entry[1]:
                self._cond.notify()  # sooner than what the thread sleeps towards

    def disarm(self, key: Any) -> None:
        with self._cond:
            self._armed.pop(key, None)  # its heap entry is skipped when it comes up ...
            if len(self._heap) > 2 * len(self._armed) + 64:  # ... or dropped here
                self._heap = [(when, seq, k) for k, (when, seq, _cb) in self._armed.items()]
                heapq.heapify(self._heap)

    def stop(self, wait: float = 2.0) -> None:
        with self._cond:
            self._stopped = True
            self._armed.clear()
            self._cond.notify()
            t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join(wait)

    def _run(self) -> None:
        while True:
            with self._cond:
                due: list[Callable[[], Any]] = []
                while not due:
                    if self._stopped:
                        return
                    now = monotonic()
                    while self._heap and self._heap[0][0] <= now:
                        _, seq, key = heapq.heappop(self._heap)
                        entry = self._armed.get(key)
                        if entry is not None and entry[1] == seq:
                            del self._armed[key]
                            due.append(entry[2])
                    if not due:
                        self._cond.wait(self._heap[0][0] - now if self._heap else None)
            for callback in due:
                callback()
