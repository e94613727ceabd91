"""The process backend: crashes, timeouts, recycling, initializers, Ctrl-C, leaks.

The behaviour every backend shares (order, laziness, errors with ids, ...) is in
tests/test_parallel.py; this file covers what only worker *processes* can do
wrong. Most cases use fork (fast); a few repeat under spawn, which must behave
the same but starts each worker in a fresh interpreter (~0.3 s).
"""

from __future__ import annotations

import contextlib
import ctypes
import faulthandler
import gc
import multiprocessing
import multiprocessing.resource_tracker
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import threading
import time
from concurrent.futures import CancelledError

import psutil
import pytest

from docmill import Document, DocumentArray, WorkerCrashed, parallel
from docmill.errors import RemoteTraceback
from docmill.parallel import Options, worker_state
from docmill.parallel import process as process_module
from docmill.parallel.process import ProcessBackend

pytestmark = pytest.mark.timeout(60)

FORK_SPAWN = ["fork", "spawn"]


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture
def no_leaks():
    """Nothing a map started — process, thread or file descriptor — outlives it."""
    multiprocessing.resource_tracker.ensure_running()  # started once by the first spawn
    before = (_fds(), threading.active_count())
    yield
    deadline = time.monotonic() + 3
    while True:  # no gc.collect(): nothing may wait for the garbage collector
        now = (_fds(), threading.active_count())
        children = multiprocessing.active_children()
        # fewer is no leak: what an earlier test left may finish closing meanwhile
        done = now[0] <= before[0] and now[1] <= before[1]
        if (done and not children) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert not children, f"worker processes left running: {children}"
    assert now[1] <= before[1], f"threads left running: {threading.enumerate()}"
    assert now[0] <= before[0], f"file descriptors leaked: {before[0]} -> {now[0]}"


def backend(**kw) -> ProcessBackend:
    kw.setdefault("num_worker", 1)
    kw.setdefault("start_method", "fork")
    return ProcessBackend(Options.from_kwargs(backend="process", **kw))


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _wait_gone(pids, seconds: float = 3.0) -> list[int]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        alive = [p for p in pids if not _gone(p)]
        if not alive:
            return []
        time.sleep(0.05)
    return alive


# ---------------------------------------------------------------------- the basics
@pytest.mark.parametrize("method", FORK_SPAWN)
def test_closures_run_in_worker_processes(method, no_leaks):
    k = 3

    def probe(x):  # a closure: shipped with cloudpickle, under spawn too
        return x * k, os.getpid(), signal.getsignal(signal.SIGINT) is signal.SIG_IGN

    out = list(parallel.map(probe, range(40), backend="process", num_worker=2, start_method=method))
    assert [r[0] for r in out] == [x * 3 for x in range(40)]
    assert os.getpid() not in {r[1] for r in out}
    assert all(r[2] for r in out), "workers must ignore SIGINT (Ctrl-C is the parent's)"


def test_apply_keeps_in_place_changes(no_leaks):
    da = DocumentArray(Document(text=str(i)) for i in range(30))

    def shout(d):
        d.text = d.text + "!"

    da.apply(shout, backend="process", num_worker=2, start_method="fork")
    assert [d.text for d in da] == [f"{i}!" for i in range(30)]


def test_a_task_goes_to_the_least_busy_worker_at_most_two_each(no_leaks):
    b = backend(num_worker=2)
    b.start(lambda s: time.sleep(s) or os.getpid())
    with b:
        futures = [b.submit(0.3) for _ in range(8)]
        seen = set()
        while not all(f.done() for f in futures):
            with b._lock:  # white box: what the parent believes each worker holds
                seen.add(tuple(sorted(len(w.inflight) for w in b._workers)))
            time.sleep(0.01)
        pids = [f.result() for f in futures]
    assert (2, 2) in seen  # both busy, each with one task queued behind the running one
    assert max(n for held in seen for n in held) == 2
    assert len(set(pids)) == 2 and min(pids.count(p) for p in set(pids)) >= 2


