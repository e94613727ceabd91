"""The behavioural suite of docmill.parallel: every behaviour crossed with every backend.

Backends: serial, thread, process (fork, spawn) and a caller's pool
(ThreadPoolExecutor, multiprocessing ThreadPool, multiprocessing Pool). Spawn
workers start slowly, so only the behaviours that depend on how functions and
Documents travel (order, lambdas/closures, in-place apply, errors) run on spawn.
Process-only behaviour (crashes, Ctrl-C, recycling, shm) is in
test_parallel_process.py.

Cross-process waits use :class:`FileEvent` (a file that appears): it works under
fork and spawn alike and needs no manager process. Nothing here sleeps to make
something happen; waits have limits so a bug fails instead of hanging.
"""

from __future__ import annotations

import gc
import itertools
import multiprocessing
import multiprocessing.pool
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import pytest

from docmill import Document, DocumentArray, parallel
from docmill.errors import RemoteTraceback
from docmill.parallel import Options, worker_state
from docmill.parallel._core import MAX_CHUNK

# ---------------------------------------------------------------------- backends
IN_PROCESS = {"serial", "thread", "pool-futures-thread", "pool-mp-thread"}
SPAWN = pytest.param("process-spawn", id="process-spawn")
NO_SPAWN = [
    "serial",
    "thread",
    "process-fork",
    "pool-futures-thread",
    "pool-mp-thread",
    "pool-mp-process",
]
EVERY = [*NO_SPAWN, SPAWN]


@pytest.fixture
def kw(request):
    """Keyword arguments selecting one backend (name in ``kw['_name']``, popped by ``opts``)."""
    name = request.param
    if name.startswith("process"):
        pytest.importorskip("docmill.parallel.process")
        yield {"_name": name, "backend": "process", "start_method": name.split("-")[1]}
    elif name == "pool-futures-thread":
        with ThreadPoolExecutor(2) as pool:
            # start both threads now (the executor starts them lazily): the pool's
            # threads are the caller's, not the map's, and belong to the baseline
            ready = threading.Barrier(3)
            for _ in range(2):
                pool.submit(ready.wait, 10)
            ready.wait(10)
            yield {"_name": name, "pool": pool}
    elif name.startswith("pool-mp"):
        ctx = multiprocessing.get_context("fork")
        pool = multiprocessing.pool.ThreadPool(2) if name.endswith("thread") else ctx.Pool(2)
        try:
            yield {"_name": name, "pool": pool}
        finally:
            pool.terminate()
            pool.join()
    else:
        yield {"_name": name, "backend": name}


def opts(kw, **more):
    d = {k: v for k, v in kw.items() if k != "_name"}
    d.setdefault("num_worker", 2)
    d.update(more)
    return d


every_backend = pytest.mark.parametrize("kw", EVERY, indirect=True)
main_backends = pytest.mark.parametrize("kw", NO_SPAWN, indirect=True)


def _baseline():
    gc.collect()  # earlier tests' garbage may still hold descriptors
    fds = len(os.listdir("/proc/self/fd"))
    return len(multiprocessing.active_children()), threading.active_count(), fds


def _same(now, before):
    return now[:2] == before[:2] and now[2] <= before[2]


def assert_back_to(baseline, limit=5.0):
    """Every worker the map started (processes, threads) and every file descriptor it
    opened is gone within ``limit`` s."""
    end = time.monotonic() + limit
    while not _same(_baseline(), baseline) and time.monotonic() < end:
        time.sleep(0.01)
    now = _baseline()
    assert _same(now, baseline), (
        f"children/threads/fds: {now} != {baseline}: {threading.enumerate()}"
    )


class FileEvent:
    """A one-way flag shared by threads and processes (fork or spawn): a file appears."""

    def __init__(self, path):
        self.path = str(path)

    def set(self):
        with open(self.path, "w"):
            pass

    def is_set(self):
        return os.path.exists(self.path)

    def wait(self, timeout=10.0):
        end = time.monotonic() + timeout
        while not os.path.exists(self.path):
            if time.monotonic() > end:
                return False
            time.sleep(0.001)
        return True


