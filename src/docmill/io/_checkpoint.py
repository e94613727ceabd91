"""``checkpoint=``: results appended to a docmill stream as they complete, so a run
killed and started again redoes at most the work of the last flush interval.

The checkpoint holds a header record (a fingerprint of what wrote it), then one
record per result, in input order. A record holds the input's id and the result (a
Document as it is, an ndarray, or any value the docmill format stores).

Where it lives:

- a local path (or a ``file://`` URL): one docmill stream, appended to. Frames are
  written when full (~8 MB) and fsynced every ``every`` seconds. A run that
  finishes writes the end frame; a killed one leaves complete frames followed by a
  cut, which the next run drops.
- any other fsspec URL (``s3://bucket/run``, ``memory://run``): a folder of parts
  ``part-000000.docmill``, ``part-000001.docmill``..., each a complete docmill
  stream written (uploaded) in one piece when a frame is full or ``every`` seconds
  have passed. Object stores cannot append; an upload is atomic, so a killed run
  leaves whole parts only.

On resume the records are checked against the input (same position, same id where
the items have one) and against the fingerprint: a different input or function
raises :class:`~docmill.errors.CheckpointMismatch` (``check=False`` resumes anyway).

The writing can run on a background thread (``open(background=True)``), when the
caller sees no result before the run ends (``apply``): a result handed out could be
changed in place before the writer reaches it.
"""

from __future__ import annotations

import hashlib
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from docmill.document import Document, from_state, state_of
from docmill.errors import CheckpointMismatch, DocmillError
from docmill.io._files import is_url

__all__ = ["Checkpoint", "CheckpointMismatch", "fingerprint"]

_HEAD = "docmill-checkpoint"
_DOC, _ARRAY, _VALUE, _SKIPPED = "d", "a", "v", "s"
_CHUNKS = 17  # position of chunks in the state tuple
_PART = "part-{:06d}.docmill"
_NOTHING = object()  # skipped= when nothing is ever skipped


def fingerprint(func: Callable[..., Any]) -> str:
    """The function's module, name and code (its bytecode and constants)."""
    f = getattr(func, "func", func)  # the in-place wrapper, a partial
    code = getattr(f, "__code__", None)
    parts = [getattr(f, "__module__", ""), getattr(f, "__qualname__", type(f).__qualname__)]
    if code is not None:
        parts += [code.co_code.hex(), repr(code.co_consts)]
    return hashlib.sha256("\0".join(map(str, parts)).encode()).hexdigest()[:32]


def _ident(item: Any) -> str | None:
    ident = getattr(item, "id", None)
    return ident if isinstance(ident, str) else None


def _record(index: int, item: Any, result: Any, skipped: Any) -> Document:
    rec = Document(id=str(index), tags={"in": _ident(item)})
    if result is skipped:
        rec.tags["k"] = _SKIPPED
    elif isinstance(result, Document):
        state = list(state_of(rec))
        from docmill.array import DocumentArray

        state[_CHUNKS] = DocumentArray([result])  # as it is: no chunk metadata is set on it
        rec = from_state(tuple(state))
        rec.tags["k"] = _DOC
    elif isinstance(result, np.ndarray):
        rec.embedding, rec.tags["k"] = result, _ARRAY
    else:
        rec.tags.update(k=_VALUE, v=result)
    return rec


def _result(rec: Document, skipped: Any) -> Any:
    kind = rec.tags.get("k")
    if kind == _SKIPPED:
        return skipped
    if kind == _DOC:
        return state_of(rec)[_CHUNKS][0]
    if kind == _ARRAY:
        return rec.embedding
    return rec.tags.get("v")


def _read_stream(data: bytes) -> tuple[list[Document], int, bool]:
    """The records of the complete frames in ``data``, the bytes they span, and
    whether the stream is finished (a damaged or cut tail is left out)."""
    from docmill.io._format import FrameDecoder, decode_frame

    dec = FrameDecoder()
    good = 0  # bytes up to the last complete frame
    records: list[Document] = []
    view = memoryview(data)
    pos = 0
    try:
        while pos < len(view) and not dec.done:
            n = dec.wants
            for frame in dec.feed_frames(view[pos : pos + n]):
                records.extend(decode_frame(frame))
            pos += n
            if dec._head is None and not dec.done:  # between frames
                good = pos
    except DocmillError:
        pass  # a damaged tail: everything before it counts
    if dec.done:
        good = pos - 32  # the end frame: reopen before it to append more
    return records, good, dec.done


