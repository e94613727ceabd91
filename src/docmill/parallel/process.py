"""The process backend: docmill's own worker processes, one duplex pipe each.

Unlike ``multiprocessing.Pool`` (which hangs forever when a worker dies) the
parent always knows which tasks each worker holds, so a death, a timeout or a
Ctrl-C settles every future within seconds::

    submit(task) --> transport.dumps --> pending deque
                                              |
                                  [feeder thread]  picks the worker with the
                                              |    fewest tasks in flight (<= 2)
                                              v
      worker 1..N:  recv_bytes -> endpoint.loads -> fn(task) -> endpoint.dumps -> send_bytes
                                                                                     |
    future <-- transport.loads <-- [collector thread] <------------------------------'
                                    waits on every result pipe AND every worker's
                                    sentinel (death) with a timeout (deadlines, shutdown)

- ``fn`` (the core's chunk runner), the transport's endpoint and the initializer
  are pickled once with cloudpickle and shipped once per worker, so lambdas and
  closures work under fork, spawn and forkserver.
- Only transport payload bytes cross the pipes (the tiny protocol, with its
  "ready" and error messages, is in :mod:`._process_worker`).
- Worker death (exit, signal, OOM kill, segfault): the task it was running gets
  :class:`~docmill.WorkerCrashed` with the exit code; tasks that never started
  (queued behind it in its pipe) go to a fresh worker. Workers that keep dying
  while they start break the backend instead of looping.
- ``timeout``: counted from when the worker starts the task (never including
  the worker's own start or initializer); a task that runs too long gets
  ``TimeoutError``, its worker is terminated (SIGKILL after a short grace) and
  replaced.
- ``max_tasks_per_worker``: a worker is sent "stop" after its N-th task and
  replaced once it exits, under every start method.
- Workers ignore SIGINT (a Ctrl-C reaches only the parent, whose core calls
  ``shutdown(cancel=True)``) and die with their parent (``PR_SET_PDEATHSIG`` plus
  a thread watching the parent's pid).
- A graceful ``shutdown`` returns once every task has settled and every worker
  was told to stop; the collector then waits for their exits on its own (the
  kernel's teardown of a forked process takes milliseconds) and ends. At
  interpreter exit, workers still exiting are killed and reaped first.

Start method: ``start_method`` if given, else the one set with
``multiprocessing.set_start_method``, else ``fork`` where it exists (fast start,
nothing to import again). The first workers are forked before the backend
starts its own threads; replacements are forked from the collector thread, as
``ProcessPoolExecutor`` forks from its manager thread. If other threads of your
program hold locks your function needs while that happens, use ``'spawn'`` or
``'forkserver'``.
"""

from __future__ import annotations

import atexit
import contextlib
import multiprocessing
import multiprocessing.util  # (its exit handler is registered first: ours runs before it)
import os
import pickle
import signal
import threading
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import CancelledError, Future
from dataclasses import dataclass
from multiprocessing.connection import wait
from typing import TYPE_CHECKING, Any

import cloudpickle

from docmill._checks import check_int
from docmill.errors import StartTimeout, WorkerCrashed
from docmill.parallel._base import Backend, Capabilities, settle, start_timeout
from docmill.parallel._process_worker import READY, worker_main
from docmill.parallel._shm_codec import INHERITED, batched
from docmill.parallel.transport import Transport, gc_paused

if TYPE_CHECKING:
    from docmill.parallel._options import Options

__all__ = ["ProcessBackend", "ProcessOptions", "default_start_method"]

START_METHODS = ("fork", "spawn", "forkserver")
TRANSPORTS = ("shm", "pickle")

