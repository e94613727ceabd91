"""Shared-memory transport: large buffers cross the process boundary through /dev/shm.

Objects are pickled with protocol 5. When the buffers of a message (ndarray
data, ``bytearray``, ``Document.blob``; each of at least 4 KiB) add up to
``threshold`` bytes, they go *out of band* into one shared-memory segment, and
only the pickle and a small header cross the pipe (format: :mod:`._shm_codec`)::

    parent (ShmTransport)                          worker (endpoint)
    ---------------------                          -----------------
    dumps(task):   copy buffers into an arena
                   segment (pool); header names
                   it and a reply segment -- pipe -->  loads(): arrays are views over
                                                       its mapping of the arena segment
                                                       (zero copy, writable)
                                                       dumps(result): copy buffers into
                                                       the reply segment (or a new one)
    loads(result): arrays are views over   <-- pipe --
                   the segment (zero copy)
    release(lease): the arena segment goes back to its pool
    ...the caller drops the result arrays: the segment goes back to the reply pool
    close():       delete every name with this transport's prefix

One copy per direction, by the sender; the receiver builds arrays directly over
its mapping. Results are ordinary writable arrays that outlive the map (a
mapping stays valid after its name is deleted; the memory is freed with the
last array over it). Smaller messages stay plain pickles. One exception to
zero copy: result buffers below ``threshold`` are copied out of the segment on
arrival, so a small array the caller keeps (an embedding) never pins the
segment that also held the large ones (the tensors it dropped).

Why everything is recycled and mappings are kept: on Linux, creating, faulting
in and freeing shared pages costs far more than copying into pages a process
has already mapped (on the 2-core benchmark VM ~0.6 ms per MB against ~0.06
ms). So arena segments are reused once their task is released; a result
segment whose arrays the caller has dropped (a ``weakref.finalize``) becomes
the segment a later task's result is written into; and both sides keep their
mappings. Results the caller keeps (``apply``) simply keep their segment.
No copy through a mapping ever meets a hole, where a full /dev/shm would
raise SIGBUS: the parent ``fallocate``s arena segments, a worker writes a new
result segment in full with ``pwritev`` (for pages that do not exist yet, the
kernel's copy is also cheaper than faulting them in). A full /dev/shm is an
``OSError`` there, and that message goes through the pipe instead.

Lifetime: every name starts with ``docmill-<parent pid>-<random>-``, so the
parent can always find and delete its segments, including ones a worker created
just before it was killed. :meth:`ShmTransport.close` is idempotent and also
runs from a ``weakref.finalize`` (garbage collection, interpreter exit). The
transport holds an ``flock`` on a *marker* file ``<prefix>live``; ``close()``
deletes it first, and a worker that has created a segment checks it afterwards
and deletes its segment if the transport is gone, so a worker racing with
``close()`` leaves nothing behind. If the parent is SIGKILLed, the kernel drops
its lock and the next transport created deletes the orphans
(:func:`sweep_orphans`).

``multiprocessing.shared_memory`` is deliberately not used: its resource
tracker warns about and unlinks segments behind the owner's back (and, before
Python 3.13, registers them again in every process that attaches). Plain files
under /dev/shm, ``os.open`` and ``mmap`` need none of that. Where /dev/shm is
missing, :func:`make_transport` returns a :class:`PickleTransport`.
"""

from __future__ import annotations

import fcntl
import importlib
import itertools
import mmap
import os
import pickle
import sys
import threading
import weakref
from collections import deque
from typing import Any

import numpy as np

from docmill.parallel._shm_codec import (
    encode,
    is_plain,
    layout,
    make_message,
    parse,
    reducer_modules,
)
from docmill.parallel.transport import Endpoint, PickleTransport, Transport, dumps

__all__ = [
    "DEFAULT_THRESHOLD",
    "SHM_DIR",
    "ShmTransport",
    "make_transport",
    "shm_available",
    "sweep",
    "sweep_orphans",
]

#: Where segments live (a tmpfs on Linux).
SHM_DIR = "/dev/shm"
#: Messages whose buffers add up to at least this many bytes use shared memory.
DEFAULT_THRESHOLD = 64 * 1024
#: Every name starts with this (then ``<pid>-<token>-``).
NAME_PREFIX = "docmill-"

