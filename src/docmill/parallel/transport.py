"""How task and result objects cross the process boundary.

The process backend never pickles objects itself: it asks a :class:`Transport`
(parent side) and an :class:`Endpoint` (worker side) to turn objects into
payload bytes and back, and moves only those bytes through its pipes::

    parent                                   worker
    ------                                   ------
    payload, lease = transport.dumps(task)  ->  task = endpoint.loads(payload)
                                                 result = fn(task)
    result = transport.loads(payload)       <-  payload = endpoint.dumps(result)
    transport.release(lease)
    ...
    transport.close()   (every exit path: end, error, crash, Ctrl-C, abandon)

:class:`PickleTransport` pickles everything in-band (``transport='pickle'``).
:mod:`docmill.parallel.shm` moves large buffers through shared memory.
"""

from __future__ import annotations

import contextlib
import gc
import pickle
from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import Any

__all__ = ["Endpoint", "PickleTransport", "Transport", "dumps", "gc_paused"]


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """The cyclic garbage collector off while one message is unpickled (unless it was
    off already). Rebuilding a chunk of 1,000 Documents creates 1,000 tracked objects,
    and the collections they trigger traverse everything alive: measured, 80% of the
    time of rebuilding tiny Documents (1.0 vs 0.2 us each). The pause is one message
    long; what it defers is collected at the next collection."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def dumps(obj: Any) -> bytes:
    """``obj`` pickled in band; what the standard pickler refuses goes through cloudpickle.

    Under spawn and forkserver, classes of the caller's ``__main__`` reach a worker
    by value (with the function, through cloudpickle) and are not the worker's
    ``__main__`` attributes, so instances of them (results, exceptions) must go
    back the same way; unpickled in the caller they are its own classes again.
    """
    try:
        return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as e:
        import cloudpickle

        try:
            return cloudpickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:
            raise e from None


class Endpoint(ABC):
    """Worker side of a transport. Must be picklable (sent to each worker at start,
    under fork and spawn alike)."""

    @abstractmethod
    def loads(self, payload: bytes) -> Any:
        """Rebuild a task sent by :meth:`Transport.dumps`. Arrays may be views of
        shared buffers that stay valid until the parent releases the task's lease."""

    @abstractmethod
    def dumps(self, obj: Any) -> bytes:
        """Encode a result for :meth:`Transport.loads`."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Called once when the worker exits normally."""


class Transport(ABC):
    """Parent side of a transport; owns every shared resource it or its endpoints create."""

    @abstractmethod
    def endpoint(self) -> Endpoint:
        """The worker-side object to ship to each worker."""

    @abstractmethod
    def dumps(self, obj: Any) -> tuple[bytes, Any]:
        """Encode a task; returns ``(payload, lease)``. Pass the lease to
        :meth:`release` once the task is finished (result received, failed, or its
        worker died)."""

    @abstractmethod
    def loads(self, payload: bytes) -> Any:
        """Decode a result from a worker. Arrays in it are ordinary writable
        arrays that stay valid after :meth:`close`."""

    def release(self, lease: Any) -> None:  # noqa: B027 - optional hook
        """The task that carried ``lease`` is finished; its resources may be reused."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Free every resource (idempotent). Called on every exit path of a map."""

    def __enter__(self) -> Transport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _PickleEndpoint(Endpoint):
    def loads(self, payload: bytes) -> Any:
        return pickle.loads(payload)

    def dumps(self, obj: Any) -> bytes:
        return dumps(obj)


class PickleTransport(Transport):
    """Everything in-band through the pipe (the legacy behaviour; ``transport='pickle'``)."""

    def endpoint(self) -> Endpoint:
        return _PickleEndpoint()

    def dumps(self, obj: Any) -> tuple[bytes, Any]:
        return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL), None

    def loads(self, payload: bytes) -> Any:
        return pickle.loads(payload)
