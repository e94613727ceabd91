"""``checkpoint=``: results appended to a docmill stream as they complete, so a run
killed and started again redoes at most the work of the last flush interval.

The file is a docmill stream: a header record (the function's fingerprint), then one
record per result, in input order. A record holds the input's id and the result
(a Document as it is, an ndarray, or any value the docmill format stores). Frames are
flushed and fsynced every ``checkpoint_every`` seconds, and when full. A run that
finishes writes the end frame; a killed one leaves complete frames followed by a
cut, which the next run drops. On resume the records are checked against the input
(same position, same id where the items have one) and against the function's
fingerprint: a different input or function raises ``CheckpointMismatch`` (pass
``checkpoint_check=False`` to resume anyway).
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from docmill.document import Document, from_state, state_of
from docmill.errors import DocmillError

__all__ = ["Checkpoint", "CheckpointMismatch", "fingerprint"]

_HEAD = "docmill-checkpoint"
_DOC, _ARRAY, _VALUE, _SKIPPED = "d", "a", "v", "s"
_CHUNKS = 17  # position of chunks in the state tuple


class CheckpointMismatch(DocmillError):
    """A checkpoint was written by another function or for another input."""


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


def _record(index: int, item: Any, result: Any) -> Document:
    from docmill.parallel._runner import FAILED

    rec = Document(id=str(index), tags={"in": _ident(item)})
    if result is FAILED:
        rec.tags["k"] = _SKIPPED
    elif isinstance(result, Document):
        state = list(state_of(rec))
        state[_CHUNKS] = [result]  # as it is: no chunk metadata is set on it
        rec = from_state(tuple(state))
        rec.tags["k"] = _DOC
    elif isinstance(result, np.ndarray):
        rec.embedding, rec.tags["k"] = result, _ARRAY
    else:
        rec.tags.update(k=_VALUE, v=result)
    return rec


def _result(rec: Document) -> Any:
    kind = rec.tags.get("k")
    if kind == _SKIPPED:
        from docmill.parallel._runner import FAILED

        return FAILED
    if kind == _DOC:
        return state_of(rec)[_CHUNKS][0]
    if kind == _ARRAY:
        return rec.embedding
    return rec.tags.get("v")


class Checkpoint:
    """Reads what an earlier run left in ``path``, then appends this run's results."""

    def __init__(self, path: Any, func: Callable[..., Any], every: float, check: bool) -> None:
        self.path = os.fspath(path)
        self.every = every
        self.check = check
        self.fp = fingerprint(func)
        self.done: list[tuple[str | None, Any]] = []  # (input id, result) of earlier runs
        self._file: Any = None
        self._pending: list[Document] = []
        self._last_flush = time.monotonic()
        self._count = 0

    def load(self) -> None:
        """Read the complete records of an earlier run (dropping a cut tail)."""
        from docmill.io._format import FrameDecoder, decode_frame

        if not os.path.exists(self.path):
            return
        dec = FrameDecoder()
        good = 0  # bytes up to the last complete frame
        records: list[Document] = []
        with open(self.path, "rb") as f:
            data = f.read()
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
            good = pos - 32  # reopen before the end frame to append more
        if not records or records[0].id != _HEAD:
            raise CheckpointMismatch(f"{self.path!r} is not a docmill checkpoint")
        if self.check and records[0].tags.get("fp") != self.fp:
            raise CheckpointMismatch(
                f"checkpoint {self.path!r} was written by another function (or another "
                f"version of it); delete it, or pass checkpoint_check=False to resume anyway"
            )
        self.done = [(r.tags.get("in"), _result(r)) for r in records[1:]]
        self._count = len(self.done)
        self._truncate_to = good

    def verify(self, index: int, item: Any) -> None:
        stored = self.done[index][0]
        ident = _ident(item)
        if self.check and stored is not None and ident is not None and stored != ident:
            raise CheckpointMismatch(
                f"checkpoint {self.path!r} holds the result of id {stored!r} at position "
                f"{index}, but the input has id {ident!r} there: it was written for another "
                f"input (pass checkpoint_check=False to resume anyway)"
            )

    def open(self) -> None:
        from docmill.io._format import DEFAULT_CHECKSUM, encode_frame, file_header

        self._encode = encode_frame
        if self._count or (os.path.exists(self.path) and getattr(self, "_truncate_to", 0)):
            self._file = open(self.path, "r+b")  # noqa: SIM115 - closed in close()
            self._file.truncate(self._truncate_to)
            self._file.seek(self._truncate_to)
        else:
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
            self._file = open(self.path, "wb")  # noqa: SIM115 - closed in close()
            self._file.write(file_header(None, DEFAULT_CHECKSUM))
            self._pending.append(Document(id=_HEAD, tags={"fp": self.fp, "version": 1}))
            self._flush()
        self._checksum = DEFAULT_CHECKSUM

    def add(self, index: int, item: Any, result: Any) -> None:
        from docmill.io._format import FrameBudget

        if not isinstance(self._pending, FrameBudget):
            budget = FrameBudget()
            for r in self._pending:
                budget.add(r)
            self._pending = budget  # type: ignore[assignment]
        if self._pending.add(_record(index, item, result)):  # type: ignore[attr-defined]
            self._write()  # a full frame goes out now (memory stays bounded)...
        if time.monotonic() - self._last_flush >= self.every:
            self._flush()  # ... and is made durable every `every` seconds

    def _write(self) -> None:
        from docmill.io._format import DEFAULT_CHECKSUM, FrameBudget, encode_frame

        pending = self._pending.take() if isinstance(self._pending, FrameBudget) else self._pending
        self._pending = [] if not isinstance(self._pending, FrameBudget) else self._pending
        if pending:
            pieces, _, _ = encode_frame(pending, None, 0, DEFAULT_CHECKSUM)
            for p in pieces:
                self._file.write(p)
            self._count += len(pending) - (pending[0].id == _HEAD)

    def _flush(self) -> None:
        self._write()
        self._file.flush()
        os.fsync(self._file.fileno())
        self._last_flush = time.monotonic()

    def close(self, finished: bool) -> None:
        """Flush; a finished run also writes the end frame (the file is then a complete
        docmill stream)."""
        from docmill.io._format import end_frame

        if self._file is None:
            return
        try:
            self._flush()
            if finished:
                self._file.write(end_frame(self._count + 1))
                self._file.flush()
                os.fsync(self._file.fileno())
        finally:
            self._file.close()
            self._file = None

    def restored(self) -> Iterator[tuple[int, Any]]:
        for i, (_, result) in enumerate(self.done):
            yield i, result
