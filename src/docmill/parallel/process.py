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
- Only transport payload bytes cross the pipes. On the wire a non-empty message
  is a payload; an empty message means "stop" (parent -> worker) or "the next
  message is a pickled error" (worker -> parent), so no framing copy is needed.
- Worker death (exit, signal, OOM kill, segfault): the task it was running gets
  :class:`~docmill.WorkerCrashed` with the exit code; tasks queued behind it in
  its pipe never started and go to a fresh worker.
- ``timeout``: a task that runs too long gets ``TimeoutError``; its worker is
  terminated (killed after a short grace) and replaced.
- ``max_tasks_per_worker``: a worker is sent "stop" after its N-th task and
  replaced once it exits, under every start method.
- Workers ignore SIGINT (a Ctrl-C reaches only the parent, whose core calls
  ``shutdown(cancel=True)``) and die with their parent (``PR_SET_PDEATHSIG`` plus
  a thread watching the parent's pid).

Start method: ``start_method`` if given, else the one set with
``multiprocessing.set_start_method``, else ``fork`` where it exists (fast start,
nothing to import again). The first workers are forked before the backend
starts its own threads; replacements are forked from the collector thread, as
``ProcessPoolExecutor`` forks from its manager thread. If other threads of your
program hold locks your function needs while that happens, use ``'spawn'`` or
``'forkserver'``.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import pickle
import signal
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import CancelledError, Future, InvalidStateError
from multiprocessing.connection import wait
from typing import Any

import cloudpickle

from docmill.errors import RemoteTraceback, WorkerCrashed
from docmill.parallel._base import Backend
from docmill.parallel._options import Options
from docmill.parallel.transport import Transport

__all__ = ["ProcessBackend", "default_start_method", "make_transport"]

#: Tasks sent to one worker before its earlier ones finished: the second one waits
#: in the worker's pipe, so the worker starts it without a round trip to the parent.
_INFLIGHT_PER_WORKER = 2
#: Seconds between SIGTERM and SIGKILL for a worker whose task timed out.
_TERM_GRACE = 0.5
#: Longest wait of the collector: how late it notices a shutdown or a new deadline.
_POLL = 0.2
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


def default_start_method() -> str:
    """The start method used when ``start_method=None`` (see the module docstring)."""
    chosen = multiprocessing.get_start_method(allow_none=True)
    if chosen:
        return chosen
    return "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"


def make_transport(options: Options) -> Transport:
    """The transport for one map (the one place that chooses it): shared memory for
    large buffers, or everything through the pipes with ``transport='pickle'``."""
    from docmill.parallel import shm

    return shm.make_transport(options.transport, options.shm_threshold)


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
        "conn",
        "dead",
        "done",
        "eof",
        "inflight",
        "kill_at",
        "pid",
        "proc",
        "sending",
        "stopping",
        "timed_out",
    )

    def __init__(self, proc: Any, conn: Any) -> None:
        self.proc = proc
        self.conn = conn
        self.pid: int = proc.pid
        self.inflight: deque[_Task] = deque()  # in the order the worker runs them
        self.assigned = 0  # tasks sent, for max_tasks_per_worker
        self.done = 0
        self.stopping = False  # "stop" sent or about to be: takes no more tasks
        self.timed_out: _Task | None = None
        self.kill_at: float | None = None
        self.sending = False  # the feeder is writing to conn: it closes conn if we die meanwhile
        self.dead = False
        self.eof = False