# ---------------------------------------------------------------------- worker death
def _exit3(x):
    os._exit(3)


def _sigkill(x):
    os.kill(os.getpid(), signal.SIGKILL)


def _segfault(x):
    faulthandler.disable()  # pytest enables it: it would print a traceback to the terminal
    ctypes.string_at(0)


CRASHES = [
    pytest.param("fork", _exit3, 3, "exit code 3", id="fork-exit"),
    pytest.param("fork", _sigkill, -9, "out-of-memory", id="fork-sigkill"),
    pytest.param("fork", _segfault, -11, "segmentation fault", id="fork-segfault"),
    pytest.param("spawn", _exit3, 3, "exit code 3", id="spawn-exit"),
]


@pytest.mark.timeout(20)
@pytest.mark.parametrize(("method", "how", "code", "words"), CRASHES)
def test_a_dying_worker_raises_worker_crashed_within_5s(method, how, code, words, no_leaks):
    def func(x):
        if x == 7:
            how(x)
        return x

    t0 = time.monotonic()
    with pytest.raises(WorkerCrashed) as info:
        list(
            parallel.map(
                func, range(20), backend="process", num_worker=2, chunksize=1, start_method=method
            )
        )
    assert time.monotonic() - t0 < 5
    err = info.value
    assert err.exitcode == code
    assert words in str(err) and str(code) in str(err)
    assert [i for i, _ in err.items] == [7]


@pytest.mark.timeout(20)
def test_apply_with_a_dying_worker_does_not_hang(no_leaks):
    # the legacy version hangs forever here
    da = DocumentArray(Document(text=str(i)) for i in range(10))

    def func(d):
        if d.text == "4":
            os.kill(os.getpid(), signal.SIGKILL)

    with pytest.raises(WorkerCrashed, match="SIGKILL") as info:
        da.apply(func, backend="process", num_worker=2, chunksize=1, start_method="fork")
    assert info.value.items == [(4, da._docs[4].id)]


@pytest.mark.timeout(30)
@pytest.mark.parametrize("chunksize", [None, 40])
def test_a_crash_in_a_chunk_of_many_items_names_the_exact_item(chunksize, no_leaks):
    # "one of items 40..79" named no item: the chunk is re-run item by item
    da = DocumentArray(Document(id=f"doc-{i}") for i in range(200))

    def func(d):
        if d.id == "doc-57":
            os._exit(3)

    with pytest.raises(WorkerCrashed, match=r"item 57 \(id 'doc-57'\)") as info:
        da.apply(func, backend="process", num_worker=2, chunksize=chunksize)
    assert info.value.items == [(57, "doc-57")]

    def unpicklable(x):
        return threading.Lock() if x == 13 else x

    with pytest.raises(pickle.PicklingError, match="item 13"):
        list(parallel.map(unpicklable, range(30), backend="process", num_worker=1, chunksize=10))


@pytest.mark.timeout(20)
def test_after_a_crash_queued_tasks_run_on_a_fresh_worker(no_leaks):
    b = backend(num_worker=1)
    b.start(lambda x: os._exit(5) if x == "die" else os.getpid())
    with b:
        first = b.submit("ok").result(10)
        dying, queued = b.submit("die"), b.submit("ok")  # both in the worker's pipe
        with pytest.raises(WorkerCrashed, match="exit code 5"):
            dying.result(5)
        second = queued.result(10)  # never started on the dead worker: ran elsewhere
        assert second != first
        assert b.submit("ok").result(10) == second


@pytest.mark.timeout(20)
def test_workers_dying_at_start_fail_fast(no_leaks):
    t0 = time.monotonic()
    with pytest.raises(WorkerCrashed, match=r"keep dying while they start.*exit code 1"):
        list(parallel.map(abs, range(9), backend="process", initializer=os._exit, initargs=(1,)))
    assert time.monotonic() - t0 < 5