# ---------------------------------------------------------------------- worker functions
def square(x):
    return x * x


def wait_unless_first(event, x):
    """Item 0 returns at once; the others wait for ``event``."""
    if x > 0:
        assert event.wait(10), "event never set"
    return x


def wait_if_first(event, x):
    if x == 0:
        assert event.wait(10), "event never set"
    return x


def fail_on(bad, x):
    if (getattr(x, "id", None) or x) == bad:
        raise ValueError(f"cannot handle {bad}")
    return x


def block_on(bad, event, x):
    if x == bad:
        event.wait(10)
    return x


class NeedsTwoArgs(Exception):
    def __init__(self, a, b):
        super().__init__(f"{a}/{b}")


def raise_unpicklable(x):
    raise NeedsTwoArgs(x, "b")


def docs(n, prefix="doc"):
    return DocumentArray(Document(id=f"{prefix}-{i}", text=str(i)) for i in range(n))


# ---------------------------------------------------------------------- order
@every_backend
def test_results_come_in_input_order(kw):
    assert list(parallel.map(square, range(50), **opts(kw))) == [x * x for x in range(50)]


@main_backends
@pytest.mark.parametrize("chunksize", [None, 1, 7])
def test_order_with_any_chunksize_and_window(kw, chunksize):
    got = list(parallel.map(square, range(103), **opts(kw, chunksize=chunksize, window=9)))
    assert got == [x * x for x in range(103)]


@main_backends
def test_unordered_yields_as_completed(kw, tmp_path):
    release = FileEvent(tmp_path / "go")
    if kw["_name"] == "serial":  # nothing runs beside item 0: it must not block
        release.set()
    it = parallel.map(partial(wait_if_first, release), range(4), **opts(kw, ordered=False))
    try:
        first = next(it)
        if kw["_name"] != "serial":
            assert first != 0 and not release.is_set()
    finally:
        release.set()
    assert sorted([first, *it]) == [0, 1, 2, 3]


# ---------------------------------------------------------------------- laziness, window
@main_backends
def test_first_result_arrives_while_later_items_still_run(kw, tmp_path):
    if kw["_name"] == "serial":
        started = []
        it = parallel.map(started.append, range(5), backend="serial")
        assert next(it) is None and started == [0]  # nothing ran ahead of the consumer
        assert list(it) == [None] * 4 and started == list(range(5))
        return
    release = FileEvent(tmp_path / "go")
    it = parallel.map(partial(wait_unless_first, release), range(6), **opts(kw))
    try:
        assert next(it) == 0  # items 1.. are blocked until we have it
    finally:
        release.set()
    assert list(it) == [1, 2, 3, 4, 5]


@main_backends
@pytest.mark.parametrize(("window", "chunksize"), [(6, 2), (5, None), (4, 1)])
def test_input_is_pulled_only_as_results_are_consumed(kw, window, chunksize):
    taken = 0

    def counting():
        nonlocal taken
        for i in range(60):
            taken += 1
            yield i

    it = parallel.map(square, counting(), **opts(kw, window=window, chunksize=chunksize))
    assert taken == 0  # nothing is pulled before the first next()
    for k in range(1, 61):
        assert next(it) == (k - 1) ** 2
        assert taken <= k + window, (k, taken)
    assert list(it) == []


@main_backends
def test_default_window_is_bounded_on_an_endless_input(kw):
    taken = 0

    def counting():
        nonlocal taken
        for i in itertools.count():
            taken += 1
            yield i

    it = parallel.map(square, counting(), **opts(kw))
    consumed = 3000
    for _ in range(consumed):
        next(it)
    it.close()
    assert taken <= consumed + 2 * 2 * MAX_CHUNK


@main_backends
def test_map_over_an_endless_generator_with_break(kw):
    before = _baseline()
    out = []
    for y in parallel.map(square, itertools.count(), **opts(kw)):
        out.append(y)
        if len(out) == 100:
            break
    assert out == [x * x for x in range(100)]
    assert_back_to(before)


