"""The built-in backends run the whole conformance suite (see conformance.py)."""

from __future__ import annotations

import multiprocessing
import multiprocessing.pool
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext

from conformance import *  # noqa: F403 - the suite's tests, fixtures and hook
from conformance import Case


@contextmanager
def _futures_thread_pool():
    with ThreadPoolExecutor(2) as pool:
        # start both threads now (the executor starts them lazily): the pool's threads
        # are the caller's, not the map's, and belong to the baseline
        ready = threading.Barrier(3)
        for _ in range(2):
            pool.submit(ready.wait, 10)
        ready.wait(10)
        yield {"pool": pool}


@contextmanager
def _mp_pool(threads: bool):
    ctx = multiprocessing.get_context("fork")
    pool = multiprocessing.pool.ThreadPool(2) if threads else ctx.Pool(2)
    try:
        yield {"pool": pool}
    finally:
        pool.terminate()
        pool.join()


def _named(**kw):
    return lambda: nullcontext(kw)


CONFORMANCE_CASES = [
    Case("serial", _named(backend="serial"), in_process=True),
    Case("thread", _named(backend="thread"), in_process=True),
    Case("process-fork", _named(backend="process", start_method="fork")),
    Case("process-spawn", _named(backend="process", start_method="spawn"), travel_only=True),
    Case("pool-futures-thread", _futures_thread_pool, in_process=True),
    Case("pool-mp-thread", lambda: _mp_pool(threads=True), in_process=True),
    Case("pool-mp-process", lambda: _mp_pool(threads=False)),
]