# ---------------------------------------------------------------------- timeout
@pytest.mark.timeout(20)
def test_timeout_kills_the_worker_and_replaces_it(no_leaks):
    b = backend(num_worker=1)
    b.start(lambda s: time.sleep(s) or os.getpid())
    with b:
        pid = b.submit(0).result(10)
        t0 = time.monotonic()
        with pytest.raises(TimeoutError, match=r"timeout of 0\.3 s"):
            b.submit(30, timeout=0.3).result(5)
        assert time.monotonic() - t0 < 2
        assert _wait_gone([pid]) == []
        assert b.submit(0, timeout=5).result(10) not in (pid, None)


@pytest.mark.timeout(20)
def test_a_slow_start_does_not_count_against_the_timeout(no_leaks):
    out = parallel.map(
        abs,
        [-1, -2],
        backend="process",
        num_worker=1,
        timeout=0.3,
        initializer=time.sleep,
        initargs=(0.8,),  # e.g. loading a model
    )
    assert list(out) == [1, 2]


@pytest.mark.timeout(20)
def test_timeout_through_map_names_the_item(no_leaks):
    t0 = time.monotonic()
    with pytest.raises(TimeoutError, match="item 2"):
        list(parallel.map(time.sleep, [0, 0, 30, 0], backend="process", num_worker=2, timeout=0.5))
    assert time.monotonic() - t0 < 3


# ---------------------------------------------------------------------- recycling, initializer
@pytest.mark.parametrize("method", FORK_SPAWN)
def test_max_tasks_per_worker_recycles_workers(method, no_leaks):
    pids = list(
        parallel.map(
            lambda _: os.getpid(),
            range(6),
            backend="process",
            num_worker=1,
            chunksize=1,
            max_tasks_per_worker=2,
            start_method=method,
        )
    )
    assert len(set(pids)) == 3
    assert pids[0] == pids[1] != pids[2] == pids[3] != pids[4] == pids[5]


def test_a_worker_replaced_as_the_map_ends_is_stopped(no_leaks):
    """The last task retires its worker (max_tasks_per_worker) and the map ends while the
    replacement is being forked: the replacement must be stopped, not waited for (the
    feeder had already stopped, so nothing told it to; this hung nearly every time)."""
    for _ in range(20):
        out = list(
            parallel.map(
                _pid, range(2), backend="process", num_worker=1, chunksize=1,
                max_tasks_per_worker=2, start_method="fork",
            )
        )  # fmt: skip
        assert len(set(out)) == 1


def _pid(_: object) -> int:
    return os.getpid()


def _slow_to_exit(x: int) -> int:
    """Leaves a non-daemon thread behind: the worker's interpreter waits for it (~1.5 s)
    on its way out, after its last task."""
    if not worker_state().get("lingering"):
        worker_state()["lingering"] = True
        threading.Thread(target=time.sleep, args=(1.5,)).start()
    return x


def test_a_map_returns_without_waiting_for_its_workers_to_exit(no_leaks):
    """Every task settled and every worker told to stop: the map is over. The collector
    reaps the exits in the background (no_leaks: all gone within seconds)."""
    t0 = time.monotonic()
    out = list(
        parallel.map(
            _slow_to_exit, range(4), backend="process", num_worker=2, chunksize=1,
            start_method="fork",
        )
    )  # fmt: skip
    assert out == [0, 1, 2, 3]
    assert time.monotonic() - t0 < 1.0  # it waited for the lingering threads before
    deadline = time.monotonic() + 5
    while process_module._REAPING and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not process_module._REAPING  # each collector lets go of its backend as it ends


_EXITING_SCRIPT = textwrap.dedent(
    """
    import os, sys, threading, time
    from docmill import parallel

    def work(x):
        if sys.argv[1] == "linger":
            threading.Thread(target=time.sleep, args=(30,)).start()  # holds up the exit
        return os.getpid()

    if __name__ == "__main__":
        pids = set(parallel.map(work, range(2), backend="process", num_worker=2,
                                chunksize=1, start_method="fork"))
        print(*pids, flush=True)
    """
)


