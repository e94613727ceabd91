"""What runs inside a worker process of :mod:`docmill.parallel.process`.

The pipe protocol, in both directions one message per ``send_bytes``:

=====================  =========================================================
parent -> worker       a task payload (transport bytes), or ``b""``: stop
worker -> parent       a result payload for the oldest task it holds, or ``b""``
                       followed by a pickled control message: :data:`READY`
                       (started; sent once) or a :class:`RemoteError`
=====================  =========================================================

Payloads are never empty (a pickle has at least a header), so ``b""`` is free to
mean "control" and no framing byte has to be glued to (copied onto) a payload.
"""

from __future__ import annotations

import _thread
import contextlib
import io
import os
import pickle
import select
import signal
import sys
import time
import traceback
from time import perf_counter
from typing import Any

import cloudpickle

from docmill.errors import RemoteTraceback, add_note
from docmill.parallel._runner import provide_worker_state
from docmill.parallel._shm_codec import batched, results_were
from docmill.parallel.transport import gc_paused

__all__ = ["READY", "RemoteError", "worker_main"]

#: Sent once the function is loaded and the initializer has run: task timeouts
#: count from here, so a slow start (spawn, loading a model) is never a timeout.
READY = "ready"


class RemoteError:
    """An exception raised in a worker, made safe to send to the parent."""

    def __init__(self, exc: BaseException, kind: str, where: str) -> None:
        self.kind = kind  # 'task' (fn raised), 'result' (result unpicklable), 'init'
        self.where = where
        self.type_name = type(exc).__qualname__
        self.message = str(exc)
        self.tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        try:  # cloudpickle: exception classes defined in functions travel too
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
        if self.kind == "init":  # its own type, as on every backend
            add_note(exc, f"docmill: raised while starting {self.where}, so no task can run")
            return exc
        wrapped = pickle.PicklingError(  # 'result'
            f"the result of a task could not be pickled to send it back from "
            f"{self.where}: {self.type_name}: {self.message}. Return picklable "
            f"values (or use backend='thread')"
        )
        wrapped.__cause__ = exc
        return wrapped


def _control(conn: Any, message: Any) -> None:
    conn.send_bytes(b"")
    conn.send_bytes(pickle.dumps(message))


def worker_main(conn: Any, blob: bytes, parent_pid: int, method: str) -> None:
    """Body of a worker: load ``fn`` once, then answer tasks until "stop" or EOF."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the parent alone
    with contextlib.suppress(AttributeError, OSError, ValueError):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # blocked by the parent
    if method == "forkserver":
        _release_forkserver()
    _guard_parent(parent_pid, method)
    if method == "fork":
        _fresh_std_streams()
    _keep_freed_memory()
    state: dict = {}  # one worker per process: threads started by func share its state
    provide_worker_state(lambda: state)
    where = f"worker process {os.getpid()}"
    try:
        fn, endpoint, initializer, initargs = pickle.loads(blob)
        del blob
        if initializer is not None:
            name = getattr(initializer, "__qualname__", initializer)
            where = f"the initializer {name!r} in {where}"
            initializer(*initargs)
        _control(conn, READY)
    except BaseException as e:
        with contextlib.suppress(OSError):
            _control(conn, RemoteError(e, "init", where))
        sys.exit(1)
    loads, dumps, recv, send = endpoint.loads, endpoint.dumps, conn.recv_bytes, conn.send_bytes
    per_result = 0.0  # seconds dumps took per result, in the last chunk
    try:
        while True:
            data = recv()
            if not data:  # stop
                break
            try:
                t0 = perf_counter()
                with gc_paused():
                    task = loads(data)
                t_load = perf_counter() - t0
                result = fn(task)
            except BaseException as e:  # SystemExit too: it fails the task, not the worker
                _control(conn, RemoteError(e, "task", where))
                continue
            finally:
                del data
                task = None
            try:
                if type(result) is tuple and len(result) == 3:  # the runner's
                    # (results, seconds, error): the seconds the chunk cost here include
                    # decoding it and encoding its results (the core sizes chunks by
                    # them; for tiny items that is most of the cost)
                    outs, seconds, err = result
                    n_out = len(outs)
                    seconds += t_load + per_result * n_out
                    result = (batched(outs), seconds, err)
                    t0 = perf_counter()
                    out = dumps(result)
                    per_result = (perf_counter() - t0) / max(1, n_out)
                    del outs
                else:
                    n_out = 1
                    out = dumps(result)
            except BaseException as e:
                _control(conn, RemoteError(e, "result", where))
                continue
            finally:
                del result
            send(out)
            results_were(out, n_out)  # (whether the next inherited items are copied)
            del out
    except (EOFError, OSError):
        return  # the parent went away (killed, or it closed our pipe)
    endpoint.close()


_abandoned: list[Any] = []

# glibc hands blocks >= 128 KiB to mmap and gives them back to the kernel on free, so
# a worker that builds a large temporary per item (a decoded image, a normalized
# tensor) pays fresh page faults for every item, although the previous item's memory
# was just freed. A worker's temporaries die as soon as the result is sent, so keep
# them in the heap instead: on the seed's image example this cut the workers' minor
# page faults from ~440,000 to ~17,000 per 2,000 images and the wall time by ~30%.
# The cost: a worker's freed memory stays in its heap (up to _TRIM_THRESHOLD).
_MMAP_THRESHOLD = 32 << 20  # glibc's maximum on 64-bit
_TRIM_THRESHOLD = 512 << 20


def _libc_function(name: str) -> Any:
    """libc's ``name`` as a ctypes function, or None (not Linux, or not in this libc:
    musl has no ``mallopt``). Made at import, so in the parent: a forked worker only
    calls it (making one in a fresh child cost ~0.3 ms, its first touch of ctypes)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        return getattr(ctypes.CDLL(None, use_errno=True), name)
    except Exception:
        return None


