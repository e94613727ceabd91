"""Every option of :func:`docmill.parallel.map` and friends, validated once.

:class:`Options` is built from the caller's keywords (:meth:`Options.from_kwargs`)
before any thread or process starts; every bad value raises ``ValueError`` or
``TypeError`` naming the value and how to fix it. Backends and the streaming core
read the resolved fields and never re-check them.

Fields (resolved values after validation):

==========================  ==================================================
``backend``                 registered backend name ('serial', 'thread',
                            'process', ...); ``'pool'`` when ``pool`` is given
``num_worker``              int >= 1 (``None`` -> the cores this process may
                            use, ``os.sched_getaffinity``; with ``pool`` ->
                            the pool's size)
``chunksize``               int >= 1 or ``None`` (adaptive, see ``_core``)
``window``                  int >= 1 or ``None`` (2 x num_worker x chunksize)
``timeout``                 seconds (> 0) per item / batch, or ``None``
``ordered``                 bool: results in input order, else as completed
``initializer, initargs``   run ``initializer(*initargs)`` once per worker
``init_timeout``            seconds (> 0) a worker may take to start (load
                            ``func``, run the initializer); ``None`` -> 600
``max_tasks_per_worker``    int >= 1 or ``None``: replace a worker after that
                            many tasks (a task is one chunk)
``start_method``            None or 'fork' / 'spawn' / 'forkserver' (process)
``transport``               'shm' (shared memory for large buffers) or 'pickle'
``shm_threshold``           bytes; a task / result whose arrays add up to at
                            least this moves them through shm
``show_progress``           bool: draw a tqdm bar
``pool``                    a user's ``multiprocessing.pool.Pool`` /
                            ``ThreadPool`` or ``concurrent.futures.Executor``,
                            used as is and never closed
==========================  ==================================================

Process-only options (``start_method``, ``transport``, ``shm_threshold``) are
accepted and ignored by the other backends.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["BACKENDS", "Options", "usable_cores"]

#: Registry of backend names -> ``"module:Class"`` (imported lazily, on first
#: use). A new engine (dask, ray) is one module with a ``Backend`` subclass whose
#: constructor takes an :class:`Options`, plus one line here.
BACKENDS: dict[str, str] = {
    "serial": "docmill.parallel.serial:SerialBackend",
    "thread": "docmill.parallel.thread:ThreadBackend",
    "process": "docmill.parallel.process:ProcessBackend",
}

TRANSPORTS = ("shm", "pickle")
#: seconds a worker may take to start (load func, run the initializer) by default:
#: long enough to load a large model, short of a hang
DEFAULT_INIT_TIMEOUT = 600.0
START_METHODS = ("fork", "spawn", "forkserver")


def usable_cores() -> int:
    """The number of CPU cores this process may run on (respects affinity / cgroups cpusets)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@dataclass(frozen=True)
