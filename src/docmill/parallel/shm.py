"""Shared-memory transport: large buffers cross the process boundary through /dev/shm.

Objects are pickled with protocol 5. Every buffer at least ``threshold`` bytes
long (ndarray data, ``bytearray``, ``Document.blob``) is taken *out of band*:
the pickle stream keeps a placeholder, the bytes go into one shared-memory
segment per message, and only the pickle plus a small header cross the pipe::

    parent (ShmTransport)                          worker (endpoint)
    ---------------------                          -----------------
    dumps(task):  buffers --pwritev--> arena segment a<N> (reused)
                  header+pickle ------ pipe ------> loads(): views over its cached
                                                    mapping of a<N> (zero copy,
                                                    writable; valid until release)
    loads(result): map r<pid>-<n>, unlink <-- pipe  dumps(): buffers --writev-->
                   the name, arrays are views       fresh segment r<pid>-<n>
                   over the mapping (zero copy)
    release(lease): a<N> back to the pool
    close():      unlink the pool, sweep every name with the prefix

Copies: one per direction (the parent's ``pwritev`` into the arena, the
worker's ``writev`` into a result segment); the receiving side builds arrays
directly over its mapping. Results are ordinary writable arrays that outlive
the map: their segment has no name any more and its memory is freed when the
last array over it is garbage collected. Buffers below ``threshold`` stay in the
pickle, where a copy costs less than a segment.

Lifetime: every segment name starts with ``docmill-<parent pid>-<random>-``, so
the parent can always find and delete them — also those a worker created just
before it was killed. :meth:`ShmTransport.close` is idempotent and also runs
from a ``weakref.finalize`` (garbage collection, interpreter exit). It deletes a
*marker* file first: a worker that writes a result segment checks the marker
afterwards and deletes its own segment if the transport is already closed, so a
worker racing with ``close()`` cannot leave a segment behind.

``multiprocessing.shared_memory`` is deliberately not used: its resource
tracker warns about and unlinks segments behind the owner's back (and, before
Python 3.13, registers them again in every process that attaches). Plain files
under /dev/shm, ``os.open`` and ``mmap`` need none of that. Where /dev/shm is
missing, :func:`make_transport` returns a :class:`PickleTransport`.
"""

from __future__ import annotations

import itertools
import mmap
import os
import pickle
import secrets
import struct
import threading
import weakref
from typing import Any

import numpy as np

from docmill.document import FIELDS, Document, _rebuild
from docmill.parallel.transport import Endpoint, PickleTransport, Transport

__all__ = [
    "DEFAULT_THRESHOLD",
    "SHM_DIR",
    "ShmTransport",
    "make_transport",
    "shm_available",
    "sweep",
]

#: Where segments live (a tmpfs on Linux).
SHM_DIR = "/dev/shm"
#: Buffers at least this many bytes long go through shared memory.
DEFAULT_THRESHOLD = 64 * 1024
#: Every segment name starts with this (then ``<pid>-<token>-``).
NAME_PREFIX = "docmill-"

_ALIGN = 64  # buffers start on cache-line boundaries: aligned for every dtype
_MIN_SEGMENT = 1 << 20  # arena sizes are powers of two from 1 MiB (holes cost nothing)
_MAX_IDLE_SEGMENTS = 16  # idle arena segments kept for reuse ...
_MAX_IDLE_BYTES = 256 << 20  # ... and their total capacity
_MAX_CACHED_MAPPINGS = 64  # arena mappings a worker keeps open
_IOV_MAX = min(os.sysconf("SC_IOV_MAX") if hasattr(os, "sysconf") else 1024, 1024)
_OPEN_FLAGS = os.O_RDWR | getattr(os, "O_CLOEXEC", 0)

# Message layout. A plain pickle (first byte 0x80) needs no header; an
# out-of-band message is  b"S" | u16 name length | u32 buffer count | name |
# (u64 offset, u64 length) per buffer | pickle.
_SHM = 0x53  # "S"
_HEAD = struct.Struct("<BHI")

_BLOB = FIELDS.index("blob")  # position of Document.blob in Document._get_state()


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
    if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 0:
        raise ValueError(f"shm_threshold must be a number of bytes >= 0, got {threshold!r}")
    if not shm_available():
        return PickleTransport()
    try:
        return ShmTransport(threshold)
    except OSError:  # e.g. /dev/shm full or read-only after all
        return PickleTransport()


