"""``backend='asyncio'``: ``async def`` functions, many calls at a time, for IO-bound work.

A coroutine function picks this backend by itself (``map(fetch, urls)`` with
``async def fetch``); ``backend='asyncio'`` names it. The calls run on an event
loop in a thread of the backend's own, so it works from plain synchronous code.
``concurrency=`` (default 64) chunks run at a time; chunks are small (a call that
waits on the network is a long task), so that is about as many calls in flight.
Everything else is the streaming core's: the window bound, order, errors naming the
item, ``timeout`` (a chunk past it is cancelled), ``on_error`` and ``retries``.
Breaking out of the loop, or Ctrl-C, cancels the pending coroutines and ends the
loop's thread.

A plain (synchronous) function named with ``backend='asyncio'`` would block the
loop: it runs on ``concurrency`` threads instead, as on the thread backend.
"""

from __future__ import annotations

import asyncio
import inspect
import random
import threading
import traceback
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from time import perf_counter
from typing import TYPE_CHECKING, Any

from docmill._checks import check_int
from docmill.parallel._base import Backend, Capabilities, settle
from docmill.parallel._runner import FAILED, Skipped

if TYPE_CHECKING:
    from docmill.parallel._options import Options

__all__ = ["AsyncioBackend", "AsyncioOptions"]


@dataclass(frozen=True)
class AsyncioOptions:
    """``concurrency``: how many chunks (about as many calls) run at a time."""

    concurrency: int = 64

    def __post_init__(self) -> None:
        check_int("concurrency", self.concurrency)


class AsyncioBackend(Backend):
    """Runs chunks as coroutines on an event loop in its own thread."""

    name = "asyncio"
    capabilities = Capabilities(task_overhead=30e-6, worker_hooks=False, replaces_workers=False)
    options_class = AsyncioOptions

    @classmethod
    def default_workers(cls, options: Options) -> int | None:
        return options.backend_options.concurrency if options.backend_options else 64

    def __init__(self, options: Options) -> None:
        self.num_workers = options.num_workers  # type: ignore[assignment]  # concurrency
        self._loop = asyncio.new_event_loop()
        self._thread: threading.Thread | None = None
        self._tasks: set[asyncio.Task] = set()
        self._gate: asyncio.Semaphore | None = None
        self._runner: Any = None
        self._options = options
        self._sync: Backend | None = None  # the threads a synchronous func runs on
        self._closed = False

    def start(self, fn: Callable[[Any], Any]) -> None:
        self._runner = fn  # the core's ChunkRunner: its func and policy are used here
        func = getattr(fn, "func", fn)
        if not inspect.iscoroutinefunction(getattr(func, "func", func)):  # (apply's wrapper)
            from docmill.parallel.thread import ThreadBackend

            self._sync = ThreadBackend(self._options)
            self._sync.start(fn)
            return
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="docmill-asyncio-loop", daemon=True
        )
        self._thread.start()
        self._gate = asyncio.run_coroutine_threadsafe(self._make_gate(), self._loop).result(10)

    async def _make_gate(self) -> asyncio.Semaphore:
        return asyncio.Semaphore(self.num_workers)

    def submit(self, task: Any, timeout: float | None = None) -> Future:
        if self._closed:
            raise RuntimeError("AsyncioBackend.submit() after shutdown()")
        if self._sync is not None:
            return self._sync.submit(task, timeout)
        outer: Future = Future()
        outer.set_running_or_notify_cancel()

        def create() -> None:
            t = self._loop.create_task(self._run(task, timeout, outer))
            self._tasks.add(t)
            t.add_done_callback(self._tasks.discard)

        self._loop.call_soon_threadsafe(create)
        return outer

    def shutdown(self, cancel: bool = False) -> None:
        if self._closed:
            return
        self._closed = True
        if self._sync is not None:
            self._sync.shutdown(cancel)
        if self._thread is None:
            self._loop.close()
            return

        async def stop() -> None:
            tasks = list(self._tasks)
            if cancel:
                for t in tasks:
                    t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        try:
            asyncio.run_coroutine_threadsafe(stop(), self._loop).result(None if not cancel else 5)
        except Exception:
            pass
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        if not self._thread.is_alive():
            self._loop.close()

    # ------------------------------------------------------------------ on the loop
    async def _run(self, items: list, timeout: float | None, outer: Future) -> None:
        assert self._gate is not None
        try:
            async with self._gate:
                if timeout is None:
                    result = await self._chunk(items)
                else:
                    result = await asyncio.wait_for(self._chunk(items), timeout)
        except asyncio.TimeoutError:
            settle(outer, error=TimeoutError("the task ran longer than its timeout"))
        except asyncio.CancelledError:
            outer.cancel() or settle(outer, error=RuntimeError("cancelled"))
            raise
        except BaseException as e:
            settle(outer, error=e)
        else:
            settle(outer, result)

    async def _chunk(self, items: list) -> tuple[list, float, Any]:
        """The async twin of :class:`~docmill.parallel._runner.ChunkRunner`."""
        runner = self._runner
        call = getattr(runner.func, "acall", runner.func)  # the in-place wrapper's async form
        policy = runner.policy
        out: list = []
        failures: list = []
        retried = 0
        t0 = perf_counter()
        for pos, x in enumerate(items):
            attempt = 0
            while True:
                try:
                    r = call(x)
                    out.append(await r if inspect.isawaitable(r) else r)  # sync funcs: on the loop
                    break
                except Exception as e:
                    if (
                        policy is not None
                        and attempt < policy.retries
                        and isinstance(e, policy.retry_on)
                    ):
                        attempt += 1
                        await asyncio.sleep(
                            policy.backoff * 2 ** (attempt - 1) * (0.5 + random.random())
                        )
                        continue
                    tb = "".join(traceback.format_exception(e))
                    if policy is None or not policy.skip:
                        return out, perf_counter() - t0, (pos, e, tb)
                    out.append(FAILED)
                    failures.append((pos, e, tb, attempt))
                    break
            retried += attempt
        skipped = Skipped(failures, retried) if failures or retried else None
        return out, perf_counter() - t0, skipped
