"""``backend='ray'``: the same map / apply on Ray (extra ``docmill[ray]``).

Which Ray, in order: the running session (``ray.is_initialized()``); ``address=``
(or ``$DOCMILL_RAY_ADDRESS``; ``'auto'`` for a ``ray start --head`` on this
machine); else ``ray.init()`` with ``num_worker`` CPUs, shut down after the map.

docmill runs ``num_worker`` Ray actors for one map, each a worker process: the
function travels once per actor (cloudpickle), the ``initializer`` runs once in each
(``worker_state()`` is the actor's dict), and each actor holds one chunk at a time,
so a crash or a timeout concerns exactly one chunk:

- an actor that dies (``os._exit``, OOM kill) fails its chunk with
  :class:`~docmill.WorkerCrashed` and is replaced;
- a chunk past its ``timeout`` gets ``TimeoutError``; its actor is killed and replaced.

Arrays travel through Ray's object store (zero-copy reads of numpy buffers).
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import CancelledError, Future
from typing import TYPE_CHECKING, Any

from docmill.errors import WorkerCrashed, add_note, require
from docmill.parallel._base import (
    AddressOptions,
    Backend,
    Capabilities,
    Watchdog,
    settle,
    start_timeout,
)

if TYPE_CHECKING:
    from docmill.parallel._options import Options

__all__ = ["RayBackend"]


def _ray() -> Any:
    return require("ray", "ray", "backend='ray'")


class _Worker:
    """The body of the Ray actor class (made a remote class on first use)."""

    def __init__(self, blob: bytes, initializer: Any, initargs: tuple) -> None:
        import cloudpickle

        from docmill.parallel._runner import provide_worker_state

        state: dict = {}
        provide_worker_state(lambda: state)
        self.init_error: BaseException | None = None
        try:  # kept and raised by ready(): Ray reports a failed __init__ without its cause
            self.fn = cloudpickle.loads(blob)
            if initializer is not None:
                initializer(*initargs)
        except Exception as e:
            self.init_error = e

    def ready(self) -> bool:
        if self.init_error is not None:
            raise self.init_error
        return True

    def run(self, task: Any) -> Any:
        return self.fn(task)


class _Slot:
    __slots__ = ("actor", "busy", "ready")

    def __init__(self, actor: Any) -> None:
        self.actor, self.busy, self.ready = actor, None, False


class RayBackend(Backend):
    """Runs chunks on Ray actors (see the module docstring)."""

    name = "ray"
    capabilities = Capabilities(
        task_overhead=2e-3, isolated=True, stops_timed_out=True, replaces_workers=False
    )
    options_class = AddressOptions
    requires = ("ray", "ray")

    def __init__(self, options: Options) -> None:
        self._options = options
        self.num_workers = options.num_workers or 1  # type: ignore[assignment]
        self._lock = threading.Lock()
        self._slots: list[_Slot] = []
        self._waiting: deque[tuple[Future, Any, float | None]] = deque()
        self._watchdog = Watchdog("docmill-ray-watchdog")
        self._owned = False
        self._closed = False
        self._blob = b""
        self._actor_class: Any = None
        self._broken: BaseException | None = None

    # ------------------------------------------------------------------ Backend
    def start(self, fn: Callable[[Any], Any]) -> None:
        import cloudpickle

        ray = _ray()
        address = self._options.backend_options.address or os.environ.get("DOCMILL_RAY_ADDRESS")
        if not ray.is_initialized():
            if address:
                ray.init(address=address, log_to_driver=False)
            else:
                ray.init(num_cpus=self.num_workers, include_dashboard=False, log_to_driver=False)
            self._owned = True
        self._blob = cloudpickle.dumps(fn)
        self._actor_class = ray.remote(num_cpus=1, max_restarts=0)(_Worker)
        for _ in range(self.num_workers):
            self._slots.append(self._new_slot())

    def _new_slot(self) -> _Slot:
        opts = self._options
        slot = _Slot(self._actor_class.remote(self._blob, opts.initializer, opts.initargs))
        ref = slot.actor.ready.remote()
        self._watchdog.arm(slot, opts.init_timeout, lambda: self._start_timed_out(slot))  # type: ignore[arg-type]
        ref.future().add_done_callback(lambda f, s=slot: self._started(s, f))
        return slot

    def submit(self, task: Any, timeout: float | None = None) -> Future:
        if self._closed:
            raise RuntimeError("RayBackend.submit() after shutdown()")
        outer: Future = Future()
        with self._lock:
            if self._broken is not None:
                settle(outer, error=self._broken)
                return outer
            self._waiting.append((outer, task, timeout))
        self._dispatch()
        return outer

    def shutdown(self, cancel: bool = False) -> None:
        ray = _ray()
        with self._lock:
            if self._closed:
                return
            self._closed = True
            waiting, self._waiting = list(self._waiting), deque()
            slots, self._slots = self._slots, []
        self._watchdog.stop()
        for outer, _task, _timeout in waiting:
            settle(outer, error=CancelledError("the ray backend was shut down"))
        for slot in slots:
            if slot.busy is not None:
                settle(slot.busy, error=CancelledError("the ray backend was shut down"))
            try:
                ray.kill(slot.actor)
            except Exception:
                pass
        if self._owned:
            ray.shutdown()

    # ------------------------------------------------------------------ internals
    def _started(self, slot: _Slot, f: Future) -> None:
        self._watchdog.disarm(slot)
        try:
            f.result()
        except BaseException as e:  # the initializer (or loading fn) failed: no task can run
            cause = getattr(e, "cause", None)
            error = cause if isinstance(cause, BaseException) else e
            add_note(error, "docmill: raised while starting a Ray worker, so no task can run")
            self._break(error)
            return
        with self._lock:
            slot.ready = True
        self._dispatch()

    def _dispatch(self) -> None:
        """Give waiting chunks to idle, started actors (one chunk per actor)."""
        while True:
            with self._lock:
                if self._closed or not self._waiting:
                    return
                slot = next((s for s in self._slots if s.ready and s.busy is None), None)
                if slot is None:
                    return
                outer, task, timeout = self._waiting.popleft()
                if not outer.set_running_or_notify_cancel():
                    continue
                slot.busy = outer
            ref = slot.actor.run.remote(task)
            if timeout is not None:
                self._watchdog.arm(outer, timeout, lambda s=slot, o=outer: self._timed_out(s, o))
            ref.future().add_done_callback(lambda f, s=slot, o=outer: self._done(s, o, f))

    def _done(self, slot: _Slot, outer: Future, f: Future) -> None:
        self._watchdog.disarm(outer)
        error: BaseException | None = None
        result = None
        try:
            result = f.result()
        except BaseException as e:
            error = e
        died = error is not None and type(error).__name__ in ("ActorDiedError", "RayActorError")
        if died:
            error = WorkerCrashed(f"a Ray worker (actor) died while running the task: {error}")
        elif error is not None and hasattr(error, "cause") and error.cause is not None:
            error = error.cause  # RayTaskError: the task's own exception
        settle(outer, result, error)
        with self._lock:
            if slot.busy is outer:
                slot.busy = None
            replace = died and slot in self._slots and not self._closed
            if replace:
                self._slots.remove(slot)
        if replace:
            new = self._new_slot()
            with self._lock:
                self._slots.append(new)
        self._dispatch()

    def _timed_out(self, slot: _Slot, outer: Future) -> None:
        settle(outer, error=TimeoutError("the task ran longer than its timeout"))
        try:
            _ray().kill(slot.actor)  # its _done callback then replaces it
        except Exception:
            pass

    def _start_timed_out(self, slot: _Slot) -> None:
        self._break(start_timeout("a Ray worker (actor)", self._options))

    def _break(self, error: BaseException) -> None:
        with self._lock:
            if self._broken is not None:
                return
            self._broken = error
            waiting, self._waiting = list(self._waiting), deque()
        for outer, _task, _timeout in waiting:
            if outer.set_running_or_notify_cancel():
                settle(outer, error=error)