def sweep(prefix: str, directory: str = SHM_DIR) -> list[str]:
    """Delete every segment whose name starts with ``prefix``; return the names deleted."""
    if not prefix.startswith(NAME_PREFIX):  # never sweep names docmill did not create
        raise ValueError(f"refusing to sweep {prefix!r}: not a docmill prefix")
    removed = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return removed
    for entry in entries:
        if entry.name.startswith(prefix):
            try:
                os.unlink(entry.path)
                removed.append(entry.name)
            except FileNotFoundError:
                pass
    return removed


# ---------------------------------------------------------------------- encoding
def _rebuild_with_blob(state: tuple, blob: Any) -> Document:
    d = _rebuild(state)
    d.blob = bytes(blob)  # bytes cannot wrap foreign memory: the one copy on this side
    return d


class _Pickler(pickle.Pickler):
    """Protocol-5 pickler that also takes out of band what pickle alone would not:
    non-contiguous arrays (made contiguous first) and ``Document.blob`` bytes."""

    def __init__(self, file: Any, threshold: int, buffers: list) -> None:
        super().__init__(file, protocol=5, buffer_callback=self._take)
        self._threshold = threshold
        self._buffers = buffers

    def _take(self, pb: pickle.PickleBuffer) -> bool:
        try:
            m = pb.raw()
        except BufferError:  # a non-contiguous exporter: let pickle keep it in band
            return True
        if m.nbytes < self._threshold:
            return True  # in band
        self._buffers.append(m)
        return False

    def reducer_override(self, obj: Any) -> Any:
        # Called once per object of a non-builtin type (not per int/str/dict/...).
        t = type(obj)
        if t is np.ndarray:
            if (
                obj.nbytes >= self._threshold
                and not obj.flags.c_contiguous
                and not obj.flags.f_contiguous
                and not obj.dtype.hasobject
            ):
                return np.ascontiguousarray(obj).__reduce_ex__(5)
        elif t is Document:
            blob = obj.blob
            if type(blob) is bytes and len(blob) >= self._threshold:
                state = obj._get_state()
                state = (*state[:_BLOB], None, *state[_BLOB + 1 :])
                return _rebuild_with_blob, (state, pickle.PickleBuffer(blob))
        return NotImplemented


def _encode(obj: Any, threshold: int) -> tuple[bytes, list[memoryview]]:
    """Pickle ``obj``; return the stream and the buffers taken out of band."""
    import io

    buffers: list[memoryview] = []
    f = io.BytesIO()
    _Pickler(f, max(threshold, 1), buffers).dump(obj)
    return f.getvalue(), buffers


def _layout(buffers: list[memoryview]) -> tuple[list[Any], list[int], int]:
    """Place buffers one after another, aligned: (iovec incl. padding, offsets, size)."""
    iov: list[Any] = []
    offsets: list[int] = []
    pos = 0
    for m in buffers:
        pad = -pos % _ALIGN
        if pad:
            iov.append(bytes(pad))
            pos += pad
        offsets.append(pos)
        iov.append(m)
        pos += m.nbytes
    return iov, offsets, pos


def _message(name: str, buffers: list[memoryview], offsets: list[int], stream: bytes) -> bytes:
    name_b = name.encode()
    spans = [v for off, m in zip(offsets, buffers, strict=True) for v in (off, m.nbytes)]
    return b"".join(
        (
            _HEAD.pack(_SHM, len(name_b), len(buffers)),
            name_b,
            struct.pack(f"<{len(spans)}Q", *spans),
            stream,
        )
    )


def _parse(payload: bytes) -> tuple[str, list[tuple[int, int]], memoryview]:
    """Split an out-of-band message into (segment name, [(offset, length)], pickle)."""
    _, name_len, n = _HEAD.unpack_from(payload)
    pos = _HEAD.size
    name = bytes(payload[pos : pos + name_len]).decode()
    pos += name_len
    flat = struct.unpack_from(f"<{2 * n}Q", payload, pos)
    pos += 16 * n
    return name, list(zip(flat[::2], flat[1::2], strict=True)), memoryview(payload)[pos:]


def _pwrite_all(fd: int, iov: list[Any], offset: int) -> None:
    """``pwritev`` every buffer of ``iov`` at ``offset``, resuming after short writes."""
    views = [memoryview(b).cast("B") if not isinstance(b, bytes) else b for b in iov]
    while views:
        batch = views[:_IOV_MAX]
        done = os.pwritev(fd, batch, offset)
        offset += done
        # drop the buffers written completely, trim the one written in part
        i = 0
        while i < len(batch) and done >= len(batch[i]):
            done -= len(batch[i])
            i += 1
        views = views[i:]
        if done:
            views[0] = memoryview(views[0])[done:]
        elif i == 0 and batch:
            raise OSError("pwritev wrote nothing to a shared-memory segment")


