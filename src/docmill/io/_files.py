"""Where bytes come from and go to: local paths, binary file objects, fsspec URLs.

Writes are atomic: nothing appears at the destination until everything was
written.

- local path (or ``file://`` URL): a temporary file ``.<name>.<random>.tmp`` in
  the same directory, flushed and ``fsync``-ed, then ``os.replace``-d over the
  destination (atomic on POSIX). On any error the temporary file is removed
  and an existing destination is left untouched. An existing destination's
  permission bits are kept.
- other fsspec URLs (``memory://``, ``s3://``, ...): written to a temporary
  sibling name, then moved with ``fs.mv``. That is atomic where the filesystem's
  move is (memory, local); object stores implement it as copy + delete, but the
  destination object still only appears once complete.
- a file object: written in place (the caller owns it; it is not closed).
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import re
import stat
import time
import uuid
from collections.abc import Iterator
from pathlib import PurePath
from typing import IO, Any

import numpy as np

from docmill.errors import FormatError

__all__ = [
    "BinaryReader",
    "atomic_output",
    "describe",
    "is_file_object",
    "is_url",
    "legacy_suffixes",
    "open_input",
    "readinto_exact",
    "writable_buffer",
    "writable_copy",
]


def is_file_object(file: Any, method: str = "read") -> bool:
    """A file object (it has ``method``), not a path: a str or ``os.PathLike`` (pathlib,
    ``py.path.local`` - pytest's ``tmpdir``, which has a ``read`` method of its own) is
    a name to open, whatever methods it has."""
    return not isinstance(file, str | bytes | os.PathLike) and hasattr(file, method)


def is_url(file: Any) -> bool:
    """True for strings like ``memory://x`` or ``s3://bucket/key`` (handled by fsspec)."""
    return isinstance(file, str) and "://" in file


def describe(file: Any) -> str:
    """A short name for messages."""
    if isinstance(file, str | os.PathLike):
        return repr(os.fspath(file))
    name = getattr(file, "name", None)
    return repr(name) if isinstance(name, str) else f"<{type(file).__name__}>"


def legacy_suffixes(file: Any, protocols: tuple[str, ...]) -> tuple[str | None, str | None]:
    """``(protocol, compress)`` named by a path's suffixes, as docarray 0.21 read them.

    ``data.protobuf.lz4`` -> ``('protobuf', 'lz4')``; ``data.bin`` -> ``(None, None)``.
    """
    from docmill.io._compress import CODEC_IDS

    if not isinstance(file, str | os.PathLike):
        return None, None
    protocol = compress = None
    for suffix in PurePath(os.fspath(file)).suffixes:
        s = suffix[1:]
        if s in protocols:
            protocol = s
        elif s in CODEC_IDS:
            compress = s
    return protocol, compress


def _check_binary_reader(f: Any, what: Any) -> None:
    if isinstance(f, io.TextIOBase) or not hasattr(f, "read"):
        raise TypeError(
            f"{describe(what)} must be a path, an fsspec URL or a binary file object opened "
            f"with 'rb'; got {type(f).__name__}"
        )


def _check_binary_writer(f: Any, what: Any) -> None:
    if isinstance(f, io.TextIOBase) or not hasattr(f, "write"):
        raise TypeError(
            f"{describe(what)} must be a path, an fsspec URL or a binary file object opened "
            f"with 'wb'; got {type(f).__name__}"
        )


@contextlib.contextmanager
def open_input(file: Any) -> Iterator[IO[bytes]]:
    """Open ``file`` (path, fsspec URL or binary file object) for reading bytes.

    A file object is used as is and not closed.
    """
    if is_url(file):
        import fsspec

        try:
            of = fsspec.open(file, "rb")
            f = of.open()
        except FileNotFoundError:
            raise FileNotFoundError(f"no such file: {file!r}") from None
        try:
            yield f
        finally:
            f.close()
    elif isinstance(file, str | os.PathLike):
        try:
            f = open(file, "rb")  # noqa: SIM115 - closed below
        except FileNotFoundError:
            raise FileNotFoundError(f"no such file: {os.fspath(file)!r}") from None
        with f:
            yield f
    else:
        _check_binary_reader(file, file)
        yield file


@contextlib.contextmanager
def atomic_output(file: Any) -> Iterator[IO[bytes]]:
    """A binary file object whose content replaces ``file`` only if the block succeeds."""
    if is_url(file):
        import fsspec.core
        from fsspec.implementations.local import LocalFileSystem

        fs, path = fsspec.core.url_to_fs(file)
        if isinstance(fs, LocalFileSystem):
            with _atomic_local(path) as f:
                yield f
            return
        with _atomic_fsspec(fs, path) as f:
            yield f
    elif isinstance(file, str | os.PathLike):
        with _atomic_local(os.fspath(file)) as f:
            yield f
    else:
        _check_binary_writer(file, file)
        yield file


_TMP_NAME = re.compile(r"\.(?P<name>.+)\.[0-9a-f]{12}\.tmp")
_TMP_GRACE = 5.0  # seconds: a temporary file this young may not be locked by its writer yet


@contextlib.contextmanager
def _atomic_local(path: str) -> Iterator[IO[bytes]]:
    """Write to a locked temporary file beside ``path``, then rename it over ``path``.

    A symlink is followed (its target is replaced, as ``cp`` and editors do), so the
    link stays a link. Temporary files of writers that were killed (SIGKILL, power
    loss) are swept by the next write to the same destination: a live writer holds
    an ``flock`` on its file, so a file whose lock can be taken belongs to nobody.
    """
    path = os.path.realpath(path)
    directory, name = os.path.split(path)
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"cannot write {path!r}: directory {directory!r} does not exist")
    _sweep_temporaries(directory, name)
    tmp = os.path.join(directory, f".{name}.{uuid.uuid4().hex[:12]}.tmp")
    # O_EXCL: never reuse somebody's file; mode 0o666 lets the umask decide, like open()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    with contextlib.suppress(OSError):  # e.g. a file system without flock: no sweeping
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    f = os.fdopen(fd, "wb")
    try:
        yield f
        f.flush()
        os.fsync(f.fileno())
        with contextlib.suppress(FileNotFoundError):
            os.chmod(tmp, stat.S_IMODE(os.stat(path).st_mode))
        os.replace(tmp, path)
        f.close()  # after the rename: the lock is held until the file has its name
    except BaseException:
        f.close()
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _sweep_temporaries(directory: str, name: str) -> None:
    """Delete temporary files of earlier, dead writers of ``directory/name``."""
    now = time.time()
    try:
        entries = [e for e in os.scandir(directory) if e.name.startswith(f".{name}.")]
    except OSError:
        return
    for entry in entries:
        m = _TMP_NAME.fullmatch(entry.name)
        if m is None or m["name"] != name:
            continue
        try:
            if now - entry.stat(follow_symlinks=False).st_mtime < _TMP_GRACE:
                continue
            fd = os.open(entry.path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            continue  # its writer is alive
        else:
            with contextlib.suppress(OSError):
                os.unlink(entry.path)
        finally:
            os.close(fd)


@contextlib.contextmanager
def _atomic_fsspec(fs: Any, path: str) -> Iterator[IO[bytes]]:
    tmp = f"{path}.{uuid.uuid4().hex[:12]}.tmp"
    try:
        with fs.open(tmp, "wb") as f:
            yield f
        fs.mv(tmp, path)
    except BaseException:
        with contextlib.suppress(Exception):
            if fs.exists(tmp):
                fs.rm(tmp)
        raise


_CHUNK = 64 << 20


def writable_buffer(n: int) -> memoryview:
    """``n`` uninitialised, writable bytes.

    A numpy allocation, not a ``bytearray``: numpy asks the kernel for huge pages
    on large buffers and skips zero-filling, so filling it (a copy, ``readinto``)
    runs ~2.5x faster than into a ``bytearray`` here (page faults dominate).
    """
    return memoryview(np.empty(n, np.uint8))


def writable_copy(data: Any) -> memoryview:
    """A writable copy of the bytes of ``data`` (see :func:`writable_buffer`)."""
    src = memoryview(data).cast("B")
    out = np.empty(src.nbytes, np.uint8)
    out[:] = np.frombuffer(src, np.uint8)  # numpy copies without holding the GIL
    return memoryview(out)


class BinaryReader:
    """Exact-size reads with a running offset, over a file object or an in-memory buffer.

    ``payload(n)`` returns *writable* memory, so arrays decoded from it can be
    writable views: for a file a fresh buffer filled with ``readinto`` (the one
    unavoidable copy); for a writable buffer (``bytearray``, writable
    ``memoryview``) a slice of it, no copy at all; for ``bytes`` a copy of the
    slice.
    """

    def __init__(self, source: Any, start: int = 0, probe_size: bool = True) -> None:
        self.offset = start
        if isinstance(source, bytes | bytearray | memoryview):
            self._mem: memoryview | None = memoryview(source).cast("B")
            self._file: Any = None
        else:
            self._mem = None
            self._file = source
            self._end: int | None = None
            try:  # a seekable file's size lets bad lengths fail before any allocation
                # (probe_size=False for decompressing readers: they "seek" by decompressing)
                if probe_size and source.seekable():
                    pos = source.tell()
                    self._end = source.seek(0, io.SEEK_END) - pos + start
                    source.seek(pos)
            except (AttributeError, OSError, ValueError):
                self._end = None

    def remaining(self) -> int | None:
        """Bytes left when known (in-memory buffers, seekable files), else ``None``."""
        if self._mem is not None:
            return len(self._mem) - self.offset
        return None if self._end is None else self._end - self.offset

    def read(self, n: int, what: str) -> bytes:
        """Exactly ``n`` bytes (small reads: headers); short -> :class:`FormatError`."""
        return bytes(self.payload(n, what, copy=False))

    def read_some(self, n: int) -> bytes:
        """Up to ``n`` bytes (fewer only at the end); used to probe for trailing data."""
        if self._mem is not None:
            out = bytes(self._mem[self.offset : self.offset + n])
        else:
            out = self._file.read(n) or b""
        self.offset += len(out)
        return out

    def payload(self, n: int, what: str, copy: bool = True) -> memoryview:
        """Exactly ``n`` bytes as writable memory; short -> :class:`FormatError`.

        ``copy=False``: a slice of read-only in-memory data is returned as a
        read-only view (the caller copies it, or not, later).
        """
        start = self.offset
        if self._mem is not None:
            end = start + n
            if end > len(self._mem):
                raise _truncated(what, n, len(self._mem) - start, start)
            self.offset = end
            view = self._mem[start:end]
            return writable_copy(view) if view.readonly and copy else view
        left = self.remaining()
        if left is not None and n > left:
            raise _truncated(what, n, left, start)
        if left is None and n > _CHUNK:
            # unknown size: grow with the data actually there instead of trusting n
            grown = bytearray()
            while len(grown) < n:
                chunk = self._file.read(min(_CHUNK, n - len(grown)))
                if not chunk:
                    break
                grown += chunk
            got, buf = len(grown), memoryview(grown)
        else:
            buf = writable_buffer(n)
            got = readinto_exact(self._file, buf)
        self.offset += got
        if got != n:
            raise _truncated(what, n, got, start)
        return buf


def _truncated(what: str, wanted: int, got: int, offset: int) -> FormatError:
    return FormatError(
        f"truncated data: {what} at offset {offset} needs {wanted} bytes, only {got} left"
    )


def readinto_exact(f: Any, buf: memoryview) -> int:
    """Fill ``buf`` from ``f`` (looping over short reads); returns the bytes read."""
    view, n = buf, 0
    readinto = getattr(f, "readinto", None)
    while n < len(buf):
        if readinto is not None:
            k = readinto(view[n:])
        else:
            chunk = f.read(len(buf) - n)
            k = len(chunk) if chunk else 0
            view[n : n + k] = chunk or b""
        if not k:
            break
        n += k
    return n