_PRCTL = _libc_function("prctl")
_MALLOPT = _libc_function("mallopt")


def _keep_freed_memory() -> None:
    """Make glibc reuse freed large blocks instead of returning them to the kernel."""
    if _MALLOPT is not None:
        _MALLOPT(-3, _MMAP_THRESHOLD)  # -3: M_MMAP_THRESHOLD
        _MALLOPT(-1, _TRIM_THRESHOLD)  # -1: M_TRIM_THRESHOLD


def _fresh_std_streams() -> None:
    """Replace sys.stdout/stderr by new objects over the same descriptors.

    A thread of the parent may have held a stream's internal lock at the moment
    of fork, and CPython does not reset it in the child (python/cpython#84579):
    the first print, or the flush at exit, would hang forever. The old objects
    are kept (never flushed or closed) so their finalizers do not touch that lock.
    """
    for name in ("stdout", "stderr"):
        old = getattr(sys, name)
        if not isinstance(old, io.TextIOWrapper):  # e.g. Jupyter's, which handles fork itself
            continue
        try:
            new = open(  # noqa: SIM115 - lives as long as the worker
                os.dup(old.fileno()),
                "w",
                buffering=1,
                encoding=getattr(old, "encoding", None) or "utf-8",
                errors=getattr(old, "errors", None) or "backslashreplace",
            )
        except Exception:  # no real descriptor: nothing to reset
            continue
        _abandoned.append(old)
        setattr(sys, name, new)


def _release_forkserver() -> None:
    """Close this worker's copy of the forkserver's "client alive" pipe.

    The server exits when every write end of that pipe is closed, and multiprocessing
    hands one to each child it forks (so children can use the server too): while
    any worker lived, a SIGKILLed parent's server stayed up, and so did its workers.
    Without it the server goes with our parent, and its children with the server.
    """
    with contextlib.suppress(Exception):
        from multiprocessing import forkserver

        server = forkserver._forkserver  # type: ignore[attr-defined]
        fd = server._forkserver_alive_fd
        if fd is not None:
            server._forkserver_alive_fd = None
            os.close(fd)


def _guard_parent(parent_pid: int, method: str) -> None:
    """Make sure this worker never outlives its parent, even a SIGKILLed one.

    - ``PR_SET_PDEATHSIG``: the kernel SIGKILLs us when the thread that forked us
      ends. It needs nothing from this process, not even the GIL (a function busy
      in C code holding it cannot delay it). The parent forks workers only from
      threads that outlive them (its main thread or its collector). Under
      forkserver that thread is the server's, and the server exits with our
      parent (see :func:`_release_forkserver`).
    - a watch thread, for kernels without it: our parent's pid (a pidfd under
      forkserver, where our parent process is the server) polled twice a second.
    """
    if _PRCTL is not None:
        _PRCTL(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG
    if method == "forkserver":
        watch = _pid_watch(parent_pid)
    else:
        ppid = os.getppid()
        if ppid != parent_pid:
            os._exit(1)  # the parent died before we got here

        def watch() -> None:
            while os.getppid() == ppid:
                time.sleep(0.5)
            os._exit(1)

    # a bare thread: ``Thread.start`` would wait until it runs (~0.4 ms of every
    # worker's start); it lives until the worker's os._exit and is never joined
    _thread.start_new_thread(watch, ())


def _pid_watch(pid: int) -> Any:
    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):  # no pidfds (or it is gone already)
        fd = None

    def watch() -> None:
        if fd is not None:
            select.select([fd], [], [])  # readable once that process has exited
        else:
            with contextlib.suppress(OSError):
                while True:
                    os.kill(pid, 0)
                    time.sleep(0.5)
        os._exit(1)

    return watch