#: Tasks sent to one worker before its earlier ones finished: the second one waits
#: in the worker's pipe, so the worker starts it without a round trip to the parent.
_INFLIGHT_PER_WORKER = 2
#: Seconds between SIGTERM and SIGKILL for a worker whose task timed out.
_TERM_GRACE = 0.5
#: Seconds a worker told to stop may take to exit after its last task, then SIGKILL.
_EXIT_GRACE = 5.0
#: Longest wait of the collector: how late it notices a shutdown or a new deadline.
_POLL = 0.2
#: Longest the collector waits for the first task to be sent before forking the rest.
_FIRST_WAIT = 0.05
#: Workers dying right after start, with no task, this many times in a row -> broken.
_MAX_STARTUP_DEATHS = 3

_SIGNAL_HINTS = {
    signal.SIGKILL: "it was killed with SIGKILL, often by the kernel's out-of-memory "
    "killer (check `dmesg` and the memory each worker needs)",
    signal.SIGSEGV: "it crashed with a segmentation fault, usually in native code "
    "(a C extension) called by your function",
    signal.SIGBUS: "it crashed with a bus error (bad memory access in native code)",
    signal.SIGABRT: "native code aborted it (SIGABRT)",
}


#: Backends whose collector is still reaping workers after a graceful shutdown.
_REAPING: set[ProcessBackend] = set()


@atexit.register
def _stop_reaping() -> None:
    """At interpreter exit, before multiprocessing's own handler (which would join the
    same process objects the collectors are closing): kill the workers still on their
    way out (told to stop with no task left, or killed already) and let each collector
    reap them."""
    for b in list(_REAPING):
        if b._owner != os.getpid():  # a forked copy: not ours
            continue
        with b._lock:
            procs = [w.proc for w in b._workers]
        for proc in procs:
            _kill(proc)
        if b._collector is not None:
            b._collector.join(1.0)


def default_start_method() -> str:
    """The start method used when ``start_method=None`` (see the module docstring)."""
    chosen = multiprocessing.get_start_method(allow_none=True)
    if chosen:
        return chosen
    return "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"


@dataclass(frozen=True)
class ProcessOptions:
    """The process backend's own options (keywords of ``map`` and friends).

    ``start_method``: None (see the module docstring) or 'fork' / 'spawn' /
    'forkserver'. ``transport``: 'shm' (large buffers through shared memory) or
    'pickle' (everything through the pipes). ``shm_threshold``: bytes; a task or
    result whose arrays add up to at least this moves them through shm.
    """

    start_method: str | None = None
    transport: str = "shm"
    shm_threshold: int = 64 * 1024

    def __post_init__(self) -> None:
        if self.start_method is not None and self.start_method not in START_METHODS:
            raise ValueError(
                f"unknown start_method {self.start_method!r}; valid values are "
                f"{', '.join(map(repr, START_METHODS))} or None (the platform default)"
            )
        if self.transport not in TRANSPORTS:
            raise ValueError(
                f"unknown transport {self.transport!r}; valid values are "
                f"{', '.join(map(repr, TRANSPORTS))}"
            )
        check_int("shm_threshold", self.shm_threshold, 0, unit="bytes")


class _Task:
    __slots__ = ("dispatched", "future", "lease", "payload", "started", "timeout")

    def __init__(self, future: Future, payload: bytes, lease: Any, timeout: float | None):
        self.future = future
        self.payload = payload
        self.lease = lease
        self.timeout = timeout
        self.started: float | None = None  # when the worker began it (it was first in line)
        self.dispatched = False


class _Worker:
    __slots__ = (
        "assigned",
        "born",
        "conn",
        "dead",
        "eof",
        "exit_fd",
        "inflight",
        "kill_at",
        "pid",
        "proc",
        "ready",
        "sending",
        "stopping",
        "timed_out",
    )

    def __init__(self, proc: Any, conn: Any, exit_fd: Any) -> None:
        self.proc = proc
        self.conn = conn
        self.exit_fd = exit_fd  # readable once the process has exited (see _exit_handle)
        self.pid: int = proc.pid
        self.born = time.monotonic()  # start (and initializer) bounded by init_timeout
        self.inflight: deque[_Task] = deque()  # in the order the worker runs them
        self.assigned = 0  # tasks sent, for max_tasks_per_worker
        self.stopping = False  # "stop" sent or about to be: takes no more tasks
        self.timed_out: _Task | None = None
        self.kill_at: float | None = None
        self.sending = False  # the feeder is writing to conn: it closes conn if we die meanwhile
        self.dead = False
        self.eof = False
        self.ready = False  # fn loaded, initializer done: task clocks run from here


