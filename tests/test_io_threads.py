"""The ordered thread pipeline used to compress frames while earlier ones are written."""

from __future__ import annotations

import threading
import time

import pytest

from docmill.io import _threads
from docmill.io._threads import _fallback, ordered_thread_map


@pytest.fixture(params=["engine", "fallback"])
def pmap(request, monkeypatch):
    if request.param == "fallback":
        return lambda f, items: _fallback(f, items, 2)
    try:
        from docmill import parallel

        parallel.map  # noqa: B018
    except (ImportError, AttributeError):
        pytest.skip("docmill.parallel.map is not available yet")
    return ordered_thread_map


@pytest.mark.timeout(30)
def test_results_come_in_input_order(pmap) -> None:
    def slow_first(i: int) -> int:
        time.sleep(0.05 if i == 0 else 0)
        return i * i

    assert list(pmap(slow_first, range(20))) == [i * i for i in range(20)]


@pytest.mark.timeout(30)
def test_runs_on_worker_threads(pmap) -> None:
    names = list(pmap(lambda _: threading.current_thread().name, range(8)))
    assert threading.main_thread().name not in names


@pytest.mark.timeout(30)
def test_input_is_pulled_lazily(pmap) -> None:
    pulled = 0

    def source():
        nonlocal pulled
        for i in range(10_000):
            pulled += 1
            yield i

    it = pmap(lambda x: x, source())
    assert next(it) == 0
    assert pulled < 200  # bounded look-ahead, not the whole input
    it.close()


@pytest.mark.timeout(30)
def test_errors_propagate(pmap) -> None:
    def boom(i: int) -> int:
        if i == 3:
            raise KeyError("bad frame")
        return i

    with pytest.raises(KeyError, match="bad frame"):
        list(pmap(boom, range(1000)))


def test_fallback_stops_after_an_error() -> None:
    calls = 0

    def boom(i: int) -> int:
        nonlocal calls
        calls += 1
        if i == 3:
            raise KeyError("bad frame")
        return i

    with pytest.raises(KeyError, match="bad frame"):
        list(_fallback(boom, range(1000), 2))
    assert calls < 20  # the window, not the whole input


def test_fallback_leaves_no_threads_behind() -> None:
    before = threading.active_count()
    it = _fallback(lambda x: x, range(100), 2)
    next(it)
    it.close()
    assert threading.active_count() == before


def test_engine_is_used_when_present(monkeypatch) -> None:
    import docmill

    seen = {}

    class FakeParallel:
        @staticmethod
        def map(func, items, backend, num_worker, chunksize):
            seen.update(backend=backend, chunksize=chunksize)
            return iter([func(x) for x in items])

    monkeypatch.setattr(docmill, "parallel", FakeParallel, raising=False)
    monkeypatch.setitem(__import__("sys").modules, "docmill.parallel", FakeParallel)
    assert list(_threads.ordered_thread_map(lambda x: -x, [1, 2])) == [-1, -2]
    assert seen == {"backend": "thread", "chunksize": 1}
