"""The public API of docmill.parallel beyond the backend contract: argument checks,
options, progress, error annotation, Ctrl-C, the registry. The contract every
backend keeps is the conformance suite (conformance.py, run by test_backends.py).
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.pool
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from conformance import _baseline, _same, docs, square

from docmill import parallel
from docmill.parallel import Options

# ---------------------------------------------------------------------- errors


_SHARED_ERROR = OSError(2, "No such file or directory", "x.jpg")


def _raise_shared(d):
    if d.id == "doc-1":
        raise _SHARED_ERROR
    return d


def test_an_exception_object_raised_again_is_annotated_once_with_useful_str():
    for _ in range(3):  # the same instance, three maps
        with pytest.raises(OSError) as ei:
            list(parallel.map(_raise_shared, docs(3), backend="serial"))
    e = ei.value
    assert e is _SHARED_ERROR and (e.errno, e.filename) == (2, "x.jpg")
    assert str(e).count("[in item 1") == 1 and "(id 'doc-1')" in str(e)
    assert sum("func raised this" in n for n in e.__notes__) == 1

    def key_error(d):
        raise KeyError("label")

    with pytest.raises(KeyError) as ei:
        list(parallel.map(key_error, docs(2), backend="thread"))
    assert ei.value.args == ("label",)  # the key stays the key; the note names the item
    assert any("item 0 (id 'doc-0')" in n for n in ei.value.__notes__)


def _count_workers(d):
    import psutil

    time.sleep(0.3)
    return len(psutil.Process(os.getppid()).children())


def test_no_more_workers_than_items():
    import psutil

    before = len(psutil.Process().children())  # e.g. a resource tracker
    out = list(parallel.map(_count_workers, docs(3), backend="process", num_worker=16))
    assert max(out) - before <= 3


def test_apply_rejects_other_return_values():
    with pytest.raises(TypeError, match=r"returned int for item 0 \(id 'doc-0'\).*map\(\)"):
        docs(3).apply(lambda d: 1)
    with pytest.raises(ValueError, match=r"returned 1 Documents for batch 0"):
        docs(3).apply_batch(lambda b: b[:1], batch_size=2)


# ---------------------------------------------------------------------- options
def test_a_caller_pool_is_used_and_not_closed():
    with ThreadPoolExecutor(2) as pool:
        assert list(parallel.map(square, range(5), pool=pool)) == [0, 1, 4, 9, 16]
        assert pool.submit(square, 3).result() == 9
    with multiprocessing.pool.ThreadPool(2) as pool:
        list(parallel.map(square, range(5), pool=pool))
        assert pool.apply(square, (4,)) == 16


def test_show_progress_draws_a_bar(capsys):
    assert len(list(parallel.map(square, range(10), show_progress=True))) == 10
    assert "10/10" in capsys.readouterr().err
    list(parallel.map_batch(len, range(10), 4, show_progress=True))
    assert "3/3" in capsys.readouterr().err


def test_num_worker_defaults_to_the_usable_cores():
    assert Options().num_workers == len(os.sched_getaffinity(0))
    with ThreadPoolExecutor(3) as pool:
        assert Options(pool=pool).num_workers == 3


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"backend": "spark"}, ValueError, "'serial', 'thread', 'process'"),
        ({"num_worker": 0}, ValueError, "num_worker must be an int >= 1"),
        ({"chunk_size": 4}, TypeError, "did you mean 'chunksize'"),
        ({"window": -1}, ValueError, "window must be an int >= 1"),
        ({"timeout": 0}, ValueError, "timeout must be a number of seconds > 0"),
        ({"ordered": "yes"}, TypeError, "ordered must be True or False"),
        ({"backend": "process", "start_method": "fork2"}, ValueError, "'fork', 'spawn'"),
        ({"backend": "process", "transport": "tcp"}, ValueError, "'shm', 'pickle'"),
        ({"backend": "process", "shm_threshold": -1}, ValueError, "shm_threshold must be"),
        ({"transport": "pickle"}, TypeError, "an option of backend 'process'"),
        ({"backend": "serial", "backend_options": {"x": 1}}, TypeError, "takes no options"),
        ({"backend": "pool"}, ValueError, "pass it as pool="),
        ({"initargs": (1,)}, ValueError, "without an initializer"),
        ({"pool": object()}, TypeError, "pool must be a multiprocessing.pool.Pool"),
    ],
)
def test_bad_options_are_refused_before_anything_starts(kwargs, error, words):
    before = _baseline()
    with pytest.raises(error, match=words.replace("(", r"\(").replace(".", r"\.")):
        parallel.map(square, range(3), **kwargs)
    assert _same(_baseline(), before)


def test_bad_arguments():
    with pytest.raises(ValueError, match="batch_size must be an int >= 1; got 0"):
        parallel.map_batch(len, range(3), 0)
    with pytest.raises(ValueError, match=r"shuffle=True needs an input with a length"):
        parallel.map_batch(len, (x for x in range(3)), 2, shuffle=True)
    with pytest.raises(TypeError, match="needs an iterable"):
        parallel.map(square, 3)
    with pytest.raises(TypeError, match="needs a callable func"):
        parallel.map(3, range(3))
    with ThreadPoolExecutor(1) as pool, pytest.raises(ValueError, match="give the initializer"):
        parallel.map(square, range(3), pool=pool, initializer=print)


def test_unknown_backend_error_lists_every_valid_name():
    with pytest.raises(ValueError) as ei:
        docs(2).apply(square, backend="threads")
    names = [b for b in parallel.BACKENDS if b != "pool"]  # chosen by pool=, not by name
    assert all(repr(b) in str(ei.value) for b in names) and "pool=" in str(ei.value)


@pytest.mark.parametrize("backend", ["serial", "thread"])
@pytest.mark.timeout(30)
def test_ctrl_c_stops_an_in_process_map_within_2s(backend, tmp_path):
    script = textwrap.dedent(f"""
        import signal, sys, threading, time
        signal.signal(signal.SIGINT, signal.default_int_handler)  # even if our shell ignores it
        from docmill import parallel

        def slow(x):
            time.sleep(0.05)
            return x

        try:
            for i, _ in enumerate(parallel.map(slow, range(10**6), backend={backend!r})):
                if i == 2:
                    print("running", flush=True)
        except KeyboardInterrupt:
            print("interrupted", threading.active_count(), flush=True)
            sys.exit(3)
    """)
    with subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True) as p:
        try:
            assert p.stdout.readline().strip() == "running"
            t0 = time.monotonic()
            p.send_signal(signal.SIGINT)
            assert p.wait(10) == 3
            assert time.monotonic() - t0 < 2
            assert p.stdout.read().split() == ["interrupted", "1"]  # only the main thread left
        finally:
            p.kill()


# ---------------------------------------------------------------------- the registry
class _Counting(parallel.SerialBackend):
    name = "counting"
    tasks = 0

    def submit(self, task, timeout=None):
        _Counting.tasks += 1
        return super().submit(task, timeout)


@pytest.fixture
def clean_registry():
    before = dict(parallel.BACKENDS)
    yield
    parallel.BACKENDS.clear()
    parallel.BACKENDS.update(before)


def test_register_backend_by_class_or_by_import_path(clean_registry):
    parallel.register_backend("counting", f"{__name__}:_Counting")  # imported when used
    assert list(parallel.map(square, range(10), backend="counting", chunksize=5)) == [
        x * x for x in range(10)
    ]
    assert _Counting.tasks == 2
    with pytest.raises(ValueError, match="already registered; pass replace=True"):
        parallel.register_backend("counting", parallel.SerialBackend)
    parallel.register_backend("counting", parallel.SerialBackend, replace=True)
    assert parallel.backend_class("counting") is parallel.SerialBackend
    with pytest.raises(TypeError, match="Backend subclass"):
        parallel.register_backend("bad", object)
    with pytest.raises(ValueError, match="identifier"):
        parallel.register_backend("no spaces", parallel.SerialBackend)


# ---------------------------------------------------------------------- shared pieces
def test_worker_state_lives_where_the_backend_says():
    from docmill.parallel import provide_worker_state, worker_state

    shared: dict = {}
    provide_worker_state(lambda: shared)
    try:
        worker_state()["x"] = 1
        t = threading.Thread(target=lambda: worker_state().setdefault("y", 2))
        t.start()
        t.join()
        assert shared == {"x": 1, "y": 2}  # one dict for every thread of this worker
    finally:
        provide_worker_state(None)
    seen = []
    t = threading.Thread(target=lambda: seen.append(worker_state()))
    t.start()
    t.join()
    assert seen == [{}] and worker_state() is not seen[0]  # back to one per thread
    with pytest.raises(TypeError, match="callable"):
        provide_worker_state({})


def test_the_watchdog_fires_in_deadline_order_and_only_what_is_armed():
    from docmill.parallel._base import Watchdog

    fired: list[str] = []
    done = threading.Event()
    w = Watchdog("test-watchdog")
    assert w._thread is None  # no thread until something is armed
    w.arm("late", 0.3, lambda: (fired.append("late"), done.set()))
    w.arm("soon", 0.05, lambda: fired.append("soon"))
    w.arm("never", 0.1, lambda: fired.append("never"))
    w.disarm("never")
    w.arm("moved", 10, lambda: fired.append("moved"))
    w.arm("moved", 0.15, lambda: fired.append("moved"))  # re-arming replaces the deadline
    assert done.wait(5)
    assert fired == ["soon", "moved", "late"]
    t0 = time.monotonic()
    w.stop()
    assert time.monotonic() - t0 < 1 and not w._thread.is_alive()
    w.arm("after-stop", 0, lambda: fired.append("x"))  # ignored once stopped
    time.sleep(0.05)
    assert fired == ["soon", "moved", "late"]


def test_an_elastic_backends_worker_count_is_read_before_each_refill():
    from docmill.parallel import Capabilities
    from docmill.parallel._core import _Sizer

    class Elastic(parallel.SerialBackend):
        capabilities = Capabilities(elastic=True)

    b = Elastic(Options(backend="serial"))
    sizer = _Sizer(b, Options(backend="serial", chunksize=4), None, True)
    assert sizer.next_chunk(4, True) == 4 and sizer.next_chunk(8, True) == 0  # window 2x1x4
    b.num_workers = 3  # the cluster scaled up
    assert sizer.next_chunk(16, True) == 4  # window 2x3x4 = 24


def _fail_on_7(x):
    if x == 7:
        raise ValueError("seven")
    return x


def test_max_failures_as_a_fraction_of_all_items_or_of_those_seen():
    with pytest.warns(RuntimeWarning, match="1 failed"):
        assert len(list(parallel.map(_fail_on_7, range(100), on_error="skip",
                                     max_failures=0.05))) == 99  # 1% of 100 items  # fmt: skip
    with pytest.raises(parallel.TooManyFailures, match="item 7"):
        list(parallel.map(_fail_on_7, range(10), on_error="skip", max_failures=0.05))
    gen = (x for x in range(20))  # no length: judged once 100 are seen, or at the end
    with pytest.raises(parallel.TooManyFailures):
        list(parallel.map(_fail_on_7, gen, on_error="skip", max_failures=0.01))
    with pytest.raises(ValueError, match="only applies with on_error='skip'"):
        parallel.map(_fail_on_7, range(3), max_failures=1)
    with pytest.raises(ValueError, match="needs retry_on"):
        parallel.map(_fail_on_7, range(3), retries=2)
    with pytest.raises(ValueError, match="on_error must be 'raise'"):
        parallel.map(_fail_on_7, range(3), on_error="ignore")
