"""push / pull: DocumentArrays to and from a hub server, any fsspec filesystem, or the
embedded store, with serialization overlapped with the transfer.

::

    da.push("http://hub.example:8080/faces", token="...")    # a docmill hub server
    da.push("s3://bucket/arrays/faces")                      # any fsspec URL
    da.push("faces")            # $DOCMILL_HUB if set, else the embedded store
    da = DocumentArray.pull("faces")
    for doc in DocumentArray.pull_stream("faces"):            # decoded as bytes arrive
        ...
    docmill.hub.list(), docmill.hub.delete("faces")

The upload body is the docmill format built as it is sent: frames are encoded (and
compressed) on worker threads a few ahead while earlier ones go out, so CPU and
network time overlap and the array is never held serialized. The sha256 of the body
is checked end to end (and each frame's own checksum). A pull from a hub keeps a
verified copy keyed by name and ETag in the user cache directory and revalidates it
with ``If-None-Match``; an interrupted download resumes with a ``Range`` request.
"""

from __future__ import annotations

import builtins
import hashlib
import os
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from docmill.errors import FormatError
from docmill.hub._names import check_name, split_target
from docmill.hub._stores import HttpStore, HubError, open_store

if TYPE_CHECKING:
    from docmill.array import DocumentArray
    from docmill.document import Document

__all__ = ["HubError", "delete", "list", "pull", "pull_stream", "push", "push_stream"]

_RESUMES = 3  # Range requests after a broken download, before giving up


def push_stream(
    docs: Iterable[Document],
    name: str,
    show_progress: bool = False,
    public: bool = True,
    token: str | None = None,
    compress: str | None = "lz4",
) -> dict[str, Any]:
    """Upload ``docs`` (any iterable, consumed once, lazily) as the array ``name``;
    returns its metadata (size, documents, sha256, created, public)."""
    from docmill.io._compress import check_compress
    from docmill.io._format import FrameEncoder

    where, name = split_target(name)
    compress = check_compress(compress)
    store = open_store(where, token)
    enc = FrameEncoder(compress)
    bar = _bar(show_progress, f"push {name}")

    def body() -> Iterator[Any]:
        yield enc.header()
        for piece in enc.encode(docs, threads=True):  # the next frames encode meanwhile
            yield piece
            if bar is not None:
                bar.update(memoryview(piece).nbytes)
                bar.set_postfix(documents=enc.count, refresh=False)
        yield enc.end()

    try:
        return store.put(name, body(), public, lambda: enc.count)
    finally:
        store.close()
        if bar is not None:
            bar.close()


def push(
    da: Iterable[Document],
    name: str,
    show_progress: bool = False,
    public: bool = True,
    token: str | None = None,
    compress: str | None = "lz4",
) -> dict[str, Any]:
    """Upload ``da`` as ``name`` (see :func:`push_stream`)."""
    return push_stream(da, name, show_progress, public, token, compress)


def pull_stream(
    name: str, show_progress: bool = False, local_cache: bool = True, token: str | None = None
) -> Iterator[Document]:
    """The Documents of the array ``name``, decoded as its bytes arrive (a few frames
    in memory at most); checked against its sha256 at the end."""
    where, name = split_target(name)
    store = open_store(where, token)
    try:
        yield from _stream(store, name, show_progress, local_cache)
    finally:
        store.close()


def _stream(store: Any, name: str, show_progress: bool, local_cache: bool) -> Iterator[Document]:
    from docmill.io._format import FrameDecoder

    if isinstance(store, HttpStore) and local_cache:
        cached = _cached(store, name)
        if cached is not None:  # revalidated: read the verified copy
            from docmill.io import iter_binary

            yield from iter_binary(cached)
            return
    dec = FrameDecoder()
    bar = _bar(show_progress, f"pull {name}")
    try:
        for chunk in _chunks(store, name):
            if bar is not None:
                bar.update(len(chunk))
            yield from dec.feed(chunk)
        dec.close()
    finally:
        if bar is not None:
            bar.close()