# ---------------------------------------------------------------------- early stop
@main_backends
@pytest.mark.parametrize("how", ["break", "close", "gc"])
def test_a_consumer_that_stops_stops_the_workers(kw, how):
    before = _baseline()
    it = parallel.map(square, range(100_000), **opts(kw))
    if how == "break":
        for i, _ in enumerate(it):
            if i == 3:
                break
        it.close()  # what the for loop's owner would do; also checked by "gc"
    elif how == "close":
        next(it)
        it.close()
    else:
        next(it)
        del it
        gc.collect()
    assert_back_to(before)


@main_backends
def test_a_finished_map_leaves_nothing_running(kw):
    before = _baseline()
    assert sum(parallel.map(square, range(1000), **opts(kw))) == sum(x * x for x in range(1000))
    assert_back_to(before)


# ---------------------------------------------------------------------- errors
@every_backend
def test_an_error_names_index_and_id_and_keeps_type_and_remote_traceback(kw):
    before = _baseline()
    da = docs(20)
    seen = []
    with pytest.raises(ValueError, match=r"cannot handle doc-7 \[in item 7 \(id 'doc-7'\)\]") as ei:
        for d in parallel.map(partial(fail_on, "doc-7"), da, **opts(kw, chunksize=3)):
            seen.append(d.id)
    assert seen == [f"doc-{i}" for i in range(7)]  # everything before it was yielded
    assert isinstance(ei.value.__cause__, RemoteTraceback)
    assert "fail_on" in ei.value.__cause__.tb
    assert any("item 7" in n for n in ei.value.__notes__)
    assert_back_to(before)


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


@main_backends
def test_an_error_cancels_the_rest(kw):
    calls = []

    def count_and_fail(x):
        calls.append(x)
        if x == 3:
            raise KeyError(x)
        return x

    with pytest.raises(KeyError) as ei:
        list(parallel.map(count_and_fail, range(100_000), **opts(kw, chunksize=1)))
    assert any("item 3" in n for n in ei.value.__notes__)  # KeyError's str is its own
    if kw["_name"] in IN_PROCESS:
        assert len(calls) < 1000


@main_backends
def test_an_unpicklable_exception_still_reports(kw):
    with pytest.raises(Exception, match="item 0") as ei:
        list(parallel.map(raise_unpicklable, [0], **opts(kw)))
    if kw["_name"] in IN_PROCESS:
        assert type(ei.value) is NeedsTwoArgs
    else:
        assert type(ei.value).__name__ == "UnpicklableError"
        assert "NeedsTwoArgs: 0/b" in str(ei.value)


@main_backends
def test_map_batch_error_names_the_batch(kw):
    def fail_on_second(b):
        if b[0].id == "doc-4":
            raise RuntimeError("bad batch")
        return len(b)

    with pytest.raises(RuntimeError, match=r"batch 1 \(4 documents, ids 'doc-4'..'doc-7'\)"):
        list(parallel.map_batch(fail_on_second, docs(10), 4, **opts(kw)))


@main_backends
def test_timeout_names_the_item(kw, tmp_path):
    release = FileEvent(tmp_path / "go")
    if kw["_name"] == "serial":  # cannot interrupt the caller: fails after the item returns
        func, timeout = partial(time_sleep_on, 2, 0.3), 0.1
    else:
        func, timeout = partial(block_on, 2, release), 0.5
    t0 = time.monotonic()
    try:
        with pytest.raises(TimeoutError, match=r"item 2 did not finish within 0\.\d s"):
            list(parallel.map(func, range(6), **opts(kw, timeout=timeout)))
    finally:
        release.set()  # lets an abandoned thread / a pool's worker return
    assert time.monotonic() - t0 < timeout + 3


def time_sleep_on(bad, seconds, x):
    if x == bad:
        time.sleep(seconds)
    return x


# ---------------------------------------------------------------------- functions that travel
@every_backend
def test_lambdas_closures_and_nested_functions(kw):
    k = 3

    def nested(x):
        return x - k

    assert list(parallel.map(lambda x: x + k, range(5), **opts(kw))) == [3, 4, 5, 6, 7]
    assert list(parallel.map(nested, range(3), **opts(kw))) == [-3, -2, -1]


