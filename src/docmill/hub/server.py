"""The docmill hub server: ``docmill hub serve --root DIR``.

A starlette app (extra ``docmill[hub]``) over a folder of arrays, each a docmill
stream ``NAME.docmill`` with its metadata ``NAME.json``. JSON API:

=======================================  ================================================
``PUT /api/arrays/NAME?public=true``      upload (token needed); the body streams to a
                                          temporary file in the root, each frame header
                                          and payload checksum verified as it arrives,
                                          then fsynced and renamed into place; the
                                          metadata is written last
``GET /api/arrays/NAME``                  download (streaming, ETag = sha256,
                                          Content-Length, Range, If-None-Match -> 304)
``GET /api/arrays/NAME/meta``             metadata
``GET /api/arrays``                       list (name, size, documents, created, public)
``DELETE /api/arrays/NAME``               delete (token needed)
``GET /`` and ``GET /arrays/NAME``        HTML: the arrays, and a preview of one
=======================================  ================================================

Security: writes always need a token (``Authorization: Bearer``), reads of private
arrays too; tokens are kept hashed (``docmill hub token``) and compared in constant
time. Names are a safe alphabet (anything else: 400), a body above ``max_bytes``
is refused with 413 and nothing is stored, and only ``root/NAME.*`` is ever opened.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import html
import json
import logging
import os
import secrets
import time
from typing import Any

from docmill.errors import FormatError, require
from docmill.hub._names import check_name

__all__ = ["TokenFile", "create_app", "serve"]

log = logging.getLogger("docmill.hub")


def _starlette() -> Any:
    return require("starlette", "hub", "the hub server")


# ---------------------------------------------------------------------- tokens
class TokenFile:
    """Tokens stored hashed (sha256) in a JSON file: ``{name: hash}``."""

    def __init__(self, path: str | None) -> None:
        self.path = path

    def _load(self) -> dict[str, str]:
        if not self.path or not os.path.exists(self.path):
            return {}
        with open(self.path) as f:
            return json.load(f)

    def _save(self, tokens: dict[str, str]) -> None:
        assert self.path
        tmp = f"{self.path}.{os.getpid()}.tmp"
        with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
            json.dump(tokens, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    def create(self, name: str) -> str:
        """A new token called ``name``; only its hash is stored: shown once."""
        tokens = self._load()
        if name in tokens:
            raise ValueError(f"a token named {name!r} exists; revoke it first")
        token = secrets.token_urlsafe(32)
        tokens[name] = hashlib.sha256(token.encode()).hexdigest()
        self._save(tokens)
        return token

    def names(self) -> list[str]:
        return sorted(self._load())

    def revoke(self, name: str) -> None:
        tokens = self._load()
        if tokens.pop(name, None) is None:
            raise ValueError(f"no token named {name!r}")
        self._save(tokens)

    def check(self, token: str | None) -> bool:
        """True when ``token`` is one of the stored ones (constant time per token)."""
        if not token:
            return False
        digest = hashlib.sha256(token.encode()).hexdigest()
        ok = False
        for stored in self._load().values():
            ok |= hmac.compare_digest(digest, stored)
        return ok


# ---------------------------------------------------------------------- the app
def create_app(root: str, token_file: str | None = None, max_bytes: int | None = None) -> Any:
    """The starlette app serving the arrays under ``root``."""
    _starlette()
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
    from starlette.routing import Route

    root = os.path.realpath(root)
    os.makedirs(root, exist_ok=True)
    tokens = TokenFile(token_file)

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    def authorized(request: Request) -> bool:
        auth = request.headers.get("authorization", "")
        return auth.startswith("Bearer ") and tokens.check(auth[len("Bearer ") :])

    locks: dict[str, asyncio.Lock] = {}

    def meta_path(name: str) -> str:
        return os.path.join(root, name + ".json")

    def data_path(meta: dict) -> str:
        # content-addressed: a file never changes once written, so a reader that opened
        # it keeps reading it while a newer push replaces the array
        return os.path.join(root, check_name(meta["file"][: -len(".docmill")]) + ".docmill")

    def read_meta(name: str) -> dict | None:
        try:
            with open(meta_path(name)) as f:
                return json.load(f)
        except FileNotFoundError:
            return None

    def named(request: Request) -> str | None:
        try:
            return check_name(request.path_params["name"])
        except ValueError:
            return None

    def target(request: Request) -> str | JSONResponse:
        """The array name in the path, or the 400 answer to a bad one."""
        name = named(request)
        if name is None:
            return error(400, f"invalid array name {request.path_params['name']!r}")
        return name

    def readable(request: Request, meta: dict) -> bool:
        return bool(meta.get("public")) or authorized(request)

    def visible(request: Request) -> tuple[str, dict] | JSONResponse:
        """The name and metadata of an array the caller may read, or the answer why
        not (400 bad name, 404 none, 401 private)."""
        name = target(request)
        if isinstance(name, JSONResponse):
            return name
        meta = read_meta(name)
        if meta is None:
            return error(404, f"no array named {name!r}")
        if not readable(request, meta):
            return error(401, f"array {name!r} is private: pass a token")
        return name, meta

    async def upload(request: Request) -> Response:
        name = target(request)
        if isinstance(name, JSONResponse):
            return name
        if not authorized(request):
            return error(401, "uploads need a valid token")
        public = request.query_params.get("public", "true").lower() != "false"
        tmp = os.path.join(root, f".{name}.{secrets.token_hex(6)}.tmp")
        sha, size = hashlib.sha256(), 0
        from docmill.io._format import FrameDecoder, payload_checksum

        dec = FrameDecoder()
        documents = 0
        try:
            with open(tmp, "wb") as f:
                async for chunk in request.stream():
                    size += len(chunk)
                    if max_bytes is not None and size > max_bytes:
                        return error(413, f"the array is larger than {max_bytes} bytes")
                    sha.update(chunk)
                    for frame in dec.feed_frames(chunk):
                        if payload_checksum(frame.checksum_kind, (frame.payload,)) != frame.crc:
                            return error(400, f"corrupt frame at offset {frame.at}")
                        documents += frame.count
                    f.write(chunk)
                dec.close()
                f.flush()
                os.fsync(f.fileno())
            digest = sha.hexdigest()
            meta = {
                "name": name,
                "size": size,
                "documents": documents,
                "sha256": digest,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()),
                "public": public,
                "file": f"{name}.{digest[:16]}.docmill",
            }
            async with locks.setdefault(name, asyncio.Lock()):  # one writer per name at a time
                old = read_meta(name)
                os.replace(tmp, data_path(meta))
                meta_tmp = tmp + ".json"
                with open(meta_tmp, "w") as f:
                    json.dump(meta, f)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(meta_tmp, meta_path(name))
                _fsync_dir(root)
                if old is not None and old.get("file") != meta["file"]:
                    with contextlib.suppress(FileNotFoundError, ValueError):
                        os.unlink(data_path(old))
            return JSONResponse(meta, status_code=201)
        except FormatError as e:
            return error(400, f"not a docmill stream: {e}")
        finally:
            for p in (tmp, tmp + ".json"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(p)

    async def download(request: Request) -> Response:
        found = visible(request)
        if isinstance(found, JSONResponse):
            return found
        _, meta = found
        etag = f'"{meta["sha256"]}"'
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers={"etag": etag})
        return FileResponse(
            data_path(meta),
            media_type="application/x-docmill",
            headers={"etag": etag, "x-docmill-documents": str(meta["documents"])},
        )

    async def meta(request: Request) -> Response:
        found = visible(request)
        return found if isinstance(found, JSONResponse) else JSONResponse(found[1])

    def all_meta(request: Request) -> list[dict]:
        out = []
        for entry in sorted(os.listdir(root)):
            if entry.endswith(".json") and not entry.startswith("."):
                m = read_meta(entry[: -len(".json")])
                if m is not None and readable(request, m):
                    out.append(m)
        return out

    async def listing(request: Request) -> Response:
        return JSONResponse({"arrays": all_meta(request)})

    async def remove(request: Request) -> Response:
        name = target(request)
        if isinstance(name, JSONResponse):
            return name
        if not authorized(request):
            return error(401, "deletes need a valid token")
        m = read_meta(name)
        if m is None:
            return error(404, f"no array named {name!r}")
        async with locks.setdefault(name, asyncio.Lock()):
            for p in (meta_path(name), data_path(m)):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(p)
        return JSONResponse({"deleted": name})

    async def index_page(request: Request) -> Response:
        rows = "".join(
            f"<tr><td><a href='/arrays/{html.escape(m['name'])}'>{html.escape(m['name'])}</a>"
            f"</td><td class=size>{_size(m['size'])}</td><td class=docs>{m['documents']}</td>"
            f"<td>{html.escape(m['created'])}</td>"
            f"<td>{'public' if m['public'] else 'private'}</td></tr>"
            for m in all_meta(request)
        )
        body = (
            "<h1>docmill hub</h1><table id=arrays><tr><th>array</th><th>size</th>"
            f"<th>documents</th><th>created</th><th>visibility</th></tr>{rows}</table>"
        )
        return HTMLResponse(_page("docmill hub", body))

    async def array_page(request: Request) -> Response:
        name = named(request)
        m = read_meta(name) if name else None
        if m is None or not readable(request, m):
            return HTMLResponse(_page("not found", "<h1>no such array</h1>"), status_code=404)
        docs = await asyncio.to_thread(_preview, data_path(m), 20)
        items = "".join(_doc_html(d) for d in docs)
        body = (
            f"<h1>{html.escape(name)}</h1><p>{m['documents']} documents, {_size(m['size'])}, "  # type: ignore[arg-type]
            f"{'public' if m['public'] else 'private'}</p><ul id=docs>{items}</ul>"
        )
        return HTMLResponse(_page(name, body))  # type: ignore[arg-type]

    async def logged(scope: Any, receive: Any, send: Any) -> None:
        status: list[int] = []

        async def send_(message: Any) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
            await send(message)

        t0 = time.monotonic()
        await app(scope, receive, send_)
        if scope["type"] == "http":
            log.info(
                "%s %s %s %.1f ms", scope["method"], scope["path"], status[0] if status else "-",
                (time.monotonic() - t0) * 1e3,
            )  # fmt: skip

    app = Starlette(
        routes=[
            Route("/", index_page),
            Route("/arrays/{name}", array_page),
            Route("/api/arrays", listing),
            Route("/api/arrays/{name}", upload, methods=["PUT"]),
            Route("/api/arrays/{name}", download, methods=["GET", "HEAD"]),
            Route("/api/arrays/{name}", remove, methods=["DELETE"]),
            Route("/api/arrays/{name}/meta", meta),
        ]
    )
    return logged


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)  # pragma: no cover


def _page(title: str, body: str) -> str:
    return (
        f"<!doctype html><html><head><meta charset=utf-8><title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif;margin:2em}td,th{padding:.3em .8em;text-align:left}"
        "img{max-width:96px;max-height:96px}</style></head>"
        f"<body>{body}</body></html>"
    )


def _preview(path: str, n: int) -> list:
    from itertools import islice

    from docmill.io import iter_binary

    it = iter_binary(path)
    try:
        return list(islice(it, n))
    finally:
        it.close()  # type: ignore[attr-defined]


def _doc_html(d: Any) -> str:
    parts = [f"<b class=id>{html.escape(d.id)}</b>"]
    if d.text:
        parts.append(f"<span class=text>{html.escape(d.text[:200])}</span>")
    if "tags" in d.non_empty_fields:
        parts.append(f"<code>{html.escape(json.dumps(d.tags, default=str)[:200])}</code>")
    thumb = _thumbnail(d)
    if thumb:
        parts.append(f"<img alt='{html.escape(d.id)}' src='{thumb}'>")
    return f"<li>{' '.join(parts)}</li>"


def _thumbnail(d: Any) -> str | None:
    """A data URI of a small PNG of the Document's image tensor or image uri."""
    uri = d.uri
    if uri.startswith("data:image/"):
        return uri
    t = d.tensor
    if t is None or getattr(t, "ndim", 0) not in (2, 3):
        return None
    try:
        import numpy as np

        from docmill import image

        a = np.asarray(t)
        if a.ndim == 3 and a.shape[0] in (1, 3, 4) and a.shape[-1] not in (1, 3, 4):
            a = np.moveaxis(a, 0, -1)  # C x H x W
        if a.dtype != np.uint8:
            lo, hi = float(a.min()), float(a.max())
            a = ((a - lo) / ((hi - lo) or 1) * 255).astype(np.uint8)
        return image.image_to_datauri(a, -1, "png")
    except Exception:
        return None


def serve(
    root: str,
    host: str = "127.0.0.1",
    port: int = 8080,
    token_file: str | None = None,
    max_bytes: int | None = None,
) -> None:
    """Run the hub with uvicorn until interrupted."""
    _starlette()
    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    uvicorn.run(create_app(root, token_file, max_bytes), host=host, port=port, log_level="warning")