class Options:
    """The validated options of one map. Build it with :meth:`from_kwargs`."""

    backend: str = "thread"
    num_worker: int | None = None
    chunksize: int | None = None
    window: int | None = None
    timeout: float | None = None
    ordered: bool = True
    initializer: Callable[..., Any] | None = None
    initargs: tuple[Any, ...] = ()
    init_timeout: float | None = None
    max_tasks_per_worker: int | None = None
    start_method: str | None = None
    transport: str = "shm"
    shm_threshold: int = 64 * 1024
    show_progress: bool = False
    pool: Any = field(default=None, compare=False)

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen: resolved values are written once, here

        if self.pool is not None:
            kind = pool_kind(self.pool)
            if kind is None:
                raise TypeError(
                    f"pool must be a multiprocessing.pool.Pool / ThreadPool or a "
                    f"concurrent.futures.Executor, got {type(self.pool).__name__}; "
                    f"pass pool=None to let docmill start its own workers"
                )
            if self.initializer is not None:
                raise ValueError(
                    "initializer cannot be used with pool=...: your pool's workers are "
                    "already running; give the initializer to the pool when you create it"
                )
            if self.max_tasks_per_worker is not None:
                raise ValueError(
                    "max_tasks_per_worker cannot be used with pool=...: set it on your "
                    "pool (Pool(maxtasksperchild=...)) instead"
                )
            set_(self, "backend", "pool")
        elif not isinstance(self.backend, str) or self.backend not in BACKENDS:
            raise ValueError(
                f"unknown backend {self.backend!r}; valid backends are: "
                f"{', '.join(repr(b) for b in BACKENDS)}"
            )

        if self.num_worker is None:
            n = pool_size(self.pool) if self.pool is not None else None
            set_(self, "num_worker", n or usable_cores())
        else:
            _check_int("num_worker", self.num_worker, "or None to use every usable core")

        if self.chunksize is not None:
            _check_int("chunksize", self.chunksize, "or None to size chunks automatically")
        if self.window is not None:
            _check_int("window", self.window, "or None for 2 x num_worker x chunksize")
        if self.max_tasks_per_worker is not None:
            _check_int("max_tasks_per_worker", self.max_tasks_per_worker, "or None (never)")

        if self.timeout is not None:
            set_(self, "timeout", _seconds("timeout", self.timeout, "or None for no limit"))
        if self.init_timeout is None:
            set_(self, "init_timeout", DEFAULT_INIT_TIMEOUT)
        else:
            set_(
                self,
                "init_timeout",
                _seconds("init_timeout", self.init_timeout, f"or None ({DEFAULT_INIT_TIMEOUT:g})"),
            )

        for name in ("ordered", "show_progress"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be True or False, got {getattr(self, name)!r}")

        if self.initializer is not None and not callable(self.initializer):
            raise TypeError(
                f"initializer must be a callable run once per worker, got "
                f"{type(self.initializer).__name__}"
            )
        if isinstance(self.initargs, list):
            set_(self, "initargs", tuple(self.initargs))
        if not isinstance(self.initargs, tuple):
            raise TypeError(
                f"initargs must be a tuple of arguments for initializer, got "
                f"{type(self.initargs).__name__}; write initargs=(value,) for one argument"
            )
        if self.initargs and self.initializer is None:
            raise ValueError("initargs was given without an initializer; pass initializer=...")

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
        t = self.shm_threshold
        if isinstance(t, bool) or not isinstance(t, int) or t < 0:
            raise ValueError(f"shm_threshold must be a number of bytes >= 0, got {t!r}")

    @classmethod
    def from_kwargs(cls, caller: str = "map", **kwargs: Any) -> Options:
        """Build options from keywords; an unknown keyword raises ``TypeError`` naming
        the closest valid one."""
        names = [f.name for f in dataclasses.fields(cls)]
        for key in kwargs:
            if key not in names:
                close = difflib.get_close_matches(key, names, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise TypeError(
                    f"{caller}() got an unknown option {key!r}{hint} "
                    f"(valid options: {', '.join(names)})"
                )
        return cls(**kwargs)

    def replace(self, **changes: Any) -> Options:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)


def pool_kind(pool: Any) -> str | None:
    """'executor' for a concurrent.futures Executor, 'mp' for a multiprocessing pool."""
    from concurrent.futures import Executor
    from multiprocessing.pool import Pool

    if isinstance(pool, Executor):
        return "executor"
    if isinstance(pool, Pool):  # ThreadPool is a Pool subclass
        return "mp"
    return None


def pool_size(pool: Any) -> int | None:
    """How many workers a user's pool runs, when it says so."""
    n = getattr(pool, "_max_workers", None) or getattr(pool, "_processes", None)
    return n if isinstance(n, int) and n > 0 else None


def _seconds(name: str, value: Any, alternative: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"{name} must be a number of seconds > 0, {alternative}; got {value!r}")
    return float(value)


def _check_int(name: str, value: Any, alternative: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, {alternative}; got {value!r}")