def _run_exiting(tmp_path, how: str):
    script = tmp_path / "exiting.py"
    script.write_text(_EXITING_SCRIPT)
    return subprocess.run(
        [sys.executable, str(script), how], capture_output=True, text=True, timeout=20
    )  # fmt: skip


@pytest.mark.timeout(30)
def test_the_interpreter_exits_at_once_while_workers_are_still_exiting(tmp_path):
    """The program ends right after a map whose workers are slow to exit: they are
    killed and reaped before multiprocessing's own exit handler runs (which would
    otherwise join process objects the collector is closing: a traceback at exit)."""
    t0 = time.monotonic()
    out = _run_exiting(tmp_path, "linger")
    assert time.monotonic() - t0 < 10
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""
    pids = [int(p) for p in out.stdout.split()]
    assert len(pids) >= 1
    assert _wait_gone(pids, 3) == []


@pytest.mark.timeout(60)
def test_no_traceback_at_exit_right_after_a_map(tmp_path):
    """The program ends while its last map's workers exit by themselves. Without the
    exit hook, multiprocessing's handler raced with the collector in ~1 run of 5
    ('process object is closed'); 12 runs."""
    for _ in range(12):
        out = _run_exiting(tmp_path, "quick")
        assert (out.returncode, out.stderr) == (0, "")


@pytest.mark.parametrize("method", FORK_SPAWN)
def test_initializer_runs_once_per_worker_and_keeps_state(method, tmp_path, no_leaks):
    def init(folder, name):
        with open(os.path.join(folder, str(os.getpid())), "x") as f:  # "x": a 2nd run fails
            f.write(name)
        worker_state()["model"] = name.upper()

    def use(x):
        return worker_state()["model"], os.getpid()

    out = list(
        parallel.map(
            use,
            range(30),
            backend="process",
            num_worker=2,
            chunksize=1,
            initializer=init,
            initargs=(str(tmp_path), "bert"),
            start_method=method,
        )
    )
    assert {m for m, _ in out} == {"BERT"}
    ran = {int(p.name) for p in tmp_path.iterdir()}
    assert len(ran) == 2 and {pid for _, pid in out} <= ran


@pytest.mark.timeout(20)
def test_a_failing_initializer_is_a_clear_error(no_leaks):
    def load_model():
        raise ValueError("no such model: 'bert-xl'")

    with pytest.raises(ValueError, match="no such model") as info:  # its own type
        list(parallel.map(abs, range(10), backend="process", num_worker=2, initializer=load_model))
    notes = " ".join(info.value.__notes__)
    assert "no task can run" in notes and "load_model" in notes
    assert isinstance(info.value.__cause__, RemoteTraceback)


# ---------------------------------------------------------------------- what cannot be pickled
def test_an_unpicklable_result_fails_the_task_not_the_worker(no_leaks):
    with pytest.raises(pickle.PicklingError, match="could not be pickled"):
        list(parallel.map(lambda x: threading.Lock(), range(3), backend="process", num_worker=1))


def test_an_unpicklable_function_is_refused_with_advice(no_leaks):
    lock = threading.Lock()
    with pytest.raises(TypeError, match=r"cannot be sent to worker processes.*backend='thread'"):
        list(parallel.map(lambda x: lock, range(3), backend="process"))


def test_an_exception_in_fn_keeps_its_type_and_the_remote_traceback(no_leaks):
    def boom(x):
        raise KeyError(f"missing {x}")

    b = backend()
    b.start(boom)
    with b:
        err = b.submit(1).exception(10)
    assert isinstance(err, KeyError) and "missing 1" in str(err)
    assert isinstance(err.__cause__, RemoteTraceback) and "boom" in str(err.__cause__)


