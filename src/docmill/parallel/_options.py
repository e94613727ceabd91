"""Every option of :func:`docmill.parallel.map` and friends, validated once.

:class:`Options` is built from the caller's keywords (:meth:`Options.from_kwargs`)
before any thread or process starts; every bad value raises ``ValueError`` or
``TypeError`` naming the value and how to fix it. Backends and the streaming core
read the resolved fields and never re-check them.

Generic fields (resolved values after validation):

==========================  ==================================================
``backend``                 registered backend name ('serial', 'thread',
                            'process', ...); ``'pool'`` when ``pool`` is given
``num_workers``             int >= 1 (the public keyword is legacy's
                            ``num_worker``; ``None`` -> the backend's default,
                            else the cores this process may use)
``chunksize``               int >= 1 or ``None`` (adaptive, see ``_core``)
``window``                  int >= 1 or ``None`` (2 x workers x chunksize)
``timeout``                 seconds (> 0) per item / batch, or ``None``
``ordered``                 bool: results in input order, else as completed
``initializer, initargs``   run ``initializer(*initargs)`` once per worker
``init_timeout``            seconds (> 0) a worker may take to start (load
                            ``func``, run the initializer); ``None`` -> 600
``max_tasks_per_worker``    int >= 1 or ``None``: replace a worker after that
                            many tasks (a task is one chunk)
``show_progress``           bool: draw a tqdm bar
``pool``                    a user's ``multiprocessing.pool.Pool`` /
                            ``ThreadPool`` or ``concurrent.futures.Executor``,
                            used as is and never closed
``backend_options``         the chosen backend's own options (an instance of
                            its ``options_class``), e.g. the process backend's
                            ``start_method``, ``transport``, ``shm_threshold``
``on_error``                'raise' (default) or 'skip': record a failing item
                            and go on (see :mod:`._report`)
``max_failures``            with 'skip': an int, or a fraction of the items
                            seen; past it :class:`TooManyFailures`
``retries, retry_on``       retry an item up to ``retries`` times when it raises
                            one of ``retry_on`` (exception types; needed)
``retry_backoff``           seconds before the first retry, doubling (jitter)
``report``                  a :class:`Report` to fill (for ``apply``)
``checkpoint``              a path or fsspec URL: results are appended there as they
                            complete and a rerun resumes after them
                            (see ``docmill.io._checkpoint``)
``checkpoint_every``        seconds between flushes (at most this much is redone)
``checkpoint_check``        False: resume even if the function or input changed
==========================  ==================================================

A backend's own options are passed as keywords like the generic ones (or as a
``backend_options={...}`` mapping) and validated by its options class; an option
the chosen backend does not take is a ``TypeError`` naming the backend that does.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from docmill._checks import check_int, check_seconds
from docmill.parallel._registry import BACKENDS, backend_class, backend_for_pool

__all__ = ["DEFAULT_INIT_TIMEOUT", "Options", "usable_cores"]

#: seconds a worker may take to start (load func, run the initializer) by default:
#: long enough to load a large model, short of a hang
DEFAULT_INIT_TIMEOUT = 600.0


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
    num_workers: int | None = None
    chunksize: int | None = None
    window: int | None = None
    timeout: float | None = None
    ordered: bool = True
    initializer: Callable[..., Any] | None = None
    initargs: tuple[Any, ...] = ()
    init_timeout: float | None = None
    max_tasks_per_worker: int | None = None
    show_progress: bool = False
    pool: Any = field(default=None, compare=False)
    backend_options: Any = None
    on_error: str = "raise"
    max_failures: Any = None
    retries: int = 0
    retry_on: Any = ()
    retry_backoff: float = 0.1
    report: Any = field(default=None, compare=False)
    checkpoint: Any = None
    checkpoint_every: float = 5.0
    checkpoint_check: bool = True

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen: resolved values are written once, here

        if self.pool is not None:
            set_(self, "backend", backend_for_pool(self.pool))
        elif self.backend == "pool":
            raise ValueError("backend='pool' runs on a pool of yours: pass it as pool=...")
        elif not isinstance(self.backend, str) or self.backend not in BACKENDS:
            raise ValueError(
                f"unknown backend {self.backend!r}; valid backends are: "
                f"{', '.join(repr(b) for b in BACKENDS if b != 'pool')} (or pool=...)"
            )
        cls = backend_class(self.backend)

        if self.chunksize is not None:
            check_int(
                "chunksize", self.chunksize, alternative="or None to size chunks automatically"
            )
        if self.window is not None:
            check_int("window", self.window, alternative="or None for 2 x workers x chunksize")
        if self.max_tasks_per_worker is not None:
            check_int("max_tasks_per_worker", self.max_tasks_per_worker, alternative="or None")
        if self.timeout is not None:
            set_(self, "timeout", check_seconds("timeout", self.timeout, "or None for no limit"))
        init_timeout = DEFAULT_INIT_TIMEOUT if self.init_timeout is None else self.init_timeout
        alt = f"or None ({DEFAULT_INIT_TIMEOUT:g})"
        set_(self, "init_timeout", check_seconds("init_timeout", init_timeout, alt))

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

        if self.on_error not in ("raise", "skip"):
            raise ValueError(
                f"on_error must be 'raise' (stop at the first failure) or 'skip' (record "
                f"it and go on), got {self.on_error!r}"
            )
        mf = self.max_failures
        if mf is not None:
            if isinstance(mf, float) and 0 <= mf <= 1:
                pass
            else:
                check_int("max_failures", mf, 0, alternative="a fraction in [0, 1], or None")
            if self.on_error != "skip":
                raise ValueError("max_failures= only applies with on_error='skip'")
        check_int("retries", self.retries, 0)
        retry_on = self.retry_on
        if isinstance(retry_on, type):
            retry_on = (retry_on,)
        if not isinstance(retry_on, tuple) or not all(
            isinstance(t, type) and issubclass(t, BaseException) for t in retry_on
        ):
            raise TypeError(
                f"retry_on must be an exception type or a tuple of them, got {self.retry_on!r}"
            )
        set_(self, "retry_on", retry_on)
        if self.retries and not retry_on:
            raise ValueError(
                "retries= needs retry_on= (the exception types to retry): nothing is "
                "retried silently"
            )
        set_(self, "retry_backoff", check_seconds("retry_backoff", self.retry_backoff))
        if self.report is not None:
            from docmill.parallel._report import Report

            if not isinstance(self.report, Report):
                raise TypeError(
                    f"report must be a docmill.parallel.Report, got {type(self.report).__name__}"
                )

        if self.checkpoint is not None:
            if not isinstance(self.checkpoint, str | os.PathLike):
                raise TypeError(
                    f"checkpoint must be a path or fsspec URL, got {type(self.checkpoint).__name__}"
                )
            if not self.ordered:
                raise ValueError("checkpoint= needs ordered=True (results are kept in input order)")
        set_(self, "checkpoint_every", check_seconds("checkpoint_every", self.checkpoint_every))
        if not isinstance(self.checkpoint_check, bool):
            raise TypeError(
                f"checkpoint_check must be True or False, got {self.checkpoint_check!r}"
            )

        cls.check(self)
        set_(self, "backend_options", _backend_options(cls, self.backend_options))
        if self.num_workers is None:
            set_(self, "num_workers", cls.default_workers(self) or usable_cores())
        else:
            check_int("num_worker", self.num_workers, alternative="or None for the default")

    @classmethod
    def from_kwargs(cls, caller: str = "map", **kwargs: Any) -> Options:
        """Build options from the public keywords (``num_worker`` is legacy's name for
        ``num_workers``); an unknown keyword raises ``TypeError`` naming the closest
        valid one, or the backend that takes it."""
        if "num_worker" in kwargs:
            kwargs["num_workers"] = kwargs.pop("num_worker")
        generic = {f.name for f in dataclasses.fields(cls)}
        own = {k: kwargs.pop(k) for k in list(kwargs) if k not in generic}
        if own:
            given = kwargs.get("backend_options")
            if given is not None and not isinstance(given, Mapping):
                raise TypeError(
                    f"{caller}() got {', '.join(own)} and backend_options={given!r}: pass "
                    f"the backend's options one way, as keywords or as a backend_options dict"
                )
            pool = kwargs.get("pool")
            backend = (
                backend_for_pool(pool) if pool is not None else kwargs.get("backend", "thread")
            )
            _check_own_options(caller, backend, own)
            kwargs["backend_options"] = {**(given or {}), **own}
        return cls(**kwargs)

    def replace(self, **changes: Any) -> Options:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)


def _option_names(cls: type) -> list[str]:
    opts = getattr(cls, "options_class", None)
    return [f.name for f in dataclasses.fields(opts)] if opts is not None else []


def _backend_options(cls: type, given: Any) -> Any:
    """The backend's options object from ``None``, a mapping, or an instance of it."""
    opts = cls.options_class
    if opts is None:
        if given:
            raise TypeError(f"backend {cls.name!r} takes no options of its own, got {given!r}")
        return None
    if given is None:
        return opts()
    if isinstance(given, opts):
        return given
    if not isinstance(given, Mapping):
        raise TypeError(
            f"backend_options must be a dict of backend {cls.name!r}'s options "
            f"({', '.join(_option_names(cls))}), got {type(given).__name__}"
        )
    _check_own_options("map", cls.name, dict(given))
    return opts(**given)


def _check_own_options(caller: str, backend: Any, own: dict[str, Any]) -> None:
    """``TypeError`` for a keyword that is neither generic nor the backend's own."""
    taken = _option_names(backend_class(backend)) if backend in BACKENDS else []
    for key in own:
        if key in taken:
            continue
        others = [
            name
            for name in BACKENDS
            if name != backend and key in _option_names(backend_class(name))
        ]
        if others:
            which = " or ".join(map(repr, others))
            raise TypeError(
                f"{caller}() got {key}=, an option of backend {which}; backend "
                f"{backend!r} does not take it (pass backend={others[0]!r} or drop {key}=)"
            )
        names = sorted({f.name for f in dataclasses.fields(Options)} - {"backend_options"})
        names = ["num_worker" if n == "num_workers" else n for n in names] + taken
        close = difflib.get_close_matches(key, names, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise TypeError(
            f"{caller}() got an unknown option {key!r}{hint} (valid options: {', '.join(names)})"
        )