# ---------------------------------------------------------------------- in place
@every_backend
@pytest.mark.parametrize("returns", ["none", "same", "copy-same-id", "new-id"])
def test_apply_keeps_changes_in_place(kw, returns):
    da = docs(25)
    originals = list(da)

    def change(d):
        if returns == "new-id":
            return Document(id=d.id + "-new", text=d.text + "!")
        d.text += "!"
        d.tags["n"] = int(d.text[:-1])
        if returns == "same":
            return d
        if returns == "copy-same-id":
            return Document(id=d.id, text=d.text, tags=dict(d.tags))
        return None

    assert da.apply(change, **opts(kw)) is da
    assert [d.text for d in da] == [f"{i}!" for i in range(25)]
    if returns == "new-id":
        assert [d.id for d in da] == [f"doc-{i}-new" for i in range(25)]
        assert da["doc-24-new"] is da[24] and "doc-24" not in da
    else:
        assert [d.id for d in da] == [f"doc-{i}" for i in range(25)]
        assert all(a is b for a, b in zip(da, originals, strict=True))  # same objects
        assert [d.tags["n"] for d in da] == list(range(25))
        assert da["doc-13"] is originals[13]


@every_backend
@pytest.mark.parametrize("shuffle", [False, True])
def test_apply_batch_keeps_changes_in_place(kw, shuffle):
    da = docs(23)
    originals = list(da)
    sizes = []

    def change(batch):
        for d in batch:
            d.text = f"<{d.text}>"
        return batch if len(batch) % 2 else None

    def record_size(batch):
        sizes.append(len(batch))

    random.seed(0)
    assert da.apply_batch(change, batch_size=5, shuffle=shuffle, **opts(kw)) is da
    assert [d.text for d in da] == [f"<{i}>" for i in range(23)]
    assert all(a is b for a, b in zip(da, originals, strict=True))
    if kw["_name"] in IN_PROCESS:
        da.apply_batch(record_size, batch_size=5, **opts(kw))
        assert sorted(sizes) == [3, 5, 5, 5, 5]


@main_backends
def test_apply_batch_can_return_new_documents(kw):
    da = docs(10)

    def renew(batch):
        return DocumentArray(Document(id=d.id + "x", text="new") for d in batch)

    da.apply_batch(renew, batch_size=4, **opts(kw))
    assert [d.id for d in da] == [f"doc-{i}x" for i in range(10)]
    assert da["doc-9x"].text == "new"


def test_apply_rejects_other_return_values():
    with pytest.raises(TypeError, match=r"returned int for item 0 \(id 'doc-0'\).*map\(\)"):
        docs(3).apply(lambda d: 1)
    with pytest.raises(ValueError, match=r"returned 1 Documents for batch 0"):
        docs(3).apply_batch(lambda b: b[:1], batch_size=2)


# ---------------------------------------------------------------------- batches
@main_backends
def test_map_batch_sizes_that_do_not_divide_the_length(kw):
    da = docs(30)
    got = list(parallel.map_batch(lambda b: [d.id for d in b], da, 7, **opts(kw)))
    assert [len(b) for b in got] == [7, 7, 7, 7, 2]
    assert [i for b in got for i in b] == [d.id for d in da]
    assert list(da.map_batch(len, batch_size=30, **opts(kw))) == [30]
    assert list(parallel.map_batch(sum, range(10), 4, **opts(kw))) == [6, 22, 17]


@main_backends
def test_map_batch_gets_document_arrays(kw):
    kinds = set(parallel.map_batch(lambda b: type(b).__name__, docs(9), 4, **opts(kw)))
    assert kinds == {"DocumentArray"}


@main_backends
def test_map_batch_shuffle_covers_every_document_once(kw):
    da = docs(40)
    random.seed(1)
    got = [i for b in da.map_batch(_ids, batch_size=6, shuffle=True, **opts(kw)) for i in b]
    assert sorted(got) == sorted(d.id for d in da) and got != [d.id for d in da]