class Checkpoint:
    """Reads what an earlier run left at ``path``, then appends this run's results.

    ``fp``: the fingerprint of what writes it (a function's, see :func:`fingerprint`);
    ``skipped``: the value that stands for a skipped item (stored as such).
    """

    def __init__(
        self, path: Any, fp: str, every: float, check: bool, skipped: Any = _NOTHING
    ) -> None:
        self.path = os.fspath(path)
        self.every = every
        self.check = check
        self.fp = fp
        self.skipped = skipped
        self.done: list[tuple[str | None, Any]] = []  # (input id, result) of earlier runs
        self._fs: Any = None  # a remote folder of parts
        if is_url(self.path):
            import fsspec.core
            from fsspec.implementations.local import LocalFileSystem

            fs, where = fsspec.core.url_to_fs(self.path)
            if isinstance(fs, LocalFileSystem):
                self.path = where
            else:
                self._fs, self._where = fs, where.rstrip("/")
        self._file: Any = None
        self._open = False  # between open() and close()
        self._truncate_to = 0
        self._parts = 0  # parts written (remote)
        self._frames: list[bytes] = []  # encoded, not uploaded yet (remote)
        self._buffered = self._buffered_docs = 0
        self._budget: Any = None  # the frame being filled
        self._thread: threading.Thread | None = None  # the writer, when in the background
        self._queue: queue.Queue = queue.Queue()
        self._error: BaseException | None = None  # the writer's, raised in the caller
        self._last_flush = time.monotonic()
        self._count = 0

    # -- reading what an earlier run left
    def load(self) -> None:
        """Read the complete records of an earlier run (dropping a cut tail)."""
        records = self._load_parts() if self._fs is not None else self._load_file()
        if records is None:
            return
        if not records or records[0].id != _HEAD:
            raise CheckpointMismatch(f"{self.path!r} is not a docmill checkpoint")
        if self.check and records[0].tags.get("fp") != self.fp:
            raise CheckpointMismatch(
                f"checkpoint {self.path!r} was written by another function (or another "
                f"version of it); delete it, or pass checkpoint_check=False to resume anyway"
            )
        self.done = [(r.tags.get("in"), _result(r, self.skipped)) for r in records[1:]]
        self._count = len(self.done)

    def _load_file(self) -> list[Document] | None:
        if not os.path.exists(self.path):
            return None
        with open(self.path, "rb") as f:
            data = f.read()
        from docmill.io._format import DEFAULT_CHECKSUM, file_header

        if data == b"" or data == file_header(None, DEFAULT_CHECKSUM):
            return None  # killed before its first frame: nothing to resume (not foreign)
        records, self._truncate_to, _ = _read_stream(data)
        return records

    def _load_parts(self) -> list[Document] | None:
        records: list[Document] = []
        while True:
            part = f"{self._where}/{_PART.format(self._parts)}"
            try:
                with self._fs.open(part, "rb") as f:
                    got, _, done = _read_stream(f.read())
            except FileNotFoundError:
                break
            if not done:
                break  # not one upload: left there, and written over by this run
            records.extend(got)
            self._parts += 1
        return records if self._parts else None

    def next_input(self, it: Iterator[Any], index: int) -> Any:
        """The input at ``index`` (the next of ``it``), checked against the record there."""
        item = next(it, _NOTHING)
        if item is _NOTHING:
            raise CheckpointMismatch(
                f"checkpoint {self.path!r} holds {len(self.done)} results but the input has "
                f"only {index} items: it was written for another input"
            )
        self.verify(index, item)
        return item

    def verify(self, index: int, item: Any) -> None:
        stored = self.done[index][0]
        ident = _ident(item)
        if self.check and stored is not None and ident is not None and stored != ident:
            raise CheckpointMismatch(
                f"checkpoint {self.path!r} holds the result of id {stored!r} at position "
                f"{index}, but the input has id {ident!r} there: it was written for another "
                f"input (pass checkpoint_check=False to resume anyway)"
            )

    def restored(self) -> Iterator[tuple[int, Any]]:
        for i, (_, result) in enumerate(self.done):
            yield i, result

    # -- writing this run's results
    def open(self, background: bool = False) -> None:
        """Open for appending; ``background``: encode and write on a writer thread."""
        from docmill.io._format import DEFAULT_CHECKSUM, FrameBudget, file_header

        head = None
        if self._fs is not None:
            if not self._parts:
                head = [Document(id=_HEAD, tags={"fp": self.fp, "version": 1})]
        elif self._count or self._truncate_to:
            self._file = open(self.path, "r+b")  # noqa: SIM115 - closed in close()
            self._file.truncate(self._truncate_to)
            self._file.seek(self._truncate_to)
        else:
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
            self._file = open(self.path, "wb")  # noqa: SIM115 - closed in close()
            self._file.write(file_header(None, DEFAULT_CHECKSUM))
            head = [Document(id=_HEAD, tags={"fp": self.fp, "version": 1})]
        self._budget = FrameBudget()
        if head is not None:
            self._budget.docs.extend(head)  # made durable with the first results
        if background:
            self._queue = queue.Queue(maxsize=2)  # frames handed over: memory stays bounded
            self._thread = threading.Thread(
                target=self._writer, name="docmill-checkpoint", daemon=True
            )
            self._thread.start()
        self._open = True

    def add(self, index: int, item: Any, result: Any) -> None:
        if self._error is not None:
            self._raise()
        if self._budget.add(_record(index, item, result, self.skipped)):
            self.written()  # a full frame goes out now: memory stays bounded

    def written(self, full: bool = True) -> None:
        """Write what was added (``full=False``: only when it is time to fsync), and
        fsync when ``every`` seconds have passed since the last fsync. The core calls
        it before it hands a chunk's results to a caller that could change them."""
        due = time.monotonic() - self._last_flush >= self.every
        if (full or due) and self._budget.docs:
            self._hand_over(self._budget.take(), sync=due)
            if due:
                self._last_flush = time.monotonic()

    def _hand_over(self, docs: list[Document], sync: bool) -> None:
        if self._thread is None:
            self._write(docs, sync)
            return
        while True:  # the writer may have died: never wait on it for ever
            try:
                self._queue.put((docs, sync), timeout=0.1)
                return
            except queue.Full:
                if not self._thread.is_alive():
                    self._raise()

    def _writer(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            try:
                self._write(*job)
            except BaseException as e:
                self._error = e
                while self._queue.get() is not None:  # unblock the producer
                    pass
                return

    def _write(self, docs: list[Document], sync: bool) -> None:
        from docmill.io._format import DEFAULT_CHECKSUM, FRAME_BYTES, encode_frame

        if docs:
            pieces, _, _ = encode_frame(docs, None, 0, DEFAULT_CHECKSUM)
            if self._fs is not None:  # copied now: later changes to the results stay out
                self._frames.append(b"".join(pieces))
                self._buffered += len(self._frames[-1])
                self._buffered_docs += len(docs)
            else:
                for p in pieces:
                    self._file.write(p)
            self._count += len(docs) - (docs[0].id == _HEAD)
        if self._fs is not None:
            if self._frames and (sync or self._buffered >= FRAME_BYTES):
                self._upload()
        elif sync:
            self._file.flush()
            os.fsync(self._file.fileno())

    def _upload(self) -> None:
        """The buffered frames as the next part: a whole stream, uploaded in one piece."""
        from docmill.io._format import DEFAULT_CHECKSUM, end_frame, file_header

        part = f"{self._where}/{_PART.format(self._parts)}"
        with self._fs.open(part, "wb") as f:
            f.write(file_header(None, DEFAULT_CHECKSUM))
            for frame in self._frames:
                f.write(frame)
            f.write(end_frame(self._buffered_docs))
        self._parts += 1
        self._frames, self._buffered, self._buffered_docs = [], 0, 0

    def _raise(self) -> None:
        from docmill.errors import add_note

        e = self._error
        assert e is not None
        add_note(e, f"(while writing the checkpoint {self.path!r})")
        raise e

    def remove(self) -> None:
        """Delete the checkpoint (its work is safe elsewhere)."""
        if self._fs is not None:
            if self._fs.exists(self._where):
                self._fs.rm(self._where, recursive=True)
        elif os.path.exists(self.path):
            os.unlink(self.path)

    def close(self, finished: bool) -> None:
        """Write what is left; a finished local run also writes the end frame (the file
        is then a complete docmill stream)."""
        from docmill.io._format import end_frame

        if not self._open:
            return
        self._open = False
        try:
            tail, last = self._budget.take(), self._fs is not None  # remote: the last part
            if self._thread is not None:
                if self._thread.is_alive():
                    self._queue.put((tail, last))
                    self._queue.put(None)
                self._thread.join()
                self._thread = None
            else:
                self._write(tail, last)
            if self._error is not None:
                self._raise()
            if self._file is not None:
                if finished:
                    self._file.write(end_frame(self._count + 1))
                self._file.flush()
                os.fsync(self._file.fileno())  # one fsync for the tail and the end
        finally:
            if self._file is not None:
                self._file.close()
                self._file = None
