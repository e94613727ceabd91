"""Reading what a uri points to: local paths, ``file://``, ``data:`` URIs and http(s) URLs.

Also data-URI building and MIME type guessing/sniffing. Used by the Document's
``load_uri_*`` / ``convert_*`` methods, by :mod:`docmill.image` and by
:func:`docmill.from_files`::

    read_uri("cat.jpg")                        # bytes
    read_uri_text("https://example.org/a.txt") # str
    to_datauri(b"...", "image/png")            # 'data:image/png;base64,...'

A missing file (or HTTP 404/410) is a :class:`FileNotFoundError` naming the uri;
an unknown scheme is a ``ValueError`` naming it.
"""

from __future__ import annotations

import base64 as _b64
import binascii
import mimetypes
import os
import urllib.error
import urllib.parse
import urllib.request

from docmill.errors import FormatError

__all__ = [
    "DEFAULT_TIMEOUT",
    "decode_datauri",
    "guess_mime_type",
    "read_uri",
    "read_uri_text",
    "sniff_mime_type",
    "to_datauri",
    "uri_to_datauri",
]

#: Seconds an http(s) read may wait for the server before giving up.
DEFAULT_TIMEOUT: float = 60.0


def read_uri(uri: str | os.PathLike[str], timeout: float | None = DEFAULT_TIMEOUT) -> bytes:
    """Return the bytes a uri points to.

    ``uri`` may be a local path, a ``file://`` URL, a ``data:`` URI or an
    ``http(s)://`` URL (fetched with urllib, waiting at most ``timeout``
    seconds). Raises :class:`FileNotFoundError` naming the uri when nothing is
    there (a missing file, or HTTP 404/410).
    """
    if isinstance(uri, os.PathLike):
        uri = os.fspath(uri)
    if not isinstance(uri, str) or not uri:
        raise TypeError(f"uri must be a non-empty str or path, got {uri!r}")
    scheme = _scheme(uri)
    if scheme == "data":
        return decode_datauri(uri)[0]
    if scheme in ("http", "https"):
        return _read_http(uri, timeout)
    if scheme == "file":
        return _read_file(_file_url_to_path(uri), uri)
    if scheme and not os.path.exists(uri):
        raise ValueError(
            f"unsupported uri scheme {scheme!r} in {uri!r}; "
            "use a local path, file://, data: or http(s):// uri"
        )
    return _read_file(uri, uri)


def read_uri_text(
    uri: str | os.PathLike[str], charset: str = "utf-8", timeout: float | None = DEFAULT_TIMEOUT
) -> str:
    """Return the text a uri points to, decoded with ``charset``."""
    data = read_uri(uri, timeout=timeout)
    try:
        return data.decode(charset)
    except UnicodeDecodeError as e:
        raise ValueError(
            f"{uri!r} is not valid {charset} text ({e}); pass the right charset="
        ) from e


def guess_mime_type(uri: str | os.PathLike[str]) -> str | None:
    """The MIME type of a uri: a data URI's declared type, else a guess from the
    file extension (``None`` when unknown)."""
    uri = os.fspath(uri)
    if _scheme(uri) == "data":
        return _datauri_media_type(uri.partition(",")[0][5:])
    path = urllib.parse.urlsplit(uri).path if _scheme(uri) else uri
    return mimetypes.guess_type(path, strict=False)[0]


def decode_datauri(uri: str) -> tuple[bytes, str]:
    """Split a ``data:`` URI into its payload bytes and its media type
    (RFC 2397; the media type defaults to ``text/plain``)."""
    if not uri[:5].lower() == "data:":
        raise ValueError(f"not a data URI (must start with 'data:'): {uri[:60]!r}")
    header, comma, payload = uri[5:].partition(",")
    if not comma:
        raise FormatError(f"malformed data URI, no ',' before the payload: {uri[:60]!r}")
    data = urllib.parse.unquote_to_bytes(payload)
    if header.lower().endswith(";base64"):
        try:
            data = _b64.b64decode(data, validate=False)
        except binascii.Error as e:
            raise FormatError(f"data URI {uri[:60]!r}... has invalid base64: {e}") from e
    return data, _datauri_media_type(header)


def to_datauri(
    data: bytes, mime_type: str, charset: str | None = "utf-8", base64: bool = False
) -> str:
    """Build ``data:<mime_type>[;charset=<charset>][;base64],<payload>``.

    Without ``base64`` the payload is percent-encoded (the legacy format).
    """
    parts = ["data:", mime_type]
    if charset is not None:
        parts += [";charset=", charset]
    if base64:
        parts += [";base64,", _b64.b64encode(data).decode("ascii")]
    else:
        parts += [",", urllib.parse.quote_from_bytes(data)]
    return "".join(parts)