def _map(path: str, unlink: bool) -> mmap.mmap:
    """Map a whole segment read-write (shared); optionally remove its name at once."""
    fd = os.open(path, _OPEN_FLAGS)
    try:
        size = os.fstat(fd).st_size
        return mmap.mmap(fd, size)
    finally:
        os.close(fd)
        if unlink:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass


# ---------------------------------------------------------------------- parent side
class _Segment:
    __slots__ = ("fd", "name", "size")

    def __init__(self, name: str, fd: int, size: int) -> None:
        self.name, self.fd, self.size = name, fd, size


class _State:
    """Everything the finalizer needs, without a reference to the transport."""

    def __init__(self, directory: str, prefix: str) -> None:
        self.dir = directory
        self.prefix = prefix
        self.pid = os.getpid()
        self.lock = threading.RLock()
        self.closed = False
        self.free: list[_Segment] = []  # idle arena segments, reusable
        self.leased: set[_Segment] = set()
        self.counter = itertools.count()


def _close_state(st: _State) -> None:
    if os.getpid() != st.pid:  # a forked child inherited the object: not ours to clean
        return
    with st.lock:
        if st.closed:
            return
        st.closed = True
        # The marker goes first: a worker that finishes a result after this point
        # deletes its own segment (see _WorkerEndpoint.dumps).
        _unlink(os.path.join(st.dir, st.prefix + "live"))
        for seg in (*st.free, *st.leased):
            _destroy(st, seg)
        st.free.clear()
        st.leased.clear()
    sweep(st.prefix, st.dir)


def _destroy(st: _State, seg: _Segment) -> None:
    try:
        os.close(seg.fd)
    except OSError:
        pass
    _unlink(os.path.join(st.dir, seg.name))


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


class ShmTransport(Transport):
    """Parent side of the shared-memory transport (see the module docstring).

    ``threshold``: buffers at least this many bytes long travel through shared
    memory, smaller ones inside the pickle. ``directory``: a tmpfs to create
    segments in. Raises ``OSError`` when no segment can be created there.
    """

    def __init__(self, threshold: int = DEFAULT_THRESHOLD, directory: str = SHM_DIR) -> None:
        if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 0:
            raise ValueError(f"threshold must be a number of bytes >= 0, got {threshold!r}")
        self.threshold = threshold
        prefix = f"{NAME_PREFIX}{os.getpid()}-{secrets.token_hex(4)}-"
        self._st = _State(directory, prefix)
        # Creating the marker proves the directory works (else OSError, see make_transport).
        fd = os.open(
            os.path.join(directory, prefix + "live"), os.O_CREAT | os.O_EXCL | _OPEN_FLAGS, 0o600
        )
        os.close(fd)
        self._finalizer = weakref.finalize(self, _close_state, self._st)
        #: counters for tests and benchmarks
        self.stats = {"segments_created": 0, "bytes_out": 0, "bytes_in": 0}

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
        stream, buffers = _encode(obj, self.threshold)
        if not buffers:
            return stream, None
        iov, offsets, size = _layout(buffers)
        st = self._st
        with st.lock:  # held while writing: close() must not close the fd under us
            if st.closed:
                raise RuntimeError("ShmTransport.dumps() after close()")
            seg = None
            try:
                seg = self._acquire(size)
                _pwrite_all(seg.fd, iov, 0)
            except OSError:  # e.g. /dev/shm full: send this task through the pipe
                if seg is not None:
                    self._release_locked(seg)
                return pickle.dumps(obj, protocol=5), None
        self.stats["bytes_out"] += size
        return _message(seg.name, buffers, offsets, stream), seg

    def release(self, lease: Any) -> None:
        if lease is None:
            return
        with self._st.lock:
            self._release_locked(lease)

    def _acquire(self, size: int) -> _Segment:
        st = self._st
        fits = [s for s in st.free if s.size >= size]
        if fits:
            seg = min(fits, key=lambda s: s.size)
            st.free.remove(seg)
        else:
            cap = max(_MIN_SEGMENT, 1 << (size - 1).bit_length())
            name = f"{st.prefix}a{next(st.counter)}"
            path = os.path.join(st.dir, name)
            fd = os.open(path, os.O_CREAT | os.O_EXCL | _OPEN_FLAGS, 0o600)
            try:
                os.ftruncate(fd, cap)  # sparse: pages are allocated only where written
            except OSError:
                os.close(fd)
                _unlink(path)
                raise
            seg = _Segment(name, fd, cap)
            self.stats["segments_created"] += 1
        st.leased.add(seg)
        return seg

    def _release_locked(self, seg: _Segment) -> None:
        st = self._st
        if seg not in st.leased:  # released twice, or after close(): nothing to do
            return
        st.leased.discard(seg)
        st.free.append(seg)
        # Keep a bounded pool: drop the smallest idle segments beyond the limits.
        st.free.sort(key=lambda s: s.size, reverse=True)
        while len(st.free) > _MAX_IDLE_SEGMENTS or (
            len(st.free) > 1 and sum(s.size for s in st.free) > _MAX_IDLE_BYTES
        ):
            _destroy(st, st.free.pop())

    # -- worker -> parent
    def loads(self, payload: bytes) -> Any:
        if payload[0] != _SHM:
            return pickle.loads(payload)
        name, spans, stream = _parse(payload)
        if "/" in name or not name.startswith(self._st.prefix + "r"):
            raise ValueError(f"result names a segment {name!r} this transport does not own")
        try:
            mm = _map(os.path.join(self._st.dir, name), unlink=True)
        except FileNotFoundError:
            raise RuntimeError(
                f"shared-memory segment {name!r} of a result is gone "
                "(was the transport closed while results were in flight?)"
            ) from None
        view = memoryview(mm)
        self.stats["bytes_in"] += len(mm)
        # Arrays keep the mapping alive; it is unmapped when the last one is collected.
        return pickle.loads(stream, buffers=[view[o : o + n] for o, n in spans])

    def close(self) -> None:
        self._finalizer()

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"{len(self._st.leased)} leased"
        return f"<ShmTransport prefix={self.prefix!r} threshold={self.threshold} {state}>"


