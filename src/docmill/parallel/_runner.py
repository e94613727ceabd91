"""The chunk runner: what a worker executes for one task.

A task is a list of items (a *chunk*). The runner calls the user's function on
each item and returns ``(results, seconds, error)``:

- ``results``: the return values, in order, up to the first failing item;
- ``seconds``: how long the chunk took in the worker (the streaming core sizes
  later chunks from it);
- ``error``: ``None``, or ``(position, exception, traceback_text)`` for the first
  item whose function raised. The rest of the chunk is skipped: the core
  cancels the whole map on the first error anyway.

Per-item errors travel as values, not as a failed task, so the core knows which
item failed and still gets the results before it. In a worker *process* the
exception is test-pickled first; one that does not survive pickling is replaced
by :class:`UnpicklableError` carrying its type name and message, so a bad
exception class can never break the result pipe.

This module is imported in every worker process: keep its imports light.
"""

from __future__ import annotations

import os
import pickle
import random
import threading
import time
import traceback
from collections.abc import Callable
from time import perf_counter
from typing import Any, NamedTuple

__all__ = [
    "FAILED",
    "ChunkRunner",
    "Policy",
    "Skipped",
    "UnpicklableError",
    "call_pickled",
    "provide_worker_state",
    "worker_state",
]

_local = threading.local()


def _per_thread() -> dict[str, Any]:
    state = getattr(_local, "state", None)
    if state is None:
        state = _local.state = {}
    return state


_provider: Callable[[], dict[str, Any]] = _per_thread


def provide_worker_state(provider: Callable[[], dict[str, Any]] | None) -> None:
    """Where :func:`worker_state` finds its dict in this process (None: one per thread,
    the default).

    A backend whose workers are not one thread each installs its own in the worker
    process, once: the process backend a dict per process (so threads started by
    ``func`` share it), an engine whose worker runs tasks on several threads (a Dask
    worker) a dict per worker, set up by its worker hook and read by every task thread.
    """
    global _provider
    if provider is not None and not callable(provider):
        raise TypeError(f"provider must be a callable returning a dict, got {provider!r}")
    _provider = provider or _per_thread


def worker_state() -> dict[str, Any]:
    """A dict private to the worker that calls it (thread or process), for state built
    once per worker, typically by an ``initializer``::

        def load():
            worker_state()["model"] = load_model()

        def embed(d):
            d.embedding = worker_state()["model"](d.tensor)

        da.apply(embed, backend="process", initializer=load)

    Each worker thread, each worker process, and the caller (``backend='serial'``)
    sees its own dict; it lives as long as the worker (a backend decides what one
    worker is, see :func:`provide_worker_state`).
    """
    return _provider()


class UnpicklableError(RuntimeError):
    """Stands in for a worker exception that could not be pickled back to the caller."""


class _Failed:
    """The place of an item that failed and was skipped (``on_error='skip'``)."""

    __slots__ = ()

    def __reduce__(self) -> str:
        return "FAILED"  # the module-level singleton, in every process

    def __repr__(self) -> str:
        return "FAILED"


FAILED = _Failed()


class Skipped(NamedTuple):
    """What ``on_error='skip'`` hands back for a chunk: its failures (position,
    exception, traceback text, retries) and the retries of every item."""

    failures: list[tuple[int, BaseException, str, int]]
    retried: int


class Policy(NamedTuple):
    """What to do when ``func`` raises: skip the item (else stop), and retry
    exceptions of ``retry_on`` types up to ``retries`` times with exponential backoff
    from ``backoff`` seconds (with jitter)."""

    skip: bool = False
    retries: int = 0
    retry_on: tuple[type[BaseException], ...] = ()
    backoff: float = 0.1