class ProcessBackend(Backend):
    """Runs ``fn(task)`` in ``options.num_workers`` worker processes (see the module docstring)."""

    name = "process"
    capabilities = Capabilities(task_overhead=200e-6, isolated=True, stops_timed_out=True)
    options_class = ProcessOptions

    def __init__(self, options: Options) -> None:
        self._options = options
        self.num_workers = options.num_workers  # type: ignore[assignment]
        own: ProcessOptions = options.backend_options
        self._own = own
        self._method = own.start_method or default_start_method()
        self._ctx = multiprocessing.get_context(self._method)
        self._token: str | None = None  # of the sequence the workers inherit (inherit())
        self._lock = threading.Lock()
        self._wakeup = threading.Condition(self._lock)  # feeder: work or a free worker
        self._workers: list[_Worker] = []
        self._pending: deque[_Task] = deque()
        self._state = "new"  # -> running -> closing -> closed
        self._cancelled = False
        self._broken: Callable[[], BaseException] | None = None
        self._startup_deaths = 0
        self._transport: Transport | None = None
        self._blob = b""
        self._threads: list[threading.Thread] = []
        self._collector: threading.Thread | None = None
        self._collected = False  # the collector has ended (every worker reaped)
        self._owner = os.getpid()
        self._first_sent = threading.Event()  # (the collector forks the rest after it)
        self._forked_all = False  # until then, one task per worker

    # ------------------------------------------------------------------ public
    def start(self, fn: Callable[[Any], Any]) -> None:
        if self._state != "new":
            raise RuntimeError("this ProcessBackend was already started; create a new one")
        from docmill.parallel import shm

        opts = self._options
        self._transport = transport = shm.make_transport(
            self._own.transport, self._own.shm_threshold
        )
        try:
            self._blob = cloudpickle.dumps(
                (fn, transport.endpoint(), opts.initializer, opts.initargs)
            )
        except Exception as e:
            transport.close()
            self._state = "closed"
            raise TypeError(
                f"the function (or initializer) cannot be sent to worker processes: "
                f"{type(e).__name__}: {e}. Make what it uses picklable, create it inside "
                f"the function or the initializer, or use backend='thread'"
            ) from e
        self._state = "running"
        # Workers die with the thread that forked them (PR_SET_PDEATHSIG, the guard that
        # needs no GIL in the worker): the main thread lives as long as the process, so
        # it forks them when it is the caller, before any thread of ours exists (the
        # children copy no running thread); otherwise the collector forks them, as it
        # forks every replacement, and it outlives every worker it starts.
        # From the main thread, only the first worker is forked here. The feeder starts
        # next, then the collector, which forks the others once the first task has
        # been sent (or after _FIRST_WAIT): forking a 100 MB parent costs ~2-3 ms a
        # worker with the GIL held, and forking them all first kept the first task in
        # the parent for ~10 ms.
        from_main = threading.current_thread() is threading.main_thread()
        started = threading.Event()
        failed: list[BaseException] = []
        if from_main:
            try:
                self._start_workers(1)
            except BaseException:
                self.shutdown(cancel=True)
                raise
            started.set()
        self._threads.append(self._thread(self._feed, "feeder"))
        self._collector = self._thread(self._collect, "collector", started, failed)
        self._threads.append(self._collector)
        started.wait()
        if failed:
            self.shutdown(cancel=True)
            raise failed[0]

    def _thread(self, target: Callable[..., None], name: str, *args: Any) -> threading.Thread:
        t = threading.Thread(target=target, args=args, name=f"docmill-process-{name}", daemon=True)
        t.start()
        return t

    def _start_workers(self, n: int | None = None) -> None:
        for _ in range(self.num_workers if n is None else n):
            w = self._start_worker()
            with self._lock:
                self._workers.append(w)

    def _start_the_rest(self) -> None:
        """The workers start() left to the collector (it forks them: it outlives them),
        once the first task has reached the first worker."""
        if self.num_workers > 1:
            self._first_sent.wait(_FIRST_WAIT)
        try:
            self._fork_the_rest()
        finally:
            with self._lock:
                self._forked_all = True
                self._wakeup.notify()  # the feeder may send a second task to each

    def _fork_the_rest(self) -> None:
        while True:
            with self._lock:
                if self._state != "running" or len(self._workers) >= self.num_workers:
                    return
            try:
                w = self._start_worker()
            except BaseException as e:  # the first worker runs on; say why there are fewer
                with self._lock:
                    alive = len(self._workers)
                if not alive:
                    self._break(lambda e=e: e)
                warnings.warn(
                    f"docmill: the process backend started {alive} of {self.num_workers} "
                    f"workers ({type(e).__name__}: {e})",
                    RuntimeWarning,
                    stacklevel=1,
                )
                return
            with self._lock:
                self._workers.append(w)
                self._wakeup.notify()  # the feeder may give it queued tasks

    def inherit(self, seq: Any) -> str | None:
        """Called before :meth:`start`: workers forked from now on hold ``seq`` (a list),
        so a task may be a :class:`Span` of it; the token to make Spans with,
        or None when workers are not forked (spawn / forkserver start from scratch)."""
        if self._method != "fork":
            return None
        self._token = f"{os.getpid()}-{id(self)}"
        INHERITED[self._token] = (os.getpid(), seq)
        return self._token

    def submit(self, task: Any, timeout: float | None = None) -> Future:
        future: Future = Future()
        if self._state != "running":
            raise RuntimeError(f"cannot submit to a process backend that is {self._state}")
        try:
            payload, lease = self._transport.dumps(batched(task))  # type: ignore[union-attr]
        except Exception as e:  # an unpicklable task fails its own future only
            future.set_exception(e)
            return future
        with self._lock:
            broken = self._broken
            if broken is None and self._state == "running":
                self._pending.append(_Task(future, payload, lease, timeout))
                self._wakeup.notify()
                return future
        self._transport.release(lease)  # type: ignore[union-attr]
        future.set_exception(
            broken() if broken else RuntimeError("the process backend was shut down")
        )
        return future

    def shutdown(self, cancel: bool = False) -> None:
        with self._lock:
            if self._state in ("new", "closed"):
                if self._transport is not None:
                    self._transport.close()
                self._state = "closed"
                INHERITED.pop(self._token, None)
                return
            self._state = "closing"
            self._first_sent.set()  # (the collector need not wait for a first task)
            doomed: list[_Task] = []
            victims: list[Any] = []
            if cancel and not self._cancelled:
                self._cancelled = True
                doomed = list(self._pending)
                self._pending.clear()
                for w in self._workers:
                    doomed.extend(w.inflight)
                    w.inflight.clear()
                    victims.append(w.proc)
            self._wakeup.notify_all()
        for proc in victims:
            _kill(proc)
        for t in doomed:
            self._finish(t, CancelledError("the process backend was shut down (cancel=True)"))
        try:
            self._join_threads()
        except BaseException:  # Ctrl-C while waiting for tasks to finish: kill instead
            if not cancel:
                self.shutdown(cancel=True)
            raise
        finally:
            self._finish_shutdown()

    def _finish_shutdown(self) -> None:
        INHERITED.pop(self._token, None)  # (forked workers keep their own copy)
        # The collector owns the workers (it alone appends, reaps and closes them); only
        # once it has ended may anything be left to clean here. While it runs, it reaps
        # them itself: after a graceful end (every task settled, the feeder ended) they
        # are on their way out; otherwise (a second Ctrl-C cut our wait short) they are
        # killed here. Either way the exit hook waits for it (see _stop_reaping).
        me = threading.current_thread()
        collector = self._collector
        reaping = collector is not None and collector is not me and collector.is_alive()
        busy = any(t.is_alive() for t in self._threads if t not in (me, collector))
        if reaping or busy:
            graceful = reaping and not busy and not self._cancelled
            with self._lock:
                procs = [] if graceful else [w.proc for w in self._workers]
                self._state = "closed"
                if collector is not None and not self._collected:
                    _REAPING.add(self)  # (the collector takes it out when it ends)
            for proc in procs:
                _kill(proc)
            self._transport.close()  # type: ignore[union-attr]
            return
        with self._lock:
            leftovers, self._workers = self._workers, []
            leftovers_pending = list(self._pending)
            self._pending.clear()
            self._state = "closed"
        for w in leftovers:  # only if the collector failed (it reaps every worker it has)
            _kill(w.proc)
            self._reap(w)
        for t in leftovers_pending:
            self._finish(t, RuntimeError("the process backend was shut down before this task ran"))
        self._transport.close()  # type: ignore[union-attr]

    # ------------------------------------------------------------------ workers
    def _start_worker(self) -> _Worker:
        parent_conn, child_conn = self._ctx.Pipe(duplex=True)
        proc = self._ctx.Process(
            target=worker_main,
            args=(child_conn, self._blob, os.getpid(), self._method),
            name="docmill-process-worker",
            daemon=True,  # multiprocessing's exit handler stops any we failed to stop
        )
        try:
            with _sigint_blocked():  # the child must not die of a Ctrl-C before ignoring it
                proc.start()
        except BaseException:
            parent_conn.close()
            raise
        finally:
            child_conn.close()  # else the parent keeps the pipe open and never sees EOF
        return _Worker(proc, parent_conn, _exit_handle(proc, self._method))

    def _reap(self, w: _Worker) -> None:
        w.proc.join(1.0)
        if w.exit_fd is not None and w.exit_fd != w.proc.sentinel:  # a pidfd of ours
            with contextlib.suppress(OSError):
                os.close(w.exit_fd)
            w.exit_fd = None
        with self._lock:
            w.dead = True
            close_now = not w.sending  # else the feeder closes it when its send fails
        if close_now:
            w.conn.close()
        with contextlib.suppress(ValueError):  # still running after SIGKILL: leave it
            w.proc.close()

    # ------------------------------------------------------------------ feeder thread
    def _feed(self) -> None:
        while True:
            job = self._next_job()
            if job is None:
                return
            w, task, stop = job
            if w is None:  # shutting down, nothing queued: workers stop after their tasks
                for x in stop:
                    self._send(x, None, stop=True)
            else:
                self._send(w, task.payload, stop=stop)

    def _next_job(self) -> tuple[Any, Any, Any] | None:
        """Wait for (worker, task, stop-after-it) to send, or (None, None, workers-to-stop)
        during a shutdown; None once cancelled or every worker is gone."""
        with self._lock:
            while True:
                if self._cancelled:
                    return None
                w = self._pick_worker() if self._pending else None
                if w is not None:
                    task = self._pending.popleft()
                    if not task.dispatched and not task.future.set_running_or_notify_cancel():
                        self._transport.release(task.lease)  # type: ignore[union-attr]
                        continue  # the caller cancelled it before it was sent
                    task.dispatched = True
                    if not w.inflight and w.ready:
                        task.started = time.monotonic()
                    w.inflight.append(task)
                    w.assigned += 1
                    cap = self._options.max_tasks_per_worker
                    retire = cap is not None and w.assigned >= cap
                    w.stopping = w.stopping or retire
                    w.sending = True
                    return w, task, retire
                if not self._pending and self._state != "running":
                    stops = [x for x in self._workers if not x.stopping]
                    for x in stops:
                        x.stopping = x.sending = True
                        self._exit_soon(x)
                    if stops:
                        return None, None, stops
                    if not any(x.inflight for x in self._workers):
                        # Every task has settled and every worker was told to stop:
                        # nothing can be queued again (only a task in flight is, when
                        # its worker dies), so the map is over. The collector waits
                        # for the exits on its own (see shutdown).
                        return None
                self._wakeup.wait()

    def _pick_worker(self) -> _Worker | None:
        # one task each while the collector still forks the others: a second one would
        # wait behind the first while a worker that is about to start has none
        cap = _INFLIGHT_PER_WORKER if self._forked_all else 1
        best = None
        for w in self._workers:
            n = len(w.inflight)
            free = not w.stopping and not w.dead and n < cap
            if free and (best is None or n < len(best.inflight)):
                best = w
        return best

    def _send(self, w: _Worker, payload: bytes | None, stop: bool) -> None:
        try:
            if payload is not None:
                w.conn.send_bytes(payload)
                self._first_sent.set()
            if stop:
                w.conn.send_bytes(b"")
        except OSError:
            pass  # died mid-send: the collector sees its sentinel and settles its tasks
        with self._lock:
            w.sending = False
            close_now = w.dead
        if close_now:
            w.conn.close()

    # ------------------------------------------------------------------ collector thread
    def _collect(self, started: threading.Event, failed: list[BaseException]) -> None:
        try:
            self._collect_until_done(started, failed)
        finally:
            with self._lock:  # (under the lock: shutdown adds us to _REAPING only before)
                self._collected = True
            _REAPING.discard(self)

    def _collect_until_done(self, started: threading.Event, failed: list[BaseException]) -> None:
        if not started.is_set():  # start() was called from another thread than main
            try:
                self._start_workers()
                self._forked_all = True
            except BaseException as e:
                failed.append(e)
            finally:
                started.set()
            if failed:
                return
        else:
            self._start_the_rest()
        try:
            while True:
                with self._lock:
                    if self._state != "running" and not self._workers:
                        return
                    waitables: dict[Any, _Worker] = {}
                    for w in self._workers:
                        waitables[w.exit_fd] = w
                        if not w.eof:
                            waitables[w.conn] = w
                    timeout = self._next_wakeup()
                exited = []
                for obj in wait(list(waitables), timeout):
                    w = waitables[obj]
                    if obj is w.conn:
                        self._receive(w)
                    else:
                        exited.append(w)
                for w in exited:
                    self._on_exit(w)
                self._check_deadlines()
        except BaseException as e:  # a bug here must fail the futures, never hang them
            msg = f"the process backend's collector failed: {e!r}"
            self._break(lambda: RuntimeError(msg))
            with self._lock:
                left, self._workers = self._workers, []
            for w in left:
                _kill(w.proc)
                self._reap(w)
            raise

    def _receive(self, w: _Worker) -> None:
        try:
            data = w.conn.recv_bytes()
            control = pickle.loads(w.conn.recv_bytes()) if not data else None
        except (EOFError, OSError):
            w.eof = True  # died, possibly mid-message: its sentinel follows
            return
        if control == READY:
            with self._lock:
                w.ready = True
                if w.inflight:
                    w.inflight[0].started = time.monotonic()
            return
        if control is not None and control.kind == "init":
            self._break(control.rebuild)
            return
        with self._lock:
            if not w.inflight:  # settled by shutdown(cancel=True) meanwhile
                return
            task = w.inflight.popleft()
            self._startup_deaths = 0
            if w.inflight:
                w.inflight[0].started = time.monotonic()
            self._exit_soon(w)
            if self._pending or self._state != "running":  # (closing: maybe the last one)
                self._wakeup.notify()
        if control is not None:
            self._finish(task, control.rebuild())
            return
        try:
            t0 = time.perf_counter()
            with gc_paused():
                result = self._transport.loads(data)  # type: ignore[union-attr]
            if type(result) is tuple and len(result) == 3 and result[0]:  # the runner's
                self.caller_cost = (time.perf_counter() - t0) / len(result[0])
        except BaseException as e:
            self._finish(task, e)
        else:
            self._finish(task, None, result)

    def _on_exit(self, w: _Worker) -> None:
        while not w.eof and w.conn.poll():  # results it sent before dying still count
            self._receive(w)
        w.proc.join()  # it has exited: this only collects the exit status
        code = w.proc.exitcode
        crashed = _crash_message(w.pid, code, w.ready)
        failed: list[tuple[_Task, BaseException]] = []
        with self._lock:
            if w in self._workers:
                self._workers.remove(w)
            tasks = list(w.inflight)
            w.inflight.clear()
            head = tasks[0] if tasks else None
            if head is not None and head is w.timed_out:
                limit = f"{head.timeout:g}"
                failed.append((tasks.pop(0), _timeout_error(limit, w.pid)))
            elif head is not None and w.ready and w.timed_out is None:
                failed.append((tasks.pop(0), WorkerCrashed(crashed, exitcode=code)))
            # The rest never started: queued behind the head, sent before the worker
            # was ready, or behind a slow task that ended just before our kill.
            usable = not self._cancelled and self._broken is None
            if usable:
                self._pending.extendleft(reversed(tasks))
            else:
                failed.extend((t, WorkerCrashed(crashed, exitcode=code)) for t in tasks)
            if usable and not w.ready:
                self._startup_deaths += 1
            keeps_dying = self._startup_deaths >= _MAX_STARTUP_DEATHS
            replace = usable and (self._state == "running" or bool(self._pending))
            self._wakeup.notify()  # the feeder stops once every worker is gone
        self._reap(w)
        for task, exc in failed:
            self._finish(task, exc)
        if keeps_dying:
            msg = f"worker processes keep dying while they start; the last one: {crashed}"
            self._break(lambda: WorkerCrashed(msg, exitcode=code))
        elif replace:
            self._replace()

    def _replace(self) -> None:
        try:
            new = self._start_worker()
        except Exception as e:
            msg = f"could not start a worker process: {e!r}"
            self._break(lambda: RuntimeError(msg))
            return
        with self._lock:
            self._workers.append(new)  # the collector reaps it whatever happens next
            # cancelled meanwhile, or shut down with nothing left to run: the feeder
            # may already have stopped (it does once it saw no worker), and none would
            # ever tell this one to stop
            doomed = (
                self._cancelled
                or self._broken is not None
                or (self._state != "running" and not self._pending)
            )
            self._wakeup.notify()
        if doomed:
            _kill(new.proc)

    def _exit_soon(self, w: _Worker) -> None:
        """(Under the lock.) A worker told to stop that holds no task must exit soon:
        one that hangs on its way out (say, on a lock copied by fork) gets killed."""
        if w.stopping and not w.inflight and w.kill_at is None:
            w.kill_at = time.monotonic() + _EXIT_GRACE

    def _next_wakeup(self) -> float:
        now, soonest = time.monotonic(), _POLL
        for w in self._workers:
            if not w.ready and w.kill_at is None:
                soonest = min(soonest, w.born + self._options.init_timeout - now)  # type: ignore[operator]
            if w.kill_at is not None:
                soonest = min(soonest, w.kill_at - now)
            elif w.inflight:
                head = w.inflight[0]
                if head.timeout is not None and head.started is not None:
                    soonest = min(soonest, head.started + head.timeout - now)
        return max(soonest, 0.0)

    def _check_deadlines(self) -> None:
        now = time.monotonic()
        limit: float = self._options.init_timeout  # type: ignore[assignment]
        with self._lock:
            stuck = [
                w
                for w in self._workers
                if not w.ready and w.kill_at is None and now - w.born > limit
            ]
        if stuck:
            error = start_timeout(f"worker process {stuck[0].pid}", self._options)
            self._break(lambda: StartTimeout(str(error)))
        with self._lock:
            for w in self._workers:
                if w.kill_at is not None:
                    if now >= w.kill_at:
                        w.kill_at = float("inf")  # once
                        _kill(w.proc)
                    continue
                head = w.inflight[0] if w.inflight else None
                if (
                    head is not None
                    and head.timeout is not None
                    and head.started is not None
                    and now - head.started > head.timeout
                ):
                    w.timed_out, w.stopping = head, True
                    w.kill_at = now + _TERM_GRACE
                    with contextlib.suppress(Exception):
                        w.proc.terminate()

    # ------------------------------------------------------------------ settling futures
    def _finish(self, task: _Task, exc: BaseException | None, result: Any = None) -> None:
        """Settle a task's future (never under the lock: its callbacks may submit)."""
        self._transport.release(task.lease)  # type: ignore[union-attr]
        if not task.dispatched and isinstance(exc, CancelledError):
            task.future.cancel()
        else:
            settle(task.future, result, exc)  # unless cancelled or settled by shutdown meanwhile

    def _break(self, make_exc: Callable[[], BaseException]) -> None:
        """No task can run any more (initializer failed, workers keep dying): fail
        every task now and every later submit at once."""
        with self._lock:
            if self._broken is not None:
                return
            self._broken = make_exc
            doomed = list(self._pending)
            self._pending.clear()
            for w in self._workers:
                doomed.extend(w.inflight)
                w.inflight.clear()
                w.stopping = True
            procs = [w.proc for w in self._workers]
        for proc in procs:
            _kill(proc)
        for t in doomed:
            self._finish(t, make_exc())

    def _join_threads(self) -> None:
        # cancel: the workers are dead, so this takes milliseconds (bounded all the
        # same); otherwise the tasks in flight finish first: the feeder ends once every
        # task has settled and every worker was told to stop. The collector is not
        # waited for then: what is left to it is each worker's exit, and the kernel
        # takes ~1-3 ms to tear down a forked process (the same for a SIGKILL), a fixed
        # cost of every map that the caller need not wait for. It reaps them, closes
        # their pipes and ends on its own (a daemon thread; workers it forked die with
        # it, see PR_SET_PDEATHSIG, so it outlives them).
        end = time.monotonic() + 2.0
        for t in self._threads:
            if t is threading.current_thread() or (t is self._collector and not self._cancelled):
                continue
            t.join(max(0.0, end - time.monotonic()) if self._cancelled else None)