# ---------------------------------------------------------------------- worker side
class _WorkerEndpoint(Endpoint):
    """Worker side: maps arena segments (cached) and writes results to fresh segments."""

    def __init__(self, directory: str, prefix: str, threshold: int) -> None:
        self._dir = directory
        self._prefix = prefix
        self._threshold = threshold
        self._cache: dict[str, memoryview] = {}
        self._counter = itertools.count()

    def __getstate__(self) -> tuple:
        return (self._dir, self._prefix, self._threshold)

    def __setstate__(self, state: tuple) -> None:
        self.__init__(*state)

    def loads(self, payload: bytes) -> Any:
        if payload[0] != _SHM:
            return pickle.loads(payload)
        name, spans, stream = _parse(payload)
        view = self._cache.get(name)
        if view is None:
            view = self._attach(name)
        return pickle.loads(stream, buffers=[view[o : o + n] for o, n in spans])

    def _attach(self, name: str) -> memoryview:
        # A miss means the parent created a segment: forget mappings of segments it
        # has deleted since (they would pin that memory), and bound the cache.
        for old in list(self._cache):
            if len(self._cache) >= _MAX_CACHED_MAPPINGS or not os.path.exists(
                os.path.join(self._dir, old)
            ):
                del self._cache[old]  # unmapped once no array uses it any more
        try:
            view = memoryview(_map(os.path.join(self._dir, name), unlink=False))
        except FileNotFoundError:
            raise RuntimeError(
                f"shared-memory segment {name!r} of a task is gone (the parent closed "
                "its transport)"
            ) from None
        self._cache[name] = view
        return view

    def dumps(self, obj: Any) -> bytes:
        stream, buffers = _encode(obj, self._threshold)
        if not buffers:
            return stream
        iov, offsets, _ = _layout(buffers)
        for _attempt in range(100):  # a stale name from an earlier process with our pid
            name = f"{self._prefix}r{os.getpid()}-{next(self._counter)}"
            path = os.path.join(self._dir, name)
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | _OPEN_FLAGS, 0o600)
                break
            except FileExistsError:
                continue
            except OSError:
                return pickle.dumps(obj, protocol=5)
        else:
            return pickle.dumps(obj, protocol=5)
        try:
            _pwrite_all(fd, iov, 0)
        except OSError:  # /dev/shm full: this result goes through the pipe
            _unlink(path)
            return pickle.dumps(obj, protocol=5)
        finally:
            os.close(fd)
        if not os.path.exists(os.path.join(self._dir, self._prefix + "live")):
            # The parent closed its transport (and may have swept already): nobody
            # will read this segment, so do not leave it behind.
            _unlink(path)
            return pickle.dumps(obj, protocol=5)
        return _message(name, buffers, offsets, stream)

    def close(self) -> None:
        self._cache.clear()