def pull(
    name: str, show_progress: bool = False, local_cache: bool = True, token: str | None = None
) -> DocumentArray:
    """The array ``name`` (see the module docstring for the cache and resume)."""
    from docmill.array import DocumentArray
    from docmill.io import load_binary

    where, name = split_target(name)
    store = open_store(where, token)
    try:
        if not isinstance(store, HttpStore):
            return DocumentArray(_stream(store, name, show_progress, local_cache))
        path = _cached(store, name) if local_cache else None
        if path is None:
            path = _download(store, name, show_progress, keep=local_cache)
    finally:
        store.close()
    try:
        return load_binary(path)  # type: ignore[return-value]
    finally:
        if not local_cache:
            os.unlink(path)


def list(where: str = "", token: str | None = None) -> builtins.list[dict[str, Any]]:
    """The arrays stored at ``where`` (a hub URL, an fsspec URL, or '' for
    ``$DOCMILL_HUB`` / the embedded store), as metadata dicts."""
    if not isinstance(where, str):
        raise TypeError(f"where must be a URL or '', got {type(where).__name__}")
    store = open_store(where or os.environ.get("DOCMILL_HUB", ""), token)
    try:
        return store.list()
    finally:
        store.close()


def delete(name: str, token: str | None = None) -> None:
    """Delete the array ``name`` (``HubError`` 404 if there is none)."""
    where, name = split_target(name)
    store = open_store(where, token)
    try:
        store.delete(name)
    finally:
        store.close()


# ---------------------------------------------------------------------- internals
def _bar(show: bool, desc: str) -> Any:
    if not show:
        return None
    from tqdm.auto import tqdm

    return tqdm(desc=desc, unit="B", unit_scale=True, unit_divisor=1024)


def _chunks(store: Any, name: str) -> Iterator[bytes]:
    """The stored bytes of ``name``, checked against its sha256 at the end."""
    if not isinstance(store, HttpStore):
        _, chunks = store.get(name)
        yield from chunks
        return
    sha, got = hashlib.sha256(), 0
    etag = None
    for attempt in range(_RESUMES + 1):
        r = store.open_download(name, start=got)
        etag = etag or r.headers.get("etag", "").strip('"')
        if got and r.status_code != 206:
            r.close()
            raise HubError(f"the hub did not resume the download of {name!r} (no Range support)")
        try:
            for chunk in r.iter_bytes():
                sha.update(chunk)
                got += len(chunk)
                yield chunk
            break
        except store._httpx.TransportError as e:
            if attempt == _RESUMES:
                raise HubError(f"the download of {name!r} broke {attempt + 1} times: {e}") from e
        finally:
            r.close()
    if etag and sha.hexdigest() != etag:
        raise FormatError(f"the download of {name!r} does not match its sha256 (ETag {etag})")


def _cache_dir(store: HttpStore) -> str:
    home = os.environ.get("DOCMILL_HOME")
    if home:
        base = os.path.join(home, "cache")
    else:
        import platformdirs

        base = platformdirs.user_cache_dir("docmill")
    key = hashlib.sha256(store.url.encode()).hexdigest()[:16]
    return os.path.join(base, "pull", key)


def _cached(store: HttpStore, name: str) -> str | None:
    """The path of a cached copy the hub confirms is current (304), else None."""
    path = os.path.join(_cache_dir(store), check_name(name) + ".docmill")
    try:
        with open(path + ".etag") as f:
            etag = f.read().strip()
    except FileNotFoundError:
        return None
    r = store.open_download(name, etag=etag)
    r.close()
    return path if r.status_code == 304 and os.path.exists(path) else None


def _download(store: HttpStore, name: str, show_progress: bool, keep: bool) -> str:
    """Download ``name`` into the cache (verified, atomically), resuming a broken
    transfer with Range requests; returns the file's path."""
    folder = _cache_dir(store)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, name + ".docmill")
    partial = f"{path}.{os.getpid()}.partial"
    bar = _bar(show_progress, f"pull {name}")
    try:
        with open(partial, "wb") as f:
            for chunk in _chunks(store, name):
                f.write(chunk)
                if bar is not None:
                    bar.update(len(chunk))
            f.flush()
            os.fsync(f.fileno())
        etag = store.meta(name)["sha256"]
        os.replace(partial, path)
        if keep:
            with open(path + ".etag", "w") as f:
                f.write(etag)
        return path
    except BaseException:
        if os.path.exists(partial):
            os.unlink(partial)  # the cache is left as it was
        raise
    finally:
        if bar is not None:
            bar.close()