def _exit_handle(proc: Any, method: str) -> Any:
    """What the collector waits on to learn that ``proc`` exited.

    Not ``proc.sentinel`` under fork and spawn: that is a pipe whose write end the
    worker holds, and any process the user's function forks inherits it, so a
    grandchild that lives on would hide the worker's exit (and hold up the end of the
    map) for as long as it lives. A pidfd is about the process itself. Under
    forkserver the sentinel is the server's pipe, which no grandchild holds.
    """
    if method != "forkserver" and hasattr(os, "pidfd_open"):
        with contextlib.suppress(OSError):  # Linux < 5.3
            return os.pidfd_open(proc.pid)
    return proc.sentinel


def _kill(proc: Any) -> None:
    with contextlib.suppress(Exception):  # already reaped / closed
        proc.kill()


@contextlib.contextmanager
def _sigint_blocked() -> Iterator[None]:
    try:
        old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    except (AttributeError, OSError, ValueError):
        yield
        return
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _timeout_error(limit: str, pid: int) -> TimeoutError:
    return TimeoutError(
        f"a task ran longer than its timeout of {limit} s; "
        f"its worker process {pid} was killed and replaced"
    )


def _crash_message(pid: int, code: int | None, ready: bool = True) -> str:
    when = "" if ready else " while starting (loading the function or in the initializer)"
    if code is None:
        return f"worker process {pid} died{when} (exit code unknown)"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = _SIGNAL_HINTS.get(-code, f"it was killed by {name}")
        return f"worker process {pid} died{when} with exit code {code} ({name}): {hint}"
    return (
        f"worker process {pid} died{when} with exit code {code} (os._exit or sys.exit "
        f"called from native code, or a fatal interpreter error)"
    )