_MIN_SEGMENT = 1 << 16
_POOL_SEGMENTS = 16  # idle segments kept per pool ...
_POOL_BYTES = 256 << 20  # ... and their total size
_WORKER_MAPS = 64  # mappings a worker keeps ...
_WORKER_BYTES = 512 << 20  # ... and their total size
_PRUNE_EVERY = 256  # a worker drops mappings of deleted segments this often (messages)
_IOV_MAX = 1024  # buffers per pwritev call (the Linux limit)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_CREATE = os.O_CREAT | os.O_EXCL | os.O_RDWR | _CLOEXEC


def shm_available(directory: str = SHM_DIR) -> bool:
    """True when shared-memory segments can be created in ``directory``."""
    return os.path.isdir(directory) and os.access(directory, os.W_OK | os.X_OK)


def make_transport(kind: str = "shm", threshold: int = DEFAULT_THRESHOLD) -> Transport:
    """The transport the process backend uses: ``'shm'`` (falls back to pickling
    when /dev/shm is unavailable) or ``'pickle'`` (everything through the pipe)."""
    if kind == "pickle":
        return PickleTransport()
    if kind != "shm":
        raise ValueError(f"unknown transport {kind!r}; valid values are 'shm', 'pickle'")
    if not shm_available():
        return PickleTransport()
    try:
        return ShmTransport(threshold)
    except OSError:  # e.g. /dev/shm full or read-only after all
        return PickleTransport()


def sweep(prefix: str, directory: str = SHM_DIR, keep: str = "") -> list[str]:
    """Delete every segment whose name starts with ``prefix`` (except ``keep``);
    return the names deleted."""
    if not prefix.startswith(NAME_PREFIX) or len(prefix) <= len(NAME_PREFIX):
        raise ValueError(f"refusing to sweep {prefix!r}: not a docmill transport prefix")
    removed = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return removed
    for entry in entries:
        if entry.name.startswith(prefix) and entry.name != keep:
            try:
                os.unlink(entry.path)
                removed.append(entry.name)
            except FileNotFoundError:
                pass
    return removed


def sweep_orphans(directory: str = SHM_DIR) -> list[str]:
    """Delete the segments of transports whose process died without closing them
    (SIGKILL, a hard crash); return the names deleted.

    A live transport holds an ``flock`` on its marker file; the kernel drops it
    when the process and its forked workers are gone, so a marker whose lock can
    be taken belongs to nobody. Unlike a pid in a name, this also holds across
    pid namespaces (containers) sharing one /dev/shm.
    """
    removed: list[str] = []
    try:
        markers = [e for e in os.scandir(directory) if _is_marker(e.name)]
    except OSError:
        return removed
    for entry in markers:
        try:
            fd = os.open(entry.path, os.O_RDONLY | _CLOEXEC)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            continue  # its owner is alive
        else:
            # the marker goes last, so an interrupted sweep is finished by the next one
            removed += sweep(entry.name[: -len("live")], directory, keep=entry.name)
            _unlink(entry.path)
            removed.append(entry.name)
        finally:
            os.close(fd)
    return removed


