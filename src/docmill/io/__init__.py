"""Storage: Documents and DocumentArrays as bytes, files and JSON.

Protocols (``protocol=``):

- ``'docmill'`` (default): docmill's own framed format (:mod:`docmill.io._format`):
  magic + version header, length-prefixed frames with checksums (XXH3 when the
  ``xxhash`` package is installed, else CRC-32), metadata in msgpack, ndarrays
  as raw aligned memory (decoded as writable views, no extra copy), compression
  per frame and recorded in the file, streamable both ways.
- ``'protobuf'`` / ``'protobuf-array'``: docarray 0.21's ``DocumentProto``
  layouts, byte-compatible both ways (needs ``pip install 'docmill[protobuf]'``).
- ``'pickle'`` / ``'pickle-array'``: pickled docmill objects (trusted data only).

Compression (``compress=``): ``None``, 'lz4', 'zstd', 'zlib', 'gzip', 'bz2',
'lzma'. ``file=``: a path, an fsspec URL (``memory://``, ``s3://``...) or a
binary file object; writes to paths and URLs are atomic. Bad data raises
:class:`docmill.FormatError` naming the offset and what was expected.

For streams that are not files (an HTTP body, a socket), the format's sans-IO
pieces: :func:`encode_docs` yields a docmill stream's bytes from any iterable
of Documents, and :class:`FrameDecoder` is fed byte chunks of any size and
returns the Documents completed so far.
"""

from docmill.io._binary import (
    PROTOCOLS,
    BinaryWriter,
    array_from_bytes,
    array_to_bytes,
    document_from_bytes,
    document_to_bytes,
    iter_binary,
    load_binary,
    save_binary,
    save_binary_stream,
)
from docmill.io._compress import CODEC_IDS
from docmill.io._format import MAGIC, VERSION, FrameDecoder, encode_docs
from docmill.io._json import (
    array_from_json,
    array_from_list,
    array_to_json,
    array_to_list,
    document_from_dict,
    document_from_json,
    document_to_dict,
    document_to_json,
    load_json,
    save_json,
)

#: every value ``compress=`` accepts
COMPRESSIONS: tuple[str | None, ...] = tuple(CODEC_IDS)

__all__ = [
    "COMPRESSIONS",
    "MAGIC",
    "PROTOCOLS",
    "VERSION",
    "BinaryWriter",
    "FrameDecoder",
    "array_from_bytes",
    "array_from_json",
    "array_from_list",
    "array_to_bytes",
    "array_to_json",
    "array_to_list",
    "document_from_bytes",
    "document_from_dict",
    "document_from_json",
    "document_to_bytes",
    "document_to_dict",
    "document_to_json",
    "encode_docs",
    "iter_binary",
    "load_binary",
    "load_json",
    "save_binary",
    "save_binary_stream",
    "save_json",
]