# ---------------------------------------------------------------------- shutdown
def test_shutdown_without_cancel_lets_tasks_finish(no_leaks):
    b = backend(num_worker=2)
    b.start(lambda s: time.sleep(s) or s)
    futures = [b.submit(0.2) for _ in range(6)]  # some still queued in the parent
    b.shutdown(cancel=False)
    assert [f.result(0) for f in futures] == [0.2] * 6
    b.shutdown()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        b.submit(1)


@pytest.mark.timeout(20)
def test_shutdown_with_cancel_kills_within_2s(no_leaks):
    b = backend(num_worker=2)
    b.start(lambda s: time.sleep(s))
    futures = [b.submit(30) for _ in range(6)]
    time.sleep(0.2)
    pids = [w.pid for w in b._workers]
    t0 = time.monotonic()
    b.shutdown(cancel=True)
    assert time.monotonic() - t0 < 2
    assert _wait_gone(pids, 0.5) == []
    for f in futures:
        assert f.done()
        with pytest.raises(CancelledError):
            f.result(0)
    b.shutdown(cancel=True)


@pytest.mark.parametrize("how", ["close", "garbage-collect", "error-in-consumer"])
def test_an_abandoned_map_stops_its_workers(how, no_leaks):
    it = parallel.map(
        lambda s: time.sleep(s), [0, 0] + [5] * 20, backend="process", num_worker=2, chunksize=1
    )
    next(it)
    if how == "close":
        it.close()
    elif how == "garbage-collect":
        del it
        gc.collect()
    else:
        with pytest.raises(ZeroDivisionError):
            for _ in it:
                1 / 0  # noqa: B018


# ---------------------------------------------------------------------- signals, parent death
_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys, time
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if our shell ignores it
    from docmill import parallel

    def work(x):
        if x < 2:  # quick: with max_tasks_per_worker=1 the next workers are replacements
            return x
        os.write(1, f"started {os.getpid()}\\n".encode())  # one write: lines never mix
        time.sleep(60)

    if __name__ == "__main__":
        for _ in parallel.map(work, range(50), backend="process", num_worker=2, chunksize=1,
                              max_tasks_per_worker=int(sys.argv[2]), start_method=sys.argv[1]):
            pass
    """
)


def _start_script(tmp_path, method: str, max_tasks: int):
    script = tmp_path / "long_map.py"
    script.write_text(_SCRIPT)
    proc = subprocess.Popen(
        [sys.executable, str(script), method, str(max_tasks)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, like a shell job
    )
    return proc, _started_pids(proc, 2)


def _started_pids(proc, n: int) -> list[int]:
    """The pids of the first ``n`` workers that wrote ``started PID`` to the script's stdout."""
    pids: list[int] = []
    while len(pids) < n:
        line = proc.stdout.readline()
        if not line:
            proc.wait()
            pytest.fail(f"the script ended early ({proc.returncode}): {proc.stderr.read()}")
        words = line.split()
        if len(words) == 2 and words[0] == "started":  # ignore anything else a worker prints
            pids.append(int(words[1]))
    return pids


