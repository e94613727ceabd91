"""backend='asyncio': async def functions, many calls at a time, from synchronous code."""

from __future__ import annotations

import asyncio
import threading
import time
from contextlib import nullcontext

import pytest
from conformance import *  # noqa: F403 - the suite's tests, fixtures and hook
from conformance import Case

from docmill import DocumentArray, parallel


async def _double_later(x):
    await asyncio.sleep(0.02)
    return 2 * x


def _threads_back_to(n: int) -> bool:
    end = time.monotonic() + 5
    while threading.active_count() > n and time.monotonic() < end:
        time.sleep(0.01)
    return threading.active_count() <= n


def test_a_coroutine_function_runs_concurrently_in_order():
    before = threading.active_count()
    t0 = time.perf_counter()
    assert list(parallel.map(_double_later, range(300))) == [2 * x for x in range(300)]
    assert time.perf_counter() - t0 < 300 * 0.02 / 8  # far from one call at a time
    out = list(parallel.map(_double_later, range(50), concurrency=10, ordered=False))
    assert sorted(out) == [2 * x for x in range(50)]
    assert _threads_back_to(before)  # the loop's thread ended


def test_the_input_is_pulled_only_as_results_are_consumed():
    taken = 0

    def counting():
        nonlocal taken
        for i in range(10_000):
            taken += 1
            yield i

    it = parallel.map(_double_later, counting(), concurrency=8, window=16)
    for k in range(1, 50):
        assert next(it) == 2 * (k - 1)
        assert taken <= k + 16
    it.close()


async def _boom_on_5(x):
    await asyncio.sleep(0)
    if x == 5:
        raise ValueError("five")
    return x


def test_errors_name_the_item_and_skip_and_retries_work():
    with pytest.raises(ValueError, match=r"five \[in item 5\]"):
        list(parallel.map(_boom_on_5, range(10)))
    with pytest.warns(RuntimeWarning, match="1 failed"):
        it = parallel.map(_boom_on_5, range(10), on_error="skip")
        assert list(it) == [0, 1, 2, 3, 4, 6, 7, 8, 9]
    assert it.report.failures[0].index == 5
    calls = []

    async def flaky(x):
        calls.append(x)
        if calls.count(x) == 1:
            raise ConnectionError("once")
        return x

    it = parallel.map(flaky, range(5), retries=1, retry_on=ConnectionError, retry_backoff=0.001)
    assert list(it) == list(range(5)) and it.report.retried == 5


def test_timeouts_and_breaking_out_cancel_the_pending_coroutines():
    cancelled = []
    before = threading.active_count()

    async def slow(x):
        try:
            await asyncio.sleep(10 if x == 3 else 0.001)
        except asyncio.CancelledError:
            cancelled.append(x)
            raise
        return x

    t0 = time.perf_counter()
    with pytest.raises(TimeoutError, match=r"item 3 did not finish within 0\.2 s"):
        list(parallel.map(slow, range(6), timeout=0.2))
    assert time.perf_counter() - t0 < 3

    async def forever(x):
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.append(x)
            raise

    async def first_then_forever(x):
        return x if x == 0 else await forever(x)

    it = parallel.map(first_then_forever, range(100), concurrency=20)
    assert next(it) == 0
    it.close()  # break: the pending ones are cancelled, the loop's thread ends
    assert len([c for c in cancelled if c > 3]) >= 10
    assert _threads_back_to(before)


def test_apply_and_map_batch_with_coroutines():
    da = DocumentArray.empty(40)

    async def mark(d):
        await asyncio.sleep(0.001)
        d.text = "seen"

    da.apply(mark)
    assert da.texts == ["seen"] * 40

    async def size(batch):
        return len(batch)

    assert list(parallel.map_batch(size, range(10), 4)) == [4, 4, 2]
    with pytest.raises(TypeError, match="runs on backend='asyncio'"):
        parallel.map(size, range(3), backend="process")


def test_amap_inside_a_running_loop():
    async def main():
        out = [x async for x in parallel.amap(_double_later, range(40), concurrency=20)]
        assert out == [2 * x for x in range(40)]
        seen = []
        async for x in parallel.amap(_double_later, range(10**6), concurrency=8):
            seen.append(x)
            if len(seen) == 5:
                break  # the work stops
        ticks = 0

        async def ticker():  # the caller's loop is never blocked meanwhile
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.001)

        t = asyncio.create_task(ticker())
        assert [x async for x in parallel.amap(_double_later, range(30))] == [
            2 * x for x in range(30)
        ]
        t.cancel()
        return seen, ticks

    seen, ticks = asyncio.run(main())
    assert seen == [0, 2, 4, 6, 8] and ticks > 5


# The conformance suite's functions are synchronous: on this backend their chunks run
# on its thread pool, beside the loop (coroutines are tested above).
CONFORMANCE_CASES = [Case("asyncio", lambda: nullcontext({"backend": "asyncio"}), in_process=True)]


_CTRL_C_SCRIPT = """
import asyncio, os, signal, sys, threading
signal.signal(signal.SIGINT, signal.default_int_handler)
from docmill import parallel

started = 0

async def slow(x):
    global started
    started += 1
    if started == 20:
        os.write(1, b"running\\n")
    try:
        await asyncio.sleep(60)
    except asyncio.CancelledError:
        with open(sys.argv[1], "a") as f:
            f.write("cancelled\\n")
        raise
    return x

try:
    for _ in parallel.map(slow, range(1000), concurrency=20):
        pass
except KeyboardInterrupt:
    loops = [t.name for t in threading.enumerate() if t.name.startswith("docmill")]
    print("interrupted", len(loops), flush=True)
    raise
"""


@pytest.mark.timeout(60)
def test_ctrl_c_cancels_the_pending_coroutines_and_ends_the_loop(tmp_path):
    import os
    import signal
    import subprocess
    import sys

    script, log = tmp_path / "run.py", tmp_path / "cancelled.log"
    script.write_text(_CTRL_C_SCRIPT)
    proc = subprocess.Popen([sys.executable, str(script), str(log)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)  # fmt: skip
    try:
        assert proc.stdout.readline() == "running\n"
        t0 = time.monotonic()
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert time.monotonic() - t0 < 3, err
    assert "KeyboardInterrupt" in err
    assert out.split() == ["interrupted", "0"]  # the loop's thread ended
    assert log.read_text().split() == ["cancelled"] * 20  # every pending call
