"""The backend conformance suite: the contract of ``map`` / ``map_batch`` / ``apply`` /
``apply_batch`` that every backend keeps, written once.

A backend joins with one parametrization, in the test module that runs it::

    from conformance import *  # noqa: F403 - the suite's tests, fixtures and hook
    from conformance import Case

    CONFORMANCE_CASES = [Case("dask", lambda: nullcontext({"backend": "dask"}))]

Every test here then runs once per case (CPython's ``create_executor_tests``
idea). A case whose workers are slow to start (``travel_only=True``: spawn)
runs only the tests marked ``@travel`` (how functions, Documents and errors
travel). Tests marked ``@requires("isolated")`` (or another capability) run
only on backends that declare it in :class:`docmill.parallel.Capabilities`.

Cross-process waits use :class:`FileEvent` (a file that appears): it works under
fork and spawn alike and needs no manager process. Nothing here sleeps to make
something happen; waits have limits so a bug fails instead of hanging.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import os
import random
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from functools import partial

import pytest

from docmill import Document, DocumentArray, WorkerCrashed, parallel
from docmill.errors import RemoteTraceback
from docmill.parallel import Options, backend_class, worker_state
from docmill.parallel._core import MAX_CHUNK


# ---------------------------------------------------------------------- the cases
@dataclass(frozen=True)
class Case:
    """One backend under test: ``make()`` gives (as a context manager) the keywords
    that select it, e.g. ``{"backend": "thread"}`` or ``{"pool": executor}``."""

    name: str
    make: Callable[[], AbstractContextManager[dict]]
    #: slow to start (spawn): runs only the tests marked ``@travel``
    travel_only: bool = False
    #: tasks run in the caller's process (objects come back as themselves)
    in_process: bool = False
    #: the backend keeps connections of its own open across maps (a cluster client's
    #: pool): file descriptors are not compared after a map, threads and children are
    keeps_connections: bool = False
    #: the registered backend name, when make() should not run just to learn it
    #: (it starts a cluster): its capabilities are read from the registry
    backend: str | None = None


travel = pytest.mark.travel


def requires(*capabilities: str):
    """Run a test only on backends whose Capabilities have all of these set."""
    return pytest.mark.requires(*capabilities)


def pytest_generate_tests(metafunc):
    if "kw" not in metafunc.fixturenames:
        return
    cases = getattr(metafunc.module, "CONFORMANCE_CASES", None)
    if cases is None:
        raise RuntimeError(
            f"{metafunc.module.__name__} imports the suite without CONFORMANCE_CASES"
        )
    marks = metafunc.definition
    chosen = [c for c in cases if not c.travel_only or marks.get_closest_marker("travel")]
    need = marks.get_closest_marker("requires")
    if need is not None:
        chosen = [c for c in chosen if all(getattr(_capabilities(c), a) for a in need.args)]
    metafunc.parametrize("kw", chosen, ids=[c.name for c in chosen], indirect=True)


def _capabilities(case: Case):
    if case.backend is not None:
        return backend_class(case.backend).capabilities
    with case.make() as kw:
        return _caps(kw)


def _caps(kw):
    options = Options.from_kwargs(**{k: v for k, v in kw.items() if not k.startswith("_")})
    return backend_class(options.backend).capabilities


@pytest.fixture
def kw(request):
    """The keywords selecting one backend (plus ``_case``, dropped by :func:`opts`)."""
    case: Case = request.param
    with case.make() as selected:
        yield {**selected, "_case": case}


def opts(kw, **more):
    d = {k: v for k, v in kw.items() if not k.startswith("_")}
    d.setdefault("num_worker", 2)
    d.update(more)
    return d


def concurrent(kw) -> bool:
    """Whether the backend runs tasks beside the consumer (not serial)."""
    return _caps(kw).concurrent


def in_process(kw) -> bool:
    return kw["_case"].in_process


# ---------------------------------------------------------------------- helpers
def _live_children() -> int:
    """Child processes still running, counted without reaping any: a cluster's own
    process manager (Dask's nanny) must see its workers' exits itself, and
    ``multiprocessing.active_children()`` would collect them first."""
    import psutil

    n = 0
    for child in psutil.Process().children():
        with contextlib.suppress(psutil.NoSuchProcess):
            n += child.status() != psutil.STATUS_ZOMBIE
    return n


def _baseline():
    gc.collect()  # earlier tests' garbage may still hold descriptors
    fds = len(os.listdir("/proc/self/fd"))
    return _live_children(), threading.active_count(), fds


def _same(now, before, fds=True):
    return now[:2] == before[:2] and (now[2] <= before[2] or not fds)


def assert_back_to(baseline, kw=None, limit=5.0):
    """Every worker the map started (processes, threads) and every file descriptor it
    opened is gone within ``limit`` s."""
    fds = kw is None or not kw["_case"].keeps_connections
    end = time.monotonic() + limit
    while not _same(_baseline(), baseline, fds) and time.monotonic() < end:
        time.sleep(0.01)
    now = _baseline()
    assert _same(now, baseline, fds), (
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

    def set_value(self, text):
        """Set the flag with a short text in it (atomically: readers see all or nothing)."""
        tmp = f"{self.path}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, self.path)

    def value(self):
        with open(self.path) as f:
            return f.read()

    def wait(self, timeout=10.0):
        end = time.monotonic() + timeout
        while not os.path.exists(self.path):
            if time.monotonic() > end:
                return False
            time.sleep(0.001)
        return True


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


@travel
def test_results_come_in_input_order(kw):
    assert list(parallel.map(square, range(50), **opts(kw))) == [x * x for x in range(50)]


@pytest.mark.parametrize("chunksize", [None, 1, 7])
def test_order_with_any_chunksize_and_window(kw, chunksize):
    got = list(parallel.map(square, range(103), **opts(kw, chunksize=chunksize, window=9)))
    assert got == [x * x for x in range(103)]


def test_unordered_yields_as_completed(kw, tmp_path):
    release = FileEvent(tmp_path / "go")
    if not concurrent(kw):  # nothing runs beside item 0: it must not block
        release.set()
    it = parallel.map(partial(wait_if_first, release), range(4), **opts(kw, ordered=False))
    try:
        first = next(it)
        if concurrent(kw):
            assert first != 0 and not release.is_set()
    finally:
        release.set()
    assert sorted([first, *it]) == [0, 1, 2, 3]


def test_first_result_arrives_while_later_items_still_run(kw, tmp_path):
    if not concurrent(kw):
        started = []
        it = parallel.map(started.append, range(5), **opts(kw))
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


def test_map_over_an_endless_generator_with_break(kw):
    before = _baseline()
    out = []
    for y in parallel.map(square, itertools.count(), **opts(kw)):
        out.append(y)
        if len(out) == 100:
            break
    assert out == [x * x for x in range(100)]
    assert_back_to(before, kw)


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
    assert_back_to(before, kw)


def test_a_finished_map_leaves_nothing_running(kw):
    before = _baseline()
    assert sum(parallel.map(square, range(1000), **opts(kw))) == sum(x * x for x in range(1000))
    assert_back_to(before, kw)


@travel
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
    assert_back_to(before, kw)


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
    if in_process(kw):
        assert len(calls) < 1000


def test_an_unpicklable_exception_still_reports(kw):
    with pytest.raises(Exception, match="item 0") as ei:
        list(parallel.map(raise_unpicklable, [0], **opts(kw)))
    if in_process(kw):
        assert type(ei.value) is NeedsTwoArgs
    else:
        assert type(ei.value).__name__ == "UnpicklableError"
        assert "NeedsTwoArgs: 0/b" in str(ei.value)


def test_map_batch_error_names_the_batch(kw):
    def fail_on_second(b):
        if b[0].id == "doc-4":
            raise RuntimeError("bad batch")
        return len(b)

    with pytest.raises(RuntimeError, match=r"batch 1 \(4 documents, ids 'doc-4'..'doc-7'\)"):
        list(parallel.map_batch(fail_on_second, docs(10), 4, **opts(kw)))


def test_timeout_names_the_item(kw, tmp_path):
    release = FileEvent(tmp_path / "go")
    if not concurrent(kw):  # cannot interrupt the caller: fails after the item returns
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


@travel
def test_lambdas_closures_and_nested_functions(kw):
    k = 3

    def nested(x):
        return x - k

    assert list(parallel.map(lambda x: x + k, range(5), **opts(kw))) == [3, 4, 5, 6, 7]
    assert list(parallel.map(nested, range(3), **opts(kw))) == [-3, -2, -1]


@travel
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


@travel
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
    if in_process(kw):
        da.apply_batch(record_size, batch_size=5, **opts(kw))
        assert sorted(sizes) == [3, 5, 5, 5, 5]


def test_apply_batch_can_return_new_documents(kw):
    da = docs(10)

    def renew(batch):
        return DocumentArray(Document(id=d.id + "x", text="new") for d in batch)

    da.apply_batch(renew, batch_size=4, **opts(kw))
    assert [d.id for d in da] == [f"doc-{i}x" for i in range(10)]
    assert da["doc-9x"].text == "new"


def test_map_batch_sizes_that_do_not_divide_the_length(kw):
    da = docs(30)
    got = list(parallel.map_batch(lambda b: [d.id for d in b], da, 7, **opts(kw)))
    assert [len(b) for b in got] == [7, 7, 7, 7, 2]
    assert [i for b in got for i in b] == [d.id for d in da]
    assert list(da.map_batch(len, batch_size=30, **opts(kw))) == [30]
    assert list(parallel.map_batch(sum, range(10), 4, **opts(kw))) == [6, 22, 17]


def test_map_batch_gets_document_arrays(kw):
    kinds = set(parallel.map_batch(lambda b: type(b).__name__, docs(9), 4, **opts(kw)))
    assert kinds == {"DocumentArray"}


def test_map_batch_shuffle_covers_every_document_once(kw):
    da = docs(40)
    random.seed(1)
    got = [i for b in da.map_batch(_ids, batch_size=6, shuffle=True, **opts(kw)) for i in b]
    assert sorted(got) == sorted(d.id for d in da) and got != [d.id for d in da]


def _ids(batch):
    return [d.id for d in batch]


def test_empty_input(kw):
    assert list(parallel.map(square, [], **opts(kw))) == []
    assert list(parallel.map_batch(len, [], 3, **opts(kw))) == []
    assert len(DocumentArray().apply(square, **opts(kw))) == 0
    assert len(DocumentArray().apply_batch(len, 2, **opts(kw))) == 0


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


# ---------------------------------------------------------------------- workers: hooks
def _init_state(value):
    worker_state()["value"] = value
    worker_state()["who"] = (os.getpid(), threading.get_ident())


def _read_state(x):
    return x + worker_state()["value"]


@travel
@requires("worker_hooks")
def test_initializer_builds_per_worker_state(kw):
    got = list(
        parallel.map(_read_state, range(20), **opts(kw, initializer=_init_state, initargs=(5,)))
    )
    assert got == [x + 5 for x in range(20)]


def _no_model():
    raise OSError("no model here")


@requires("worker_hooks")
def test_a_failing_initializer_fails_the_map(kw):
    with pytest.raises(OSError, match="no model here"):
        list(parallel.map(square, range(10), **opts(kw, initializer=_no_model)))


def _wait_for(event):
    event.wait(10)


@pytest.mark.timeout(30)
@requires("worker_hooks", "replaces_workers")
def test_an_initializer_that_never_returns_is_bounded(kw, tmp_path):
    release = FileEvent(tmp_path / "go")
    t0 = time.monotonic()
    try:
        with pytest.raises(TimeoutError, match=r"init_timeout=0\.5"):
            list(
                parallel.map(square, range(5),
                             **opts(kw, initializer=_wait_for, initargs=(release,), init_timeout=0.5))
            )  # fmt: skip
        assert time.monotonic() - t0 < 5
    finally:
        release.set()


def _who(x):
    return os.getpid(), threading.get_ident()


@requires("worker_hooks", "replaces_workers")
def test_max_tasks_per_worker_replaces_workers(kw):
    who = list(parallel.map(_who, range(12), **opts(kw, chunksize=1, max_tasks_per_worker=1)))
    assert len(set(who)) > 2  # fresh workers (thread idents may be reused by the OS)


# ---------------------------------------------------------------------- workers: isolation
def _exit_on(bad, x):
    if x == bad:
        os._exit(3)
    return x


@travel
@requires("isolated")
def test_a_worker_that_dies_fails_its_item_and_nothing_hangs(kw):
    before = _baseline()
    with pytest.raises(WorkerCrashed, match=r"item 5") as ei:
        list(parallel.map(partial(_exit_on, 5), range(40), **opts(kw)))  # auto chunks
    assert ei.value.exitcode in (3, None)  # None: the engine does not report it (Dask)
    assert [i for i, _ in ei.value.items] == [5]
    assert_back_to(before, kw)


def _pid_then_sleep(event, x):
    event.set_value(str(os.getpid()))
    time.sleep(60)


@requires("stops_timed_out")
def test_a_timed_out_task_is_stopped_not_abandoned(kw, tmp_path):
    import psutil

    started = FileEvent(tmp_path / "pid")
    t0 = time.monotonic()
    # 1.5 s: long enough that a loaded machine still starts the call (a Ray actor
    # may take a while to receive it), short next to the 60 s the call would sleep
    with pytest.raises(TimeoutError, match=r"item 0 did not finish within 1\.5 s"):
        list(parallel.map(partial(_pid_then_sleep, started), range(1), **opts(kw, timeout=1.5)))
    assert time.monotonic() - t0 < 8
    pid = int(started.value())
    end = time.monotonic() + 5
    while psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < end, "the worker running the timed-out task still runs"
        time.sleep(0.02)


# ---------------------------------------------------------------------- failures that do not abort
def _fail_every_tenth(x):
    if getattr(x, "id", x) in (3, 13, 23, "doc-3", "doc-13"):
        raise ValueError(f"cannot handle {getattr(x, 'id', x)}")
    return x


def test_on_error_skip_leaves_failures_out_and_reports_them(kw):
    with pytest.warns(RuntimeWarning, match=r"27 done, 3 failed.*item 3: ValueError"):
        it = parallel.map(_fail_every_tenth, range(30), **opts(kw, on_error="skip"))
        out = list(it)
    assert out == [x for x in range(30) if x not in (3, 13, 23)]
    report = it.report
    assert (report.done, report.failed) == (27, 3)
    assert [(f.index, f.type, f.message) for f in report.failures] == [
        (3, "ValueError", "cannot handle 3"), (13, "ValueError", "cannot handle 13"),
        (23, "ValueError", "cannot handle 23"),
    ]  # fmt: skip
    assert all("_fail_every_tenth" in f.traceback for f in report.failures)


def test_max_failures_stops_the_run_listing_the_first(kw):
    with pytest.raises(parallel.TooManyFailures, match=r"item 3.*cannot handle 3") as ei:
        list(parallel.map(_fail_every_tenth, range(30), **opts(kw, on_error="skip",
                                                                max_failures=1)))  # fmt: skip
    assert ei.value.report.failed >= 2


def test_apply_with_skip_keeps_the_rest_and_fills_the_report(kw):
    da = docs(20)
    report = parallel.Report()

    def mark(d):
        _fail_every_tenth(d)
        d.text = "ok"

    with pytest.warns(RuntimeWarning):
        da.apply(mark, **opts(kw, on_error="skip", report=report))
    assert [d.text for d in da] == ["3" if i == 3 else "13" if i == 13 else "ok" for i in range(20)]
    assert [(f.index, f.id) for f in report.failures] == [(3, "doc-3"), (13, "doc-13")]


def _flaky_on_odd(marker_dir, x):
    marker = os.path.join(marker_dir, str(x))
    if x % 2 and not os.path.exists(marker):  # fails the first time, works after
        with open(marker, "w"):
            pass
        raise ConnectionError(f"flaky {x}")
    return x


def test_retries_with_backoff_only_for_retry_on(kw, tmp_path):
    it = parallel.map(partial(_flaky_on_odd, str(tmp_path)), range(10),
                      **opts(kw, retries=2, retry_on=ConnectionError, retry_backoff=0.001))  # fmt: skip
    assert list(it) == list(range(10)) and it.report.retried == 5
    (tmp_path / "x").mkdir()
    with pytest.raises(ConnectionError, match="flaky"):  # not in retry_on: not retried
        list(parallel.map(partial(_flaky_on_odd, str(tmp_path / "x")), range(4),
                          **opts(kw, retries=2, retry_on=KeyError)))  # fmt: skip


def _exit_on_5(x):
    if x == 5:
        os._exit(3)
    return x


@requires("isolated")
def test_with_skip_a_worker_crash_is_retried_once_then_recorded(kw):
    with pytest.warns(RuntimeWarning, match="WorkerCrashed"):
        it = parallel.map(_exit_on_5, range(12), **opts(kw, on_error="skip"))
        out = list(it)
    assert out == [x for x in range(12) if x != 5]
    (failure,) = it.report.failures
    assert failure.index == 5 and failure.type == "WorkerCrashed"


# ---------------------------------------------------------------------- resuming from a checkpoint
def _log_then_square(log_dir, stop_at, x):
    """Logs each call (a file per item: any worker, any process), and fails the whole
    run at ``stop_at`` the way a crash of the caller would end it."""
    open(os.path.join(log_dir, str(x)), "w").close()
    if x == stop_at:
        raise _Crash(f"crashed at {x}")
    return x * x


class _Crash(Exception):
    """The run's end, half way (not skipped: on_error is 'raise')."""


def test_a_run_resumes_from_its_checkpoint_computing_only_the_rest(kw, tmp_path):
    path, log = tmp_path / "run.docmill", tmp_path / "calls"
    log.mkdir()
    with pytest.raises(_Crash):
        list(parallel.map(partial(_log_then_square, str(log), 60), range(100),
                          **opts(kw, checkpoint=path, checkpoint_every=1e-3)))  # fmt: skip
    for f in log.iterdir():
        f.unlink()
    out = list(parallel.map(partial(_log_then_square, str(log), -1), range(100),
                            **opts(kw, checkpoint=path)))  # fmt: skip
    assert out == [x * x for x in range(100)]
    again = sorted(int(f.name) for f in log.iterdir())
    assert again and again[-1] == 99 and len(again) < 100  # the saved ones were not run
    assert set(range(again[0])).isdisjoint(again)