@pytest.mark.timeout(30)
@pytest.mark.parametrize("method", FORK_SPAWN)
def test_ctrl_c_stops_everything_within_2s(method, tmp_path):
    proc, pids = _start_script(tmp_path, method, 1000)
    children = [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
    assert set(pids) <= set(children)
    t0 = time.monotonic()
    os.killpg(proc.pid, signal.SIGINT)  # the terminal sends Ctrl-C to the whole group
    try:
        proc.wait(3)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    took = time.monotonic() - t0
    proc.stdout.close()
    stderr = proc.stderr.read()
    proc.stderr.close()
    assert took < 3, stderr
    assert "KeyboardInterrupt" in stderr
    assert "WorkerCrashed" not in stderr  # the workers ignored the Ctrl-C
    assert _wait_gone(children, 2) == []


@pytest.mark.timeout(30)
def test_workers_die_with_a_killed_parent(tmp_path):
    # max_tasks_per_worker=1: the workers that hold the long tasks were started by the
    # collector thread, so only the parent-pid watch (not PDEATHSIG) guards them
    proc, pids = _start_script(tmp_path, "fork", 1)
    proc.kill()
    proc.wait()
    proc.stdout.close()
    proc.stderr.close()
    assert _wait_gone(pids, 3) == []


_GUARD_SCRIPT = textwrap.dedent(
    """
    import itertools, os, signal, sys, threading, time
    signal.signal(signal.SIGINT, signal.default_int_handler)
    from docmill import parallel

    def work(x):
        os.write(1, f"started {os.getpid()}\\n".encode())  # one write: two workers' lines never mix
        if sys.argv[2] == "gil":  # C code that never releases the GIL
            sum(itertools.repeat(1, 10**11))
        else:
            time.sleep(60)

    def run():
        for _ in parallel.map(work, range(4), backend="process", num_worker=2, chunksize=1,
                              start_method=sys.argv[1]):
            pass

    if __name__ == "__main__":
        if sys.argv[3] == "thread":
            t = threading.Thread(target=run)
            t.start()
            t.join()
        else:
            run()
    """
)


@pytest.mark.timeout(40)
@pytest.mark.parametrize(
    "method, busy, where",
    [
        ("fork", "gil", "thread"),  # the watch thread cannot run: the kernel must do it
        ("spawn", "gil", "thread"),
        ("forkserver", "sleep", "main"),  # the forkserver must not outlive the parent
        ("forkserver", "gil", "main"),
    ],
)
def test_busy_workers_die_with_a_killed_parent(method, busy, where, tmp_path):
    script = tmp_path / "guard.py"
    script.write_text(_GUARD_SCRIPT)
    proc = subprocess.Popen(
        [sys.executable, str(script), method, busy, where],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    pids = []
    try:
        pids = _started_pids(proc, 2)
        time.sleep(0.3)  # in the busy part
        proc.kill()
        proc.wait()
        assert _wait_gone(pids, 5) == [], f"workers outlived their parent ({method}, {busy})"
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
        proc.stdout.close()
        proc.stderr.close()


def _fork_grandchild(seconds: float) -> int:
    pid = os.fork()
    if pid == 0:  # the grandchild: keeps every descriptor the worker had
        time.sleep(seconds)
        os._exit(0)
    return pid


def _spawns_grandchild(x):
    return _fork_grandchild(20)


def _spawns_grandchild_and_dies(x):
    _fork_grandchild(20)
    os._exit(3)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("method", FORK_SPAWN)
def test_a_grandchild_holding_the_workers_pipes_stalls_nothing(method):
    t0 = time.monotonic()
    grandchildren = list(
        parallel.map(_spawns_grandchild, range(2), backend="process", num_worker=1,
                     start_method=method)
    )  # fmt: skip
    try:
        assert time.monotonic() - t0 < 8  # not the grandchildren's 20 s
        t0 = time.monotonic()
        with pytest.raises(WorkerCrashed, match="exit code 3"):
            list(
                parallel.map(_spawns_grandchild_and_dies, range(2), backend="process",
                             num_worker=1, start_method=method, timeout=2)
            )  # fmt: skip
        assert time.monotonic() - t0 < 8
    finally:
        for pid in grandchildren:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@pytest.mark.timeout(20)
def test_shutdown_leaves_the_workers_to_the_collector_that_owns_them(monkeypatch):
    # a second Ctrl-C (or a slow exit) cuts shutdown's wait for the collector short:
    # shutdown used to reap and close Process objects the collector was still waiting
    # on ("process object is closed", "list.remove(x): x not in list" in its thread)
    errors = []
    monkeypatch.setattr(threading, "excepthook", errors.append)
    b = backend(num_worker=2)
    b.start(lambda s: time.sleep(s))
    futures = [b.submit(30) for _ in range(4)]
    time.sleep(0.2)
    pids = [w.pid for w in b._workers]
    on_exit = b._on_exit

    def slow_on_exit(w):  # the collector is busy with a dead worker when shutdown goes on
        time.sleep(0.5)
        on_exit(w)

    monkeypatch.setattr(b, "_on_exit", slow_on_exit)
    monkeypatch.setattr(b, "_join_threads", lambda: time.sleep(0.2))  # a cut-short wait
    b.shutdown(cancel=True)
    for t in b._threads:
        t.join(5)
    assert not errors, [e.exc_value for e in errors]
    assert all(f.done() for f in futures)
    assert _wait_gone(pids, 2) == []


_CTRL_C_SCRIPT = textwrap.dedent(
    """
    import signal, time
    signal.signal(signal.SIGINT, signal.default_int_handler)
    from docmill import parallel

    def work(x):
        time.sleep(0.05)
        return x

    if __name__ == "__main__":
        print("go", flush=True)
        while True:
            for _ in parallel.map(work, range(10**6), backend="process", num_worker=2,
                                  chunksize=1):
                pass
    """
)


@pytest.mark.timeout(40)
def test_repeated_ctrl_c_does_not_crash_the_collector(tmp_path):
    # shutdown() used to close Process objects the collector was still reading
    script = tmp_path / "ctrl_c.py"
    script.write_text(_CTRL_C_SCRIPT)
    for _ in range(3):
        proc = subprocess.Popen(
            [sys.executable, str(script)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        assert proc.stdout.readline().strip() == "go"
        time.sleep(0.5)
        for _ in range(6):  # an impatient user
            os.killpg(proc.pid, signal.SIGINT)
            time.sleep(0.02)
        try:
            _, stderr = proc.communicate(timeout=10)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        assert "KeyboardInterrupt" in stderr
        for bad in ("Exception in thread", "process object is closed", "not in list"):
            assert bad not in stderr, stderr


_MAIN_CLASSES_SCRIPT = textwrap.dedent(
    """
    import signal, sys
    signal.signal(signal.SIGINT, signal.default_int_handler)
    import numpy as np
    from docmill import parallel

    class Result:
        def __init__(self, x):
            self.x = x
            self.big = np.full(100_000, x)  # through shared memory

    class Bad(Exception):
        pass

    def make(x):
        return Result(x)

    def fail(x):
        raise Bad(f"bad {x}")

    if __name__ == "__main__":
        method, transport = sys.argv[1], sys.argv[2]
        out = list(parallel.map(make, range(3), backend="process", num_worker=1,
                                start_method=method, transport=transport))
        assert all(type(r) is Result and r.big[0] == r.x for r in out), out
        try:
            list(parallel.map(fail, range(3), backend="process", num_worker=1,
                              start_method=method, transport=transport))
        except Bad as e:
            assert "bad 0" in str(e), e
        print("ok")
    """
)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("method", ["spawn", "forkserver"])
@pytest.mark.parametrize("transport", ["shm", "pickle"])
def test_results_and_exceptions_of_main_classes_come_back(method, transport, tmp_path):
    script = tmp_path / "main_classes.py"
    script.write_text(_MAIN_CLASSES_SCRIPT)
    out = subprocess.run(
        [sys.executable, str(script), method, transport],
        capture_output=True,
        text=True,
        timeout=50,
    )
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-3000:]


def _state_seen_by_a_thread(x):
    worker_state()["n"] = worker_state().get("n", 0) + 1
    out = []
    t = threading.Thread(target=lambda: out.append(worker_state().get("n")))
    t.start()
    t.join()
    return out[0] == worker_state()["n"]


def test_threads_started_by_func_share_the_workers_state():
    assert all(parallel.map(_state_seen_by_a_thread, range(20), backend="process", num_worker=2))
