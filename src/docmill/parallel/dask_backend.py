"""``backend='dask'``: the same map / apply on a Dask cluster (extra ``docmill[dask]``).

Which cluster, in order: ``pool=`` a ``distributed.Client``; ``address=`` (or
``$DOCMILL_DASK_ADDRESS``) of a running scheduler; the current client
(``distributed.get_client()``); else a ``LocalCluster`` of worker processes sized
to this machine (``num_worker``), started for the map and closed after it.
docmill builds no scheduler: each chunk is one ``client.submit``, and results come
back through Dask's own serialization (numpy buffers travel out of band).

- ``initializer`` runs once per Dask worker (a worker plugin); ``worker_state()`` in a
  task reads that worker's dict, whichever of its threads runs the task.
- A worker that dies (``os._exit``, OOM kill) fails its chunk with
  :class:`~docmill.WorkerCrashed`: on a cluster docmill starts, at once; on yours,
  after the scheduler's ``allowed-failures`` retries.
- ``timeout``: the chunk fails with ``TimeoutError`` and its task is cancelled; Dask
  cannot interrupt a running task, so it finishes on its worker (abandoned).
- Functions and data must be importable or picklable on the workers (cloudpickle).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import CancelledError, Future
from typing import TYPE_CHECKING, Any

from docmill.errors import WorkerCrashed, require
from docmill.parallel._base import AddressOptions, Backend, Capabilities, Watchdog, settle

if TYPE_CHECKING:
    from docmill.parallel._options import Options

__all__ = ["DaskBackend"]


def _distributed() -> Any:
    return require("distributed", "dask", "backend='dask'")


def _run(blob: bytes, task: Any) -> Any:
    """What a Dask worker runs for one chunk: the chunk runner travels as cloudpickle
    bytes (so functions of modules the workers cannot import go by value), unpickled
    once per worker."""
    from docmill.parallel._runner import call_pickled

    return call_pickled(blob, task)


def _worker_plugin(initializer: Any, initargs: tuple) -> Any:
    """A worker plugin running the initializer once per Dask worker and giving
    ``worker_state()`` one dict per worker. (Built here, not at import: importing
    distributed changes how exceptions pickle in the whole process.)"""
    from distributed.diagnostics.plugin import WorkerPlugin

    class DocmillInit(WorkerPlugin):
        def __init__(self) -> None:
            self.initializer, self.initargs = initializer, initargs
            self.name = f"docmill-init-{id(self):x}"

        def setup(self, worker: Any) -> None:
            from docmill.parallel._runner import provide_worker_state

            state: dict = {}
            provide_worker_state(lambda: state)
            if self.initializer is not None:
                self.initializer(*self.initargs)

        def teardown(self, worker: Any) -> None:
            from docmill.parallel._runner import provide_worker_state

            provide_worker_state(None)

    return DocmillInit()


class DaskBackend(Backend):
    """Runs chunks as Dask tasks (see the module docstring)."""

    name = "dask"
    capabilities = Capabilities(
        task_overhead=2e-3, isolated=True, elastic=True, replaces_workers=False
    )
    options_class = AddressOptions
    requires = ("distributed", "dask")

    def __init__(self, options: Options) -> None:
        self._options = options
        self._given = options.num_workers
        self._threads = options.num_workers or 1
        self._client: Any = None
        self._owned: list[Any] = []  # what we started and must close
        self._fn: Any = None
        self._futures: dict[Any, Future] = {}
        self._lock = threading.Lock()
        self._watchdog = Watchdog("docmill-dask-watchdog")
        self._plugin: Any = None
        self._counted = 0.0
        self._closed = False

    # ------------------------------------------------------------------ Backend
    def start(self, fn: Callable[[Any], Any]) -> None:
        distributed = _distributed()
        opts = self._options
        address = opts.backend_options.address or os.environ.get("DOCMILL_DASK_ADDRESS")
        if opts.pool is not None:
            self._client = opts.pool
        elif address:
            self._client = distributed.Client(address)
            self._owned.append(self._client)
        else:
            try:
                self._client = distributed.get_client()
            except ValueError:  # no client yet: a local cluster of worker processes
                import dask

                # a dead worker fails its own task only: no retries of a task that kills
                # workers, and one task in flight per worker thread
                with dask.config.set(
                    {
                        "distributed.scheduler.allowed-failures": 0,
                        "distributed.scheduler.worker-saturation": 1.0,
                    }
                ):
                    cluster = distributed.LocalCluster(
                        n_workers=self._given or None,
                        threads_per_worker=1,
                        processes=True,
                        dashboard_address=None,
                    )
                    self._client = distributed.Client(cluster)
                self._owned += [self._client, cluster]
        # per-worker state (and the initializer) on every worker, present and future
        plugin = _worker_plugin(opts.initializer, opts.initargs)
        self._client.register_plugin(plugin, name=plugin.name)
        self._plugin = plugin  # registered: shutdown unregisters it
        import cloudpickle

        # with each task (small: the function and what it closes over; big objects belong
        # in the initializer). Not scattered: scattered data dies with the workers
        # holding it, and a crash would then take every later task with it
        self._fn = cloudpickle.dumps(fn)
        self._count_workers()

    def _count_workers(self) -> None:
        info = self._client.scheduler_info()
        threads = sum(w.get("nthreads", 1) for w in info.get("workers", {}).values())
        self._threads = max(1, threads)
        self._counted = time.monotonic()

    @property  # type: ignore[override]
    def num_workers(self) -> int:
        """The cluster's worker threads, counted again at most once a second (elastic)."""
        if self._client is not None and not self._closed and time.monotonic() - self._counted > 1:
            try:
                self._count_workers()
            except Exception:  # the scheduler is busy or gone: keep the last count
                pass
        return self._threads

    def submit(self, task: Any, timeout: float | None = None) -> Future:
        if self._closed:
            raise RuntimeError("DaskBackend.submit() after shutdown()")
        outer: Future = Future()
        outer.set_running_or_notify_cancel()
        inner = self._client.submit(_run, self._fn, task, pure=False)
        with self._lock:
            self._futures[inner] = outer
        if timeout is not None:
            self._watchdog.arm(outer, timeout, lambda: self._time_out(inner, outer))
        inner.add_done_callback(self._settled)
        return outer

    def shutdown(self, cancel: bool = False) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            pending = list(self._futures)
        self._watchdog.stop()
        client = self._client
        if client is not None:
            if cancel and pending:
                try:
                    client.cancel(pending, force=True)
                except Exception:
                    pass
            if self._plugin is not None and not self._owned:
                try:
                    client.unregister_worker_plugin(self._plugin.name)
                except Exception:
                    pass
        for outer in [self._futures.pop(f) for f in pending if f in self._futures]:
            settle(outer, error=CancelledError("the dask backend was shut down"))
        for obj in self._owned:  # the client first, then its cluster
            try:
                obj.close()
            except Exception:
                pass

    # ------------------------------------------------------------------ internals
    def _settled(self, inner: Any) -> None:
        with self._lock:
            outer = self._futures.pop(inner, None)
        if outer is None:
            return
        self._watchdog.disarm(outer)
        status = inner.status
        if status == "finished":
            try:
                settle(outer, inner.result())
            except Exception as e:
                settle(outer, error=e)
        elif status == "cancelled":
            settle(outer, error=CancelledError("the dask task was cancelled"))
        else:
            e = inner.exception() if status == "error" else None
            if e is None:  # 'lost': the worker holding its result died before we had it
                e = WorkerCrashed(f"a Dask worker died holding the task's result ({status})")
            elif type(e).__name__ == "KilledWorker":
                e = WorkerCrashed(f"a Dask worker died while running the task ({e})")
            settle(outer, error=e)

    def _time_out(self, inner: Any, outer: Future) -> None:
        settle(outer, error=TimeoutError("the task ran longer than its timeout"))
        try:
            self._client.cancel([inner], force=True)
        except Exception:
            pass
