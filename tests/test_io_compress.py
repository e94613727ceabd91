"""The codec registry: frame compression, legacy one-shot calls, whole-stream files."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import zlib

import lz4.frame
import numpy as np
import pytest
import zstandard

from docmill import FormatError
from docmill.io._compress import (
    CODEC_IDS,
    CODEC_NAMES,
    check_compress,
    compress_bytes,
    compress_pieces,
    decompress_bytes,
    decompress_exact,
    stream_reader,
    stream_writer,
)

NAMES = [n for n in CODEC_IDS if n is not None]
DATA = b"docmill " * 5000 + bytes(range(256))


def test_codec_ids_are_stable() -> None:
    # recorded in files: renumbering would break every file written before
    assert CODEC_IDS == {None: 0, "lz4": 1, "zstd": 2, "zlib": 3, "gzip": 4, "bz2": 5, "lzma": 6}
    assert all(CODEC_IDS[CODEC_NAMES[i]] == i for i in CODEC_NAMES)


def test_check_compress() -> None:
    assert check_compress(None) is None and check_compress("lz4") == "lz4"
    for bad in ("LZ4", "snappy", 1, ""):
        with pytest.raises(ValueError, match="is not supported; use one of: None, 'lz4'"):
            check_compress(bad)


@pytest.mark.parametrize("name", NAMES)
def test_pieces_compress_like_their_concatenation(name: str) -> None:
    a = np.arange(10_000, dtype=np.int32)
    pieces = [b"head", memoryview(a), b"", DATA]
    size = sum(memoryview(p).nbytes for p in pieces)
    packed = b"".join(compress_pieces(name, pieces, size))
    out = decompress_exact(name, packed, size)
    assert not memoryview(out).readonly and bytes(out) == b"head" + a.tobytes() + DATA
    assert len(packed) < size


@pytest.mark.parametrize("name", NAMES)
def test_decompress_exact_checks_size_and_data(name: str) -> None:
    packed = b"".join(compress_pieces(name, [DATA], len(DATA)))
    with pytest.raises(FormatError, match=f"{name}.*(expected|more|incomplete)"):
        decompress_exact(name, packed, len(DATA) - 1)
    with pytest.raises(FormatError, match=name):
        decompress_exact(name, packed, len(DATA) + 1)
    with pytest.raises(FormatError, match=name):
        decompress_exact(name, packed[: len(packed) // 2], len(DATA))
    with pytest.raises(FormatError, match=f"{name} data"):
        decompress_exact(name, b"\x00garbage" * 4, len(DATA))


@pytest.mark.parametrize(
    ("name", "reference"),
    [
        ("lz4", lz4.frame.decompress),
        ("zstd", zstandard.ZstdDecompressor().decompress),
        ("zlib", zlib.decompress),
        ("gzip", gzip.decompress),
        ("bz2", bz2.decompress),
        ("lzma", lzma.decompress),
    ],
)
def test_legacy_one_shot_calls_are_the_standard_formats(name, reference) -> None:
    packed = compress_bytes(DATA, name)
    assert reference(packed) == DATA
    assert decompress_bytes(packed, name) == DATA
    with pytest.raises(FormatError, match=f"{name} data does not decompress"):
        decompress_bytes(b"not compressed at all", name)


def test_no_compression_passes_through() -> None:
    assert compress_bytes(DATA, None) is DATA and decompress_bytes(DATA, None) is DATA


@pytest.mark.parametrize("name", [*NAMES, None])
def test_stream_writer_and_reader(name) -> None:
    raw = io.BytesIO()
    w = stream_writer(raw, name)
    for i in range(0, len(DATA), 1000):
        w.write(DATA[i : i + 1000])
    w.close()
    assert not raw.closed
    raw.seek(0)
    r = stream_reader(raw, name)
    out = bytearray()
    while chunk := r.read(777):
        out += chunk
    assert out == DATA


def test_zlib_stream_reader_reports_truncation() -> None:
    raw = io.BytesIO()
    w = stream_writer(raw, "zlib")
    w.write(DATA)
    w.close()
    r = stream_reader(io.BytesIO(raw.getvalue()[:-20]), "zlib")
    with pytest.raises(EOFError, match="zlib stream ends"):
        r.read()


# ---------------------------------------------------------------------- hostile sizes
@pytest.mark.parametrize("name", NAMES)
def test_a_claimed_size_is_not_allocated_before_the_data_holds_it(name) -> None:
    # a frame header claiming 2**40 decompressed bytes: FormatError, never MemoryError
    packed = b"".join(compress_pieces(name, [DATA], len(DATA)))
    with pytest.raises(FormatError, match=name):
        decompress_exact(name, packed, 1 << 40)


def _lz4_claiming(size: int) -> bytes:
    """An lz4 frame whose own header claims ``size`` content bytes (checksum fixed up)."""
    import xxhash

    frame = bytearray(lz4.frame.compress(b"tiny", store_size=True))
    assert frame[4] & 0x08  # the content-size flag
    frame[6:14] = size.to_bytes(8, "little")
    frame[14] = (xxhash.xxh32(bytes(frame[4:14])).intdigest() >> 8) & 0xFF
    return bytes(frame)


def test_lz4_content_size_claims_are_not_trusted() -> None:
    data = _lz4_claiming(1 << 40)
    with pytest.raises(MemoryError):  # what the library's one-shot call does with it
        lz4.frame.decompress(data)
    with pytest.raises(FormatError, match="lz4"):  # legacy per-Document records
        decompress_bytes(data, "lz4")
    with pytest.raises(_errors()):  # whole-stream files: the reader maps these to FormatError
        stream_reader(io.BytesIO(data), "lz4").read()


def test_a_decompression_bomb_stops_at_the_expected_size(tmp_path) -> None:
    # 1 GiB of zeros in ~4 MB of lz4, claimed as 1 MiB: must fail without inflating it
    import subprocess
    import sys

    script = (
        "import resource, lz4.frame\n"
        "from docmill.io._compress import decompress_exact\n"
        "from docmill import FormatError\n"
        "c = lz4.frame.LZ4FrameCompressor()\n"
        "bomb = c.begin() + b''.join(c.compress(bytes(1 << 24)) for _ in range(64)) + c.flush()\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "try:\n"
        "    decompress_exact('lz4', bomb, 1 << 20)\n"
        "except FormatError:\n"
        "    pass\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout) < 64 * 1024  # KiB: far below the 1 GiB it would inflate to


@pytest.mark.parametrize("name", NAMES)
def test_every_truncated_stream_is_detected(name) -> None:
    packed = compress_bytes(DATA, name)
    for cut in range(len(packed)):
        with pytest.raises(FormatError):
            decompress_bytes(packed[:cut], name)
        with pytest.raises((EOFError, *_errors())):
            stream_reader(io.BytesIO(packed[:cut]), name).read()


def _errors():
    from docmill.io._compress import DECODE_ERRORS

    return DECODE_ERRORS
