"""Where pushed arrays live: a docmill hub server (HTTP), any fsspec filesystem, or the
embedded store in the user cache directory. One small interface, three stores.

Every stored array is a docmill stream (``NAME.docmill``) plus its metadata
(``NAME.json``: size, documents, sha256, created, public). A store writes the stream
as it is produced (never the whole array serialized at once) and the metadata last,
so a reader never sees an incomplete array.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import time
from collections.abc import Iterable, Iterator
from typing import Any

from docmill.errors import DocmillError, FormatError, require
from docmill.hub._names import check_name

__all__ = ["FsspecStore", "HttpStore", "HubError", "Meta", "open_store"]

Meta = dict[str, Any]
_CHUNK = 1 << 20


class HubError(DocmillError):
    """A hub request failed (not found, refused, or the connection broke)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def open_store(where: str, token: str | None = None) -> Any:
    """The store for ``where``: '' -> the embedded store, http(s) -> a hub, else fsspec."""
    if not where:
        return FsspecStore(embedded_root())
    if where.startswith(("http://", "https://")):
        return HttpStore(where, token)
    return FsspecStore(where)


def embedded_root() -> str:
    """The embedded store's folder: ``$DOCMILL_HOME/hub``, else the user data directory."""
    home = os.environ.get("DOCMILL_HOME")
    if home:
        return os.path.join(home, "hub")
    import platformdirs

    return os.path.join(platformdirs.user_data_dir("docmill"), "hub")


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


class _Counted:
    """Wraps a body iterator: counts bytes and hashes them as they pass."""

    def __init__(self, body: Iterable[Any]) -> None:
        self._body = body
        self.sha = hashlib.sha256()
        self.size = 0

    def __iter__(self) -> Iterator[bytes]:
        for piece in self._body:
            b = piece if isinstance(piece, bytes) else bytes(piece)
            self.sha.update(b)
            self.size += len(b)
            yield b


# ---------------------------------------------------------------------- fsspec / embedded
class FsspecStore:
    """Arrays as files under an fsspec URL or a local folder."""

    def __init__(self, root: str) -> None:
        import fsspec.core

        self.root = root
        self.fs, self.path = fsspec.core.url_to_fs(root)
        self.describe = root

    def _p(self, name: str, ext: str) -> str:
        return f"{self.path.rstrip('/')}/{check_name(name)}.{ext}"

    def _url(self, name: str, ext: str) -> str:
        return f"{self.fs.unstrip_protocol(self._p(name, ext))}"

    def close(self) -> None:
        pass

    def put(self, name: str, body: Iterable[Any], public: bool, documents: Any) -> Meta:
        from docmill.io._files import atomic_output

        self.fs.makedirs(self.path, exist_ok=True)
        counted = _Counted(body)
        with atomic_output(self._url(name, "docmill")) as f:
            for b in counted:
                f.write(b)
        meta = {
            "name": name,
            "size": counted.size,
            "documents": documents(),
            "sha256": counted.sha.hexdigest(),
            "created": _now(),
            "public": bool(public),
        }
        with atomic_output(self._url(name, "json")) as f:
            f.write(json.dumps(meta).encode())
        return meta

    def meta(self, name: str) -> Meta:
        try:
            with self.fs.open(self._p(name, "json"), "rb") as f:
                return json.loads(f.read())
        except FileNotFoundError:
            raise HubError(f"no array named {name!r} in {self.describe}", 404) from None

    def get(self, name: str, cache: bool = True) -> tuple[Meta, Iterator[bytes]]:
        meta = self.meta(name)

        def chunks() -> Iterator[bytes]:
            sha = hashlib.sha256()
            with self.fs.open(self._p(name, "docmill"), "rb") as f:
                while chunk := f.read(_CHUNK):
                    sha.update(chunk)
                    yield chunk
            if sha.hexdigest() != meta["sha256"]:
                raise FormatError(
                    f"array {name!r} in {self.describe} does not match its sha256: the stored "
                    f"file changed or is damaged"
                )

        return meta, chunks()

    def list(self) -> list[Meta]:
        try:
            names = self.fs.ls(self.path, detail=False)
        except FileNotFoundError:
            return []
        out = []
        for p in sorted(names):
            base = p.rstrip("/").rsplit("/", 1)[-1]
            if base.endswith(".json") and not base.startswith("."):
                try:
                    out.append(self.meta(base[: -len(".json")]))
                except (HubError, ValueError):
                    continue
        return out

    def delete(self, name: str) -> None:
        self.meta(name)  # HubError 404 when absent
        for ext in ("json", "docmill"):
            try:
                self.fs.rm(self._p(name, ext))
            except FileNotFoundError:
                pass