class ProcessBackend(Backend):
    """Runs ``fn(task)`` in ``options.num_worker`` worker processes (see the module docstring)."""

    name = "process"

    def __init__(self, options: Options) -> None:
        self._options = options
        self.num_workers = options.num_worker or 1
        self._method = options.start_method or default_start_method()
        self._ctx = multiprocessing.get_context(self._method)
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

    # ------------------------------------------------------------------ public
    def start(self, fn: Callable[[Any], Any]) -> None:
        if self._state != "new":
            raise RuntimeError("this ProcessBackend was already started; create a new one")
        opts = self._options
        self._transport = transport = make_transport(opts)
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
        try:
            for _ in range(self.num_workers):
                self._workers.append(self._start_worker())
        except BaseException:
            self._state = "running"
            self.shutdown(cancel=True)
            raise
        self._state = "running"
        # Threads only after the first forks, so those children copy no running thread.
        for target, name in ((self._collect, "collector"), (self._feed, "feeder")):
            t = threading.Thread(target=target, name=f"docmill-process-{name}", daemon=True)
            t.start()
            self._threads.append(t)

    def submit(self, task: Any, timeout: float | None = None) -> Future:
        future: Future = Future()
        if self._state != "running":
            raise RuntimeError(f"cannot submit to a process backend that is {self._state}")
        try:
            payload, lease = self._transport.dumps(task)  # type: ignore[union-attr]
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
                return
            self._state = "closing"
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
        with self._lock:
            leftovers, self._workers = self._workers, []
            leftovers_pending = list(self._pending)
            self._pending.clear()
            self._state = "closed"
        for w in leftovers:  # only if a thread did not finish in time (should not happen)
            _kill(w.proc)
            self._reap(w)
        for t in leftovers_pending:
            self._finish(t, RuntimeError("the process backend was shut down before this task ran"))
        self._transport.close()  # type: ignore[union-attr]

    # ------------------------------------------------------------------ workers
    def _start_worker(self) -> _Worker:
        parent_conn, child_conn = self._ctx.Pipe(duplex=True)
        in_main = threading.current_thread() is threading.main_thread()
        proc = self._ctx.Process(
            target=_worker_main,
            args=(child_conn, self._blob, os.getpid(), self._method, in_main),
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
        return _Worker(proc, parent_conn)

    def _reap(self, w: _Worker) -> None:
        w.proc.join(1.0)
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
            if w is None:  # closing and nothing left: every worker stops after its tasks
                for x in stop:
                    self._send(x, None, stop=True)
                return
            self._send(w, task.payload, stop=stop)

    def _next_job(self) -> tuple[Any, Any, Any] | None:
        """Wait for (worker, task, stop-after-it) to send, or (None, None, workers-to-stop)
        at the end of a shutdown; None once cancelled."""
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
                    if not w.inflight:
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
                    return None, None, stops
                self._wakeup.wait()

    def _pick_worker(self) -> _Worker | None:
        best = None
        for w in self._workers:
            n = len(w.inflight)
            free = not w.stopping and not w.dead and n < _INFLIGHT_PER_WORKER
            if free and (best is None or n < len(best.inflight)):
                best = w
        return best

    def _send(self, w: _Worker, payload: bytes | None, stop: bool) -> None:
        try:
            if payload is not None:
                w.conn.send_bytes(payload)
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
    def _collect(self) -> None:
        try:
            while True:
                with self._lock:
                    if self._state != "running" and not self._workers:
                        return
                    waitables: dict[Any, _Worker] = {}
                    for w in self._workers:
                        waitables[w.proc.sentinel] = w
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
            error = pickle.loads(w.conn.recv_bytes()) if not data else None
        except (EOFError, OSError):
            w.eof = True  # died, possibly mid-message: its sentinel follows
            return
        if error is not None and error.kind == "init":
            self._break(error.rebuild)
            return
        with self._lock:
            if not w.inflight:  # settled by shutdown(cancel=True) meanwhile
                return
            task = w.inflight.popleft()
            w.done += 1
            self._startup_deaths = 0
            if w.inflight:
                w.inflight[0].started = time.monotonic()
            if self._pending:
                self._wakeup.notify()
        if error is not None:
            self._finish(task, error.rebuild())
            return
        try:
            result = self._transport.loads(data)  # type: ignore[union-attr]
        except BaseException as e:
            self._finish(task, e)
        else:
            self._finish(task, None, result)

    def _on_exit(self, w: _Worker) -> None:
        while not w.eof and w.conn.poll():  # results it sent before dying still count
            self._receive(w)
        w.proc.join(1.0)
        code = w.proc.exitcode
        with self._lock:
            self._workers.remove(w)
            tasks = list(w.inflight)
            w.inflight.clear()
            running = self._state == "running" and self._broken is None
            head, queued = (tasks[0], tasks[1:]) if tasks else (None, [])
            if head is not None and w.timed_out not in (None, head):
                head, queued = None, tasks  # its slow task ended just before our kill
            if running:  # the ones queued behind the head never started: run them elsewhere
                self._pending.extendleft(reversed(queued))
                queued = []
            unexpected = head is None and not w.stopping and code != 0 and w.done == 0
            self._startup_deaths += 1 if unexpected else 0
            keeps_dying = self._startup_deaths >= _MAX_STARTUP_DEATHS
            replace = (running or (self._pending and not self._cancelled)) and not keeps_dying
        self._reap(w)
        if head is not None:
            if w.timed_out is head:
                exc: BaseException = TimeoutError(
                    f"a task ran longer than its timeout of {head.timeout:g} s; "
                    f"its worker process {w.pid} was killed and replaced"
                )
            else:
                exc = WorkerCrashed(_crash_message(w.pid, code), exitcode=code)
            self._finish(head, exc)
        for t in queued:
            self._finish(t, WorkerCrashed(_crash_message(w.pid, code), exitcode=code))
        if keeps_dying:
            msg = (
                f"worker processes keep dying right after they start; {_crash_message(w.pid, code)}"
            )
            self._break(lambda: WorkerCrashed(msg, exitcode=code))
        elif replace:
            try:
                new = self._start_worker()
            except Exception as e:
                msg = f"could not start a worker process: {e!r}"
                self._break(lambda: RuntimeError(msg))
                return
            with self._lock:
                self._workers.append(new)  # the collector reaps it whatever happens next
                doomed = self._cancelled or self._broken is not None
                # a shutdown began meanwhile and the feeder may have sent its stops already
                stop = not doomed and self._state != "running" and not self._pending
                if stop:
                    new.stopping = new.sending = True
                self._wakeup.notify()
            if doomed:
                _kill(new.proc)
            elif stop:
                self._send(new, None, stop=True)

    def _next_wakeup(self) -> float:
        now, soonest = time.monotonic(), _POLL
        for w in self._workers:
            if w.kill_at is not None:
                soonest = min(soonest, w.kill_at - now)
            elif w.inflight:
                head = w.inflight[0]
                if head.timeout is not None and head.started is not None:
                    soonest = min(soonest, head.started + head.timeout - now)
        return max(soonest, 0.0)

    def _check_deadlines(self) -> None:
        now = time.monotonic()
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
        future = task.future
        try:
            if not task.dispatched and exc is not None and isinstance(exc, CancelledError):
                future.cancel()
            elif exc is not None:
                future.set_exception(exc)
            else:
                future.set_result(result)
        except InvalidStateError:
            pass  # cancelled or settled by shutdown meanwhile

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
        me = threading.current_thread()
        for t in self._threads:
            if t is not me:
                # cancel: workers are dead, so this is quick; else tasks in flight finish first
                t.join(5.0 if self._cancelled else None)


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


def _crash_message(pid: int, code: int | None) -> str:
    if code is None:
        return f"worker process {pid} died (exit code unknown)"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = _SIGNAL_HINTS.get(-code, f"it was killed by {name}")
        return f"worker process {pid} died with exit code {code} ({name}): {hint}"
    return (
        f"worker process {pid} died with exit code {code} (os._exit or sys.exit called "
        f"from native code, or a fatal interpreter error)"
    )


# ---------------------------------------------------------------------- the worker side
class _RemoteError:
    """An exception raised in a worker, made safe to send to the parent."""

    def __init__(self, exc: BaseException, kind: str, where: str) -> None:
        self.kind = kind  # 'task' (fn raised), 'result' (result unpicklable), 'init'
        self.where = where
        self.type_name = type(exc).__qualname__
        self.message = str(exc)
        self.tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        try:
            self.exc_bytes: bytes | None = cloudpickle.dumps(exc)
            pickle.loads(self.exc_bytes)  # exceptions with odd __init__s fail only here
        except Exception:
            self.exc_bytes = None

    def _original(self) -> BaseException:
        exc = None
        if self.exc_bytes is not None:
            with contextlib.suppress(Exception):
                exc = pickle.loads(self.exc_bytes)
        if not isinstance(exc, BaseException):
            exc = RuntimeError(f"{self.type_name}: {self.message}")
        exc.__cause__ = RemoteTraceback(self.tb)
        return exc

    def rebuild(self) -> BaseException:
        """A fresh exception for the parent, with the worker's traceback as its cause."""
        exc = self._original()
        if self.kind == "task":
            return exc
        if self.kind == "result":
            wrapped: BaseException = pickle.PicklingError(
                f"the result of a task could not be pickled to send it back from "
                f"{self.where}: {self.type_name}: {self.message}. Return picklable "
                f"values (or use backend='thread')"
            )
        else:
            wrapped = RuntimeError(
                f"starting {self.where} failed, so no task can run: {self.type_name}: "
                f"{self.message} (its traceback is shown above)"
            )
        wrapped.__cause__ = exc
        return wrapped


def _send_error(conn: Any, exc: BaseException, kind: str, where: str) -> None:
    conn.send_bytes(b"")
    conn.send_bytes(pickle.dumps(_RemoteError(exc, kind, where)))


def _worker_main(conn: Any, blob: bytes, parent_pid: int, method: str, in_main: bool) -> None:
    """Body of a worker process: load fn once, then answer tasks until "stop" or EOF."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with contextlib.suppress(AttributeError, OSError, ValueError):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    # forkserver children are the server's; the server exits when the parent does
    _guard_parent(None if method == "forkserver" else parent_pid, in_main or method == "forkserver")
    where = f"worker process {os.getpid()}"
    try:
        fn, endpoint, initializer, initargs = pickle.loads(blob)
        del blob
        if initializer is not None:
            where = (
                f"the initializer {getattr(initializer, '__qualname__', initializer)!r} in {where}"
            )
            initializer(*initargs)
    except BaseException as e:
        with contextlib.suppress(OSError):
            _send_error(conn, e, "init", where)
        sys.exit(1)
    loads, dumps, recv, send = endpoint.loads, endpoint.dumps, conn.recv_bytes, conn.send_bytes
    try:
        while True:
            data = recv()
            if not data:  # "stop"
                break
            try:
                result = fn(loads(data))
            except BaseException as e:  # SystemExit too: it fails the task, not the worker
                _send_error(conn, e, "task", where)
                continue
            finally:
                del data
            try:
                out = dumps(result)
            except BaseException as e:
                _send_error(conn, e, "result", where)
                continue
            finally:
                del result
            send(out)
            del out
    except (EOFError, OSError):
        return  # the parent went away (killed, or it closed our pipe)
    endpoint.close()


def _guard_parent(parent_pid: int | None, use_pdeathsig: bool) -> None:
    """Make sure this worker never outlives its parent."""
    if use_pdeathsig and sys.platform.startswith("linux"):
        # PR_SET_PDEATHSIG fires when the *thread* that started us exits, so it is
        # only used when that was the main thread (or the forkserver's).
        with contextlib.suppress(Exception):
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    ppid = os.getppid()
    if parent_pid is not None and ppid != parent_pid:
        os._exit(1)  # the parent died before we got here

    def watch() -> None:
        while os.getppid() == ppid:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="docmill-parent-watch", daemon=True).start()