# ---------------------------------------------------------------------- segments
def _capacity(size: int) -> int:
    """Segment size for ``size`` bytes: rounded up to 1/8 of a power of two
    (at most ~12% slack), so a segment also fits slightly larger later messages."""
    size = max(size, _MIN_SEGMENT)
    step = 1 << ((size - 1).bit_length() - 3)
    return -(-size // step) * step


def _libc_mmap() -> Any:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = (
        ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long
    )  # fmt: skip
    libc.munmap.restype = ctypes.c_int
    libc.munmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
    return ctypes, libc


def _mmap_fd(fd: int, size: int) -> Any:
    """Map ``size`` bytes of ``fd`` read-write, shared, *without* keeping ``fd`` open.

    ``mmap.mmap`` dups the descriptor and holds it as long as the mapping lives, so
    every result array kept from a map (``apply`` keeps them all) would hold one open
    file: 1,024 kept results exhaust the usual ``ulimit -n``. A mapping needs no
    descriptor: Python 3.13 has ``trackfd=False``; before it, libc's ``mmap`` through
    ctypes, as a ctypes array that ``munmap``s itself once nothing uses it (every
    memoryview or ndarray over it holds a reference).
    """
    if sys.version_info >= (3, 13):
        return mmap.mmap(fd, size, trackfd=False)  # type: ignore[call-arg]
    global _LIBC
    if _LIBC is None:
        _LIBC = _libc_mmap()
    ctypes, libc = _LIBC
    addr = libc.mmap(None, size, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_SHARED, fd, 0)
    if addr is None or addr == ctypes.c_void_p(-1).value:
        err = ctypes.get_errno()
        raise OSError(err, f"mmap of a shared-memory segment failed: {os.strerror(err)}")
    buf = (ctypes.c_ubyte * size).from_address(addr)
    weakref.finalize(buf, libc.munmap, addr, size).atexit = False
    return buf


_LIBC: Any = None


def _create(path: str, size: int) -> Any:
    """Create a segment with all its pages allocated, and map it."""
    fd = os.open(path, _CREATE, 0o600)
    try:
        os.posix_fallocate(fd, 0, size)  # ENOSPC here, never SIGBUS on a later copy
        return _mmap_fd(fd, size)
    except BaseException:
        _unlink(path)
        raise
    finally:
        os.close(fd)


def _map(path: str) -> Any:
    """Map a whole existing segment read-write, shared (no descriptor stays open)."""
    fd = os.open(path, os.O_RDWR | _CLOEXEC)
    try:
        return _mmap_fd(fd, os.fstat(fd).st_size)
    finally:
        os.close(fd)


def _copy_into(view: memoryview, buffers: list[memoryview], offsets: list[int]) -> None:
    for m, off in zip(buffers, offsets, strict=True):
        view[off : off + m.nbytes] = m


def _iovec(buffers: list[memoryview], offsets: list[int]) -> list[Any]:
    """The buffers with the alignment padding between them, for ``pwritev`` at 0."""
    iov: list[Any] = []
    pos = 0
    for m, off in zip(buffers, offsets, strict=True):
        if off > pos:
            iov.append(bytes(off - pos))
        iov.append(m)
        pos = off + m.nbytes
    return iov


def _pwrite_all(fd: int, iov: list[Any]) -> None:
    """``pwritev`` all of ``iov`` from offset 0, resuming after short writes."""
    views = [memoryview(b) for b in iov]
    offset = 0
    while views:
        done = os.pwritev(fd, views[:_IOV_MAX], offset)
        if done <= 0:
            raise OSError("pwritev wrote nothing to a shared-memory segment")
        offset += done
        while views and done >= views[0].nbytes:  # drop the buffers written completely
            done -= views.pop(0).nbytes
        if done:  # ... and trim the one written in part
            views[0] = views[0][done:]


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _is_marker(name: str) -> bool:
    return name.startswith(NAME_PREFIX) and name.endswith("-live")


def _create_marker(path: str) -> int:
    """Create ``path`` already locked: made under a temporary name that no sweep
    takes for a marker, locked, then renamed into place (atomic)."""
    tmp = path + ".new"
    fd = os.open(tmp, _CREATE, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.rename(tmp, path)
    except BaseException:
        os.close(fd)
        _unlink(tmp)
        raise
    return fd


# ---------------------------------------------------------------------- parent side
class _Segment:
    """A segment the parent owns, with the parent's mapping of it (once it has one)."""

    __slots__ = ("mm", "name", "size", "view")

    def __init__(self, name: str, size: int, mm: Any = None) -> None:
        self.name, self.size = name, size
        self.mm = mm
        self.view = memoryview(mm).cast("B") if mm is not None else None


class _Pool:
    """Idle segments of one kind, bounded in number and total size."""

    def __init__(self) -> None:
        self.idle: list[_Segment] = []

    def take(self, size: int) -> _Segment | None:
        """The smallest idle segment of at least ``size`` bytes, if any."""
        best = None
        for seg in self.idle:
            if seg.size >= size and (best is None or seg.size < best.size):
                best = seg
        if best is not None:
            self.idle.remove(best)
        return best

    def put(self, seg: _Segment) -> list[_Segment]:
        """Keep ``seg``; return the segments that no longer fit (the smallest)."""
        self.idle.append(seg)
        self.idle.sort(key=lambda s: s.size, reverse=True)
        evicted = []
        while len(self.idle) > _POOL_SEGMENTS or (
            len(self.idle) > 1 and sum(s.size for s in self.idle) > _POOL_BYTES
        ):
            evicted.append(self.idle.pop())
        return evicted


class _Lease:
    __slots__ = ("arena", "reply")

    def __init__(self, arena: _Segment | None, reply: _Segment | None) -> None:
        self.arena, self.reply = arena, reply


class _State:
    """Everything the finalizers need, without a reference to the transport."""

    def __init__(self, directory: str, prefix: str) -> None:
        self.dir = directory
        self.prefix = prefix
        self.pid = os.getpid()
        self.lock = threading.Lock()
        self.closed = False
        self.counter = itertools.count()
        self.marker_fd = -1
        self.arena = _Pool()  # idle segments for tasks
        self.replies = _Pool()  # idle segments for results
        self.leased: dict[str, _Segment] = {}  # out with a task (arena or reply)
        # Result segments whose arrays the caller dropped. Filled by finalizers,
        # which may run in any thread at any moment (even inside our locked code),
        # so without the lock: deque.append is atomic; dumps() drains it.
        self.returned: deque[_Segment] = deque()
        self.result_size = 0  # out-of-band bytes of the latest result


def _returned(st: _State, seg: _Segment) -> None:
    if not st.closed:
        st.returned.append(seg)


def _close_state(st: _State) -> None:
    if os.getpid() != st.pid:  # a forked child inherited the object: not ours to clean
        return
    with st.lock:
        if st.closed:
            return
        st.closed = True
        # The marker goes first: a worker that creates a segment after this point
        # deletes it itself (see _WorkerEndpoint._new_segment).
        _unlink(os.path.join(st.dir, st.prefix + "live"))
        # Mappings are not closed: result arrays may still use them (they stay
        # valid without a name); idle ones are unmapped when collected.
        st.arena.idle.clear()
        st.replies.idle.clear()
        st.leased.clear()
        st.returned.clear()
        sweep(st.prefix, st.dir)
        if st.marker_fd >= 0:
            os.close(st.marker_fd)  # drops our lock (forked children may still hold it)
            st.marker_fd = -1


class ShmTransport(Transport):
    """Parent side of the shared-memory transport (see the module docstring).

    ``threshold``: a message whose buffers add up to at least this many bytes
    moves them through shared memory, a smaller one is a plain pickle.
    ``directory``: the tmpfs to create segments in. Raises ``OSError`` when no
    segment can be created there.
    Thread-safe: ``dumps``, ``loads`` and ``release`` may run in different threads.
    """

    def __init__(self, threshold: int = DEFAULT_THRESHOLD, directory: str = SHM_DIR) -> None:
        self.threshold = threshold
        sweep_orphans(directory)
        self._st = st = _State(directory, f"{NAME_PREFIX}{os.getpid()}-{os.urandom(4).hex()}-")
        # Creating the marker also proves the directory works (else OSError).
        st.marker_fd = _create_marker(os.path.join(directory, st.prefix + "live"))
        self._finalizer = weakref.finalize(self, _close_state, st)
        #: counters for tests and benchmarks
        self.stats = {"segments_created": 0, "results_fresh": 0, "results_reused": 0}

    @property
    def prefix(self) -> str:
        """The name prefix of every segment this transport and its workers create."""
        return self._st.prefix

    @property
    def closed(self) -> bool:
        return self._st.closed

    def endpoint(self) -> Endpoint:
        return _WorkerEndpoint(self._st.dir, self._st.prefix, self.threshold)

    # -- parent -> worker
    def dumps(self, obj: Any) -> tuple[bytes, Any]:
        stream, buffers = encode(obj, self.threshold)
        st = self._st
        if not buffers and not st.result_size:
            return stream, None  # the fast path: small tasks with small results
        offsets, size = layout(buffers)
        arena = reply = None
        with st.lock:
            if st.closed:
                raise RuntimeError("ShmTransport.dumps() after close()")
            while st.returned:
                self._evict(st.replies.put(st.returned.popleft()))
            if st.result_size:  # results come out of band: lend a segment to write one into
                reply = st.replies.take(max(size, st.result_size))
                if reply is not None:
                    st.leased[reply.name] = reply
            if buffers:
                try:
                    arena = self._arena_segment(size)
                except OSError:  # e.g. /dev/shm full: this task goes through the pipe
                    buffers, offsets = [], []
                    stream = dumps(obj)
        if arena is not None:
            _copy_into(arena.view, buffers, offsets)  # type: ignore[arg-type]
        elif reply is None:
            return stream, None
        message = make_message(
            stream,
            arena.name if arena else "",
            buffers,
            offsets,
            reply.name if reply else "",
            reply.size if reply else 0,
        )
        return message, _Lease(arena, reply)

    def _arena_segment(self, size: int) -> _Segment:
        st = self._st
        seg = st.arena.take(size)
        if seg is None:
            name = f"{st.prefix}a{next(st.counter)}"
            cap = _capacity(size)
            seg = _Segment(name, cap, _create(os.path.join(st.dir, name), cap))
            self.stats["segments_created"] += 1
        st.leased[seg.name] = seg
        return seg

    def _evict(self, segments: list[_Segment]) -> None:
        for seg in segments:  # dropping the mapping unmaps it once nothing uses it
            _unlink(os.path.join(self._st.dir, seg.name))

    def release(self, lease: Any) -> None:
        if lease is None:
            return
        st = self._st
        with st.lock:
            if st.closed:
                return
            if lease.arena is not None and st.leased.pop(lease.arena.name, None):
                self._evict(st.arena.put(lease.arena))
            # A reply segment still leased was not used by the result: reuse it now.
            if lease.reply is not None and st.leased.pop(lease.reply.name, None):
                self._evict(st.replies.put(lease.reply))

    # -- worker -> parent
    def loads(self, payload: bytes) -> Any:
        st = self._st
        if is_plain(payload):
            st.result_size = 0
            return pickle.loads(payload)
        msg = parse(payload)
        if not msg.spans:
            return pickle.loads(msg.stream)
        name = msg.segment
        if "/" in name or not name.startswith(st.prefix + "r"):
            raise ValueError(f"a result names a segment {name!r} this transport does not own")
        with st.lock:
            seg = st.leased.pop(name, None)  # a reply segment we lent
        if seg is None or seg.mm is None:
            try:
                mm = _map(os.path.join(st.dir, name))
            except FileNotFoundError:
                raise RuntimeError(
                    f"the shared-memory segment {name!r} of a result is gone "
                    "(was the transport closed while results were in flight?)"
                ) from None
            if seg is None:
                seg = _Segment(name, len(mm))
                self.stats["results_fresh"] += 1
            seg.mm = mm
        else:
            self.stats["results_reused"] += 1
        off, n = msg.spans[-1]
        st.result_size = off + n
        # Every array of this result is a view of `base`: once the caller has
        # dropped them all, the segment is lent to a later task for its result.
        base = np.frombuffer(seg.mm, np.uint8)
        weakref.finalize(base, _returned, st, seg).atexit = False
        big = self.threshold
        return pickle.loads(
            msg.stream,
            buffers=[
                base[o : o + n] if n >= big else bytearray(base[o : o + n]) for o, n in msg.spans
            ],
        )

    def close(self) -> None:
        self._finalizer()

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"{len(self._st.leased)} leased"
        return f"<ShmTransport prefix={self.prefix!r} threshold={self.threshold} {state}>"


# ---------------------------------------------------------------------- worker side
class _WorkerEndpoint(Endpoint):
    """Worker side: keeps mappings of the parent's segments, writes each result into
    the reply segment of the task it answers (or a new segment if that is too small).

    Assumes the worker loop ``result = fn(endpoint.loads(p)); endpoint.dumps(result)``:
    :meth:`dumps` answers the task of the latest :meth:`loads`.
    """

    def __init__(self, directory: str, prefix: str, threshold: int) -> None:
        self._dir = directory
        self._prefix = prefix
        self._threshold = threshold
        self._maps: dict[str, memoryview] = {}  # segment name -> mapping
        self._reply: tuple[str, int] | None = None  # of the latest task
        self._counter = itertools.count()
        self._calls = 0

    def __getstate__(self) -> tuple:
        return (self._dir, self._prefix, self._threshold, reducer_modules())

    def __setstate__(self, state: tuple) -> None:
        *args, modules = state
        for name in modules:  # a spawned worker: register the parent's reducers here too
            importlib.import_module(name)
        self.__init__(*args)

    def loads(self, payload: bytes) -> Any:
        self._calls += 1
        if self._calls % _PRUNE_EVERY == 0:
            self._prune()
        if is_plain(payload):
            self._reply = None
            return pickle.loads(payload)
        msg = parse(payload)
        self._reply = (msg.reply, msg.reply_size) if msg.reply else None
        if not msg.spans:
            return pickle.loads(msg.stream)
        view = self._view(msg.segment)
        return pickle.loads(msg.stream, buffers=[view[o : o + n] for o, n in msg.spans])

    def dumps(self, obj: Any) -> bytes:
        stream, buffers = encode(obj, self._threshold)
        reply, self._reply = self._reply, None
        if not buffers:
            return stream
        offsets, size = layout(buffers)
        if reply is not None and reply[1] >= size:
            try:
                _copy_into(self._view(reply[0]), buffers, offsets)
                return make_message(stream, reply[0], buffers, offsets)
            except (OSError, RuntimeError):
                pass  # gone: write a new segment instead
        name = self._new_segment(buffers, offsets)
        if name is None:
            return dumps(obj)  # /dev/shm full or transport closed
        return make_message(stream, name, buffers, offsets)

    def _view(self, name: str) -> memoryview:
        view = self._maps.get(name)
        if view is None:
            self._prune()  # a new name: the parent may have deleted old ones
            try:
                view = memoryview(_map(os.path.join(self._dir, name))).cast("B")
            except FileNotFoundError:
                raise RuntimeError(
                    f"the shared-memory segment {name!r} is gone (the parent closed its transport)"
                ) from None
            self._maps[name] = view
        return view

    def _prune(self) -> None:
        """Forget mappings of segments the parent deleted (they pin that memory) and
        keep the cache bounded; a mapping is unmapped once no array uses it."""
        for name in list(self._maps):
            if not os.path.exists(os.path.join(self._dir, name)):
                del self._maps[name]
        while self._maps and (
            len(self._maps) >= _WORKER_MAPS
            or sum(v.nbytes for v in self._maps.values()) > _WORKER_BYTES
        ):
            del self._maps[next(iter(self._maps))]  # the oldest

    def _new_segment(self, buffers: list[memoryview], offsets: list[int]) -> str | None:
        """Write a new result segment; its name, or None to send the result in band.

        Written with ``pwritev``, not through a mapping: for pages that do not
        exist yet the kernel's copy beats faulting them in one by one (and a full
        /dev/shm is an ``OSError``). Every byte up to its size is written, so a
        later copy into it through a mapping (as a reply segment) never meets a hole.
        """
        for _ in range(100):  # skip stale names left by an earlier process with our pid
            name = f"{self._prefix}r{os.getpid()}-{next(self._counter)}"
            path = os.path.join(self._dir, name)
            try:
                fd = os.open(path, _CREATE, 0o600)
                break
            except FileExistsError:
                continue
            except OSError:
                return None
        else:
            return None
        try:
            _pwrite_all(fd, _iovec(buffers, offsets))
        except OSError:
            _unlink(path)
            return None
        finally:
            os.close(fd)
        if not os.path.exists(os.path.join(self._dir, self._prefix + "live")):
            # The parent closed its transport and may have swept already: nobody
            # would read or delete this segment, so do not leave it behind.
            _unlink(path)
            return None
        return name

    def close(self) -> None:
        self._maps.clear()