def uri_to_datauri(
    uri: str,
    mime_type: str | None = None,
    charset: str | None = "utf-8",
    base64: bool = False,
    timeout: float | None = DEFAULT_TIMEOUT,
) -> str:
    """Read ``uri`` and return it as a data URI; a data URI is returned unchanged.

    ``mime_type`` defaults to :func:`guess_mime_type`, then to the sniffed image
    type, then to ``application/octet-stream``.
    """
    if _scheme(uri) == "data":
        return uri
    data = read_uri(uri, timeout=timeout)
    mime_type = mime_type or guess_mime_type(uri) or sniff_mime_type(data)
    return to_datauri(data, mime_type, charset=charset, base64=base64)


def _scheme(uri: str) -> str:
    """The lower-cased URL scheme of ``uri``, or '' for a plain path (fast: no urlsplit)."""
    i = uri.find(":")
    if i < 2:  # no colon, or a one-letter drive name
        return ""
    s = uri[:i]
    if (
        s[0].isalpha()
        and s.isascii()
        and s.replace("+", "").replace("-", "").replace(".", "").isalnum()
    ):
        return s.lower()
    return ""


def _read_file(path: str, uri: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise FileNotFoundError(
            f"no file at {uri!r} (not an existing local path; urls must start with "
            "file://, data:, http:// or https://)"
        ) from None


def _file_url_to_path(uri: str) -> str:
    parts = urllib.parse.urlsplit(uri)
    if parts.netloc not in ("", "localhost"):
        raise ValueError(f"file:// uri with a remote host is not supported: {uri!r}")
    return urllib.request.url2pathname(parts.path)


def _read_http(uri: str, timeout: float | None) -> bytes:
    req = urllib.request.Request(uri, headers={"User-Agent": "docmill"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.read()
    except urllib.error.HTTPError as e:
        e.close()  # the error holds the open response
        exc = FileNotFoundError if e.code in (404, 410) else OSError
        raise exc(f"could not fetch {uri!r}: HTTP {e.code} {e.reason}") from None
    except urllib.error.URLError as e:
        if isinstance(e.reason, TimeoutError):
            raise TimeoutError(f"no answer from {uri!r} within {timeout} s") from e
        raise OSError(f"could not fetch {uri!r}: {e.reason}") from e
    except TimeoutError as e:  # raised while reading the body
        raise TimeoutError(f"no answer from {uri!r} within {timeout} s") from e


def _datauri_media_type(header: str) -> str:
    media = header.split(";", 1)[0].strip()
    return media.lower() if "/" in media else "text/plain"


# (magic prefix, MIME type, name) for the formats worth naming in an error
_MAGIC: tuple[tuple[bytes, str, str], ...] = (
    (b"\xff\xd8\xff", "image/jpeg", "JPEG data"),
    (b"\x89PNG\r\n\x1a\n", "image/png", "PNG data"),
    (b"GIF87a", "image/gif", "GIF data"),
    (b"GIF89a", "image/gif", "GIF data"),
    (b"BM", "image/bmp", "BMP data"),
    (b"II*\x00", "image/tiff", "TIFF data"),
    (b"MM\x00*", "image/tiff", "TIFF data"),
    (b"%PDF", "application/pdf", "a PDF document"),
    (b"PK\x03\x04", "application/zip", "a ZIP archive"),
    (b"\x1f\x8b", "application/gzip", "gzip data"),
    (b"\x80\x04", "application/octet-stream", "a Python pickle"),
)


def _sniff(data: bytes) -> tuple[str, str]:
    """(MIME type, human name) of some bytes, from their first bytes."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp", "WebP data"
    for magic, mime, name in _MAGIC:
        if data.startswith(magic):
            return mime, name
    head = data[:512]
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as e:
        text = head[: e.start].decode("utf-8") if e.start > 400 else None
    if text is not None and all(c.isprintable() or c in "\t\r\n" for c in text):
        if text.lstrip().startswith(("<svg", "<?xml")):
            return "image/svg+xml", "SVG/XML text (a vector image Pillow cannot read)"
        return "text/plain", "text"
    return "application/octet-stream", "binary data"


def sniff_mime_type(data: bytes) -> str:
    """The MIME type of some bytes judged from their first bytes: a known magic
    number, else ``text/plain`` for printable UTF-8, else ``application/octet-stream``."""
    return _sniff(data)[0]


def _describe(data: bytes) -> str:
    if not data:
        return "an empty file (0 bytes)"
    return f"{_sniff(data)[1]}, {len(data)} bytes, starting {data[:16]!r}"
