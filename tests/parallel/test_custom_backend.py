"""A new backend is one module plus one registration: this one, written against the
public interface only, passes the whole conformance suite.

It runs tasks on a ``concurrent.futures.ThreadPoolExecutor`` after an artificial
per-task delay (a stand-in for a remote engine's per-task cost), takes an option
of its own (``delay``), declares its capabilities (no initializer support, so the
engine refuses ``initializer=`` for it up front; its per-task overhead, which the
chunk sizer reads) and uses the shared :class:`~docmill.parallel._base.Watchdog`
for timeouts. Nothing in ``_core``, ``_options`` or ``parallel/__init__`` knows it.
"""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from functools import partial

import pytest
from conformance import *  # noqa: F403 - the suite's tests, fixtures and hook
from conformance import Case, square

from docmill import parallel
from docmill._checks import check_seconds
from docmill.parallel import Backend, Capabilities, register_backend
from docmill.parallel._base import Watchdog, settle


@dataclass(frozen=True)
class DelayedOptions:
    delay: float = 0.002

    def __post_init__(self) -> None:
        check_seconds("delay", self.delay)


class DelayedBackend(Backend):
    name = "delayed"
    capabilities = Capabilities(task_overhead=0.002, worker_hooks=False, replaces_workers=False)
    options_class = DelayedOptions

    def __init__(self, options):
        self.num_workers = options.num_workers
        self._delay = options.backend_options.delay
        self._pool: ThreadPoolExecutor | None = None
        self._fn = None
        self._watchdog = Watchdog("delayed-watchdog")

    def start(self, fn):
        self._fn = fn
        self._pool = ThreadPoolExecutor(self.num_workers, thread_name_prefix="delayed")

    def _run(self, task):
        time.sleep(self._delay)
        return self._fn(task)

    def submit(self, task, timeout=None):
        outer: Future = Future()
        inner = self._pool.submit(self._run, task)
        if timeout is not None:
            error = TimeoutError("the task ran longer than its timeout")
            self._watchdog.arm(outer, timeout + self._delay, partial(settle, outer, None, error))
        inner.add_done_callback(partial(self._settle, outer))
        return outer

    def _settle(self, outer, inner):
        self._watchdog.disarm(outer)
        if inner.cancelled():
            outer.cancel() or settle(outer, error=RuntimeError("cancelled"))
        elif inner.exception() is not None:
            settle(outer, error=inner.exception())
        else:
            settle(outer, inner.result())

    def shutdown(self, cancel=False):
        self._watchdog.stop()
        if self._pool is not None:
            self._pool.shutdown(wait=not cancel, cancel_futures=cancel)


register_backend("delayed", DelayedBackend)

CONFORMANCE_CASES = [Case("delayed", lambda: nullcontext({"backend": "delayed"}), in_process=True)]


def test_its_own_option_is_validated_by_it_and_refused_elsewhere():
    assert list(parallel.map(square, range(4), backend="delayed", delay=0.001)) == [0, 1, 4, 9]
    with pytest.raises(ValueError, match="delay must be a number of seconds > 0"):
        parallel.map(square, range(4), backend="delayed", delay=0)
    with pytest.raises(TypeError, match="an option of backend 'delayed'"):
        parallel.map(square, range(4), backend="thread", delay=0.001)
    with pytest.raises(ValueError, match="does not support initializer="):
        parallel.map(square, range(4), backend="delayed", initializer=print)


def test_the_chunk_sizer_reads_its_declared_overhead():
    # 0.002 s per task -> chunks aim at 50 x that of work: far fewer tasks than items
    tasks = []
    original = DelayedBackend.submit

    def counting(self, task, timeout=None):
        tasks.append(len(task))
        return original(self, task, timeout)

    DelayedBackend.submit = counting
    try:
        assert sum(parallel.map(square, range(20_000), backend="delayed")) == sum(
            x * x for x in range(20_000)
        )
    finally:
        DelayedBackend.submit = original
    assert len(tasks) < 60 and max(tasks) > 100