class ChunkRunner:
    """Callable run by workers: ``runner(items) -> (results, seconds, error)``."""

    __slots__ = ("_pid", "func", "policy")

    def __init__(self, func: Callable[[Any], Any], policy: Policy | None = None) -> None:
        self.func = func
        self.policy = policy
        # A worker in another process (fork or spawn) sees a different pid: only
        # then must exceptions survive pickling.
        self._pid = os.getpid()

    def __getstate__(self) -> tuple:
        return (self.func, self._pid, self.policy)

    def __setstate__(self, state: tuple) -> None:
        self.func, self._pid, self.policy = state

    def __call__(self, items: list) -> tuple[list, float, Any]:
        if self.policy is not None:
            return self._with_policy(items, self.policy)
        out: list = []
        t0 = perf_counter()
        try:
            # list.extend over map() runs the loop in C; on an exception the
            # results appended so far stay, so len(out) is the failing position.
            out.extend(map(self.func, items))
        except Exception as e:
            seconds = perf_counter() - t0
            tb = "".join(traceback.format_exception(e))
            if os.getpid() != self._pid:
                e = _picklable(e)
            return out, seconds, (len(out), e, tb)
        return out, perf_counter() - t0, None

    def _with_policy(self, items: list, policy: Policy) -> tuple[list, float, Any]:
        """One item at a time: retries, and skipped items as :data:`FAILED` places."""
        out: list = []
        failures: list[tuple[int, BaseException, str, int]] = []
        retried = 0
        t0 = perf_counter()
        func, remote = self.func, os.getpid() != self._pid
        pos = 0
        while pos < len(items):
            try:  # the C loop until an item raises; only that one goes the slow way
                out.extend(map(func, items[pos:] if pos else items))
                break
            except Exception as first:
                pos, e = len(out), first
            attempt = 0
            while attempt < policy.retries and isinstance(e, policy.retry_on):
                attempt += 1
                time.sleep(policy.backoff * 2 ** (attempt - 1) * (0.5 + random.random()))
                try:
                    out.append(func(items[pos]))
                    break
                except Exception as again:
                    e = again
            retried += attempt
            if len(out) == pos:  # failed for good
                if not policy.skip:
                    tb = "".join(traceback.format_exception(e))
                    return out, perf_counter() - t0, (pos, _picklable(e) if remote else e, tb)
                out.append(FAILED)
                failures.append((pos, *_kept(e, remote), attempt))
            pos += 1
        return out, perf_counter() - t0, Skipped(failures, retried) if failures or retried else None


class LazyTraceback:
    """An exception's traceback, formatted when first read (``str()``).

    A skipped failure in the caller's own process keeps its exception; formatting
    every traceback up front cost ~70 us per failure, more than a cheap item. The
    frames' locals are cleared so that a kept failure does not keep its item's data
    alive; formatting needs only the code and line numbers.
    """

    __slots__ = ("_e", "_text")

    def __init__(self, e: BaseException) -> None:
        self._e: BaseException | None = e
        self._text = ""
        traceback.clear_frames(e.__traceback__)

    def __str__(self) -> str:
        if self._e is not None:
            self._text, self._e = "".join(traceback.format_exception(self._e)), None
        return self._text


def _kept(e: BaseException, remote: bool) -> tuple[BaseException, str | LazyTraceback]:
    """A skipped failure's exception and traceback: formatted now (to travel back from
    another process) or when read."""
    if remote:
        return _picklable(e), "".join(traceback.format_exception(e))
    return e, LazyTraceback(e)


def _picklable(e: BaseException) -> BaseException:
    """``e`` itself when it survives a pickle round trip, else an :class:`UnpicklableError`."""
    from docmill.parallel.transport import dumps  # cloudpickle for what pickle refuses

    try:
        back = pickle.loads(dumps(e))
        if type(back) is type(e):
            return e
        why = f"it came back as {type(back).__name__}"
    except Exception as pe:
        why = f"{type(pe).__name__}: {pe}"
    return UnpicklableError(
        f"{type(e).__module__}.{type(e).__qualname__}: {e} "
        f"(the original exception could not be sent back from the worker: {why})"
    )


# ---------------------------------------------------------------------------
# For user-supplied process pools, which pickle tasks with the standard pickler:
# the runner travels as cloudpickle bytes and is rebuilt once per worker process.
_cache: tuple[bytes, ChunkRunner] | None = None


def call_pickled(blob: bytes, items: list) -> tuple[list, float, tuple | None]:
    """Run ``cloudpickle.loads(blob)(items)``, unpickling ``blob`` once per worker."""
    global _cache
    if _cache is None or _cache[0] != blob:
        import cloudpickle

        _cache = (blob, cloudpickle.loads(blob))
    return _cache[1](items)