# ---------------------------------------------------------------------- HTTP hub
class HttpStore:
    """A docmill hub server (``docmill hub serve``), through httpx."""

    RETRIES = 3  # connection attempts per request (connect errors only)

    def __init__(self, url: str, token: str | None = None) -> None:
        self._httpx = httpx = require("httpx", "hub", "pushing to / pulling from a hub server")
        self.url = url.rstrip("/")
        self.describe = self.url
        token = token or os.environ.get("DOCMILL_TOKEN") or None
        headers = {"authorization": f"Bearer {token}"} if token else {}
        self.client = httpx.Client(
            headers=headers, timeout=httpx.Timeout(60.0, connect=10.0), follow_redirects=False
        )

    def close(self) -> None:
        self.client.close()

    def _request(self, method: str, path: str, **kw: Any) -> Any:
        httpx = self._httpx
        for attempt in range(self.RETRIES):
            try:
                return self.client.request(method, self.url + path, **kw)
            except httpx.ConnectError as e:
                if attempt == self.RETRIES - 1 or "content" in kw:  # a body cannot be resent
                    raise HubError(f"cannot reach the hub at {self.url}: {e}") from e
                time.sleep(0.2 * 2**attempt)
            except httpx.TransportError as e:
                raise HubError(f"the connection to {self.url} broke: {e}") from e
        raise AssertionError("unreachable")  # pragma: no cover

    def _check(self, r: Any, name: str | None = None) -> Any:
        if r.status_code < 400:
            return r
        try:
            detail = r.json().get("error", r.text)
        except ValueError:
            detail = r.text
        what = f" (array {name!r})" if name else ""
        hint = {401: " (pass token= or set DOCMILL_TOKEN)", 403: " (this token may not do that)"}
        raise HubError(
            f"hub {self.url} answered {r.status_code}{what}: {detail}{hint.get(r.status_code, '')}",
            r.status_code,
        )

    def put(self, name: str, body: Iterable[Any], public: bool, documents: Any) -> Meta:
        counted = _Counted(body)
        r = self._request(
            "PUT",
            f"/api/arrays/{check_name(name)}",
            params={"public": "true" if public else "false"},
            content=iter(counted),
            headers={"content-type": "application/x-docmill"},
        )
        meta = self._check(r, name).json()
        if meta.get("sha256") != counted.sha.hexdigest():
            raise HubError(f"the hub stored array {name!r} with another sha256 than was sent")
        return meta

    def meta(self, name: str) -> Meta:
        return self._check(
            self._request("GET", f"/api/arrays/{check_name(name)}/meta"), name
        ).json()

    def list(self) -> list[Meta]:
        return self._check(self._request("GET", "/api/arrays")).json()["arrays"]

    def delete(self, name: str) -> None:
        self._check(self._request("DELETE", f"/api/arrays/{check_name(name)}"), name)

    def open_download(self, name: str, etag: str | None = None, start: int = 0) -> Any:
        """A streaming response (status 200, 206 from ``start``, or 304 for ``etag``)."""
        headers = {}
        if etag:
            headers["if-none-match"] = f'"{etag}"'
        if start:
            headers["range"] = f"bytes={start}-"
        req = self.client.build_request("GET", f"{self.url}/api/arrays/{name}", headers=headers)
        try:
            r = self.client.send(req, stream=True)
        except self._httpx.TransportError as e:
            raise HubError(f"cannot download {name!r} from {self.url}: {e}") from e
        if r.status_code >= 400:
            r.read()
            self._check(r, name)
        return r