def _ids(batch):
    return [d.id for d in batch]


@main_backends
def test_empty_input(kw):
    assert list(parallel.map(square, [], **opts(kw))) == []
    assert list(parallel.map_batch(len, [], 3, **opts(kw))) == []
    assert len(DocumentArray().apply(square, **opts(kw))) == 0
    assert len(DocumentArray().apply_batch(len, 2, **opts(kw))) == 0


# ---------------------------------------------------------------------- options
def test_a_caller_pool_is_used_and_not_closed():
    with ThreadPoolExecutor(2) as pool:
        assert list(parallel.map(square, range(5), pool=pool)) == [0, 1, 4, 9, 16]
        assert pool.submit(square, 3).result() == 9
    with multiprocessing.pool.ThreadPool(2) as pool:
        list(parallel.map(square, range(5), pool=pool))
        assert pool.apply(square, (4,)) == 16


@pytest.mark.parametrize("backend", ["serial", "thread"])
def test_initializer_builds_per_worker_state(backend):
    def init(value):
        worker_state()["value"] = value
        worker_state()["thread"] = threading.get_ident()

    def use(x):
        return x + worker_state()["value"], worker_state()["thread"] == threading.get_ident()

    got = list(parallel.map(use, range(20), backend=backend, initializer=init, initargs=(5,)))
    assert got == [(x + 5, True) for x in range(20)]


def test_a_failing_initializer_fails_the_map():
    def init():
        raise OSError("no model here")

    with pytest.raises(OSError, match="no model here"):
        list(parallel.map(square, range(10), initializer=init, num_worker=2))


def test_max_tasks_per_worker_replaces_threads():
    idents = list(
        parallel.map(
            lambda x: threading.get_ident(),
            range(12),
            num_worker=2,
            chunksize=1,
            max_tasks_per_worker=1,
        )
    )
    assert len(set(idents)) > 2  # fresh threads (idents may be reused by the OS)


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
        ({"backend": "dask"}, ValueError, "'serial', 'thread', 'process'"),
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


@main_backends
def test_big_items_keep_the_default_window_small(kw):
    import numpy as np

    from docmill.parallel._core import CHUNK_BYTES

    item_bytes = 256 * 1024
    taken = 0

    def big_docs():
        nonlocal taken
        for i in range(300):
            taken += 1
            yield Document(tensor=np.full(item_bytes // 4, i, dtype=np.float32))

    it = parallel.map(identity, big_docs(), **opts(kw))
    for k in range(1, 301):
        assert next(it).tensor[0] == k - 1
        assert taken - k <= 2 * 2 * (CHUNK_BYTES // item_bytes), (k, taken)


def identity(x):
    return x


class CountingBackend(parallel.SerialBackend):
    """A new engine is one Backend subclass taking Options, plus one registry line."""

    name = "counting"
    tasks = 0

    def submit(self, task, timeout=None):
        CountingBackend.tasks += 1
        return super().submit(task, timeout)


def test_a_registered_backend_is_found_by_name(monkeypatch):
    monkeypatch.setitem(parallel.BACKENDS, "counting", f"{__name__}:CountingBackend")
    assert list(parallel.map(square, range(10), backend="counting", chunksize=5)) == [
        x * x for x in range(10)
    ]
    assert CountingBackend.tasks == 2


def _hang_forever():
    time.sleep(3600)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("backend", ["thread", "process"])
def test_an_initializer_that_never_returns_is_bounded(backend):
    t0 = time.monotonic()
    with pytest.raises(TimeoutError, match=r"init_timeout=0\.5"):
        list(
            parallel.map(abs, range(5), backend=backend, num_worker=2,
                         initializer=_hang_forever, init_timeout=0.5)
        )  # fmt: skip
    assert time.monotonic() - t0 < 5
    with pytest.raises(ValueError, match="init_timeout must be a number of seconds"):
        list(parallel.map(abs, range(5), init_timeout=0))
