"""Paths, file objects and fsspec URLs; atomic writes; exact reads with offsets."""

from __future__ import annotations

import io
import os
import uuid
from pathlib import Path

import fsspec
import pytest

from docmill import Document, DocumentArray, FormatError
from docmill.io import PROTOCOLS
from docmill.io._files import BinaryReader, atomic_output, legacy_suffixes, open_input


def test_atomic_local_write_replaces_only_on_success(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_output(path) as f:
        f.write(b"new but unfinished")
        assert path.read_bytes() == b"old"  # nothing visible while writing
        raise RuntimeError
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["f.bin"]
    with atomic_output(str(path)) as f:
        f.write(b"new")
    assert path.read_bytes() == b"new" and os.listdir(tmp_path) == ["f.bin"]


def test_new_files_get_umask_permissions(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        with atomic_output(tmp_path / "n.bin") as f:
            f.write(b"x")
    finally:
        os.umask(old)
    assert os.stat(tmp_path / "n.bin").st_mode & 0o777 == 0o644


def test_file_url_is_local_and_atomic(tmp_path: Path) -> None:
    url = (tmp_path / "u.bin").as_uri()
    with atomic_output(url) as f:
        f.write(b"via url")
    with open_input(url) as f:
        assert f.read() == b"via url"


def test_fsspec_memory_write_is_moved_into_place() -> None:
    folder = f"/io-files-{uuid.uuid4().hex}"
    fs = fsspec.filesystem("memory")
    with pytest.raises(ValueError), atomic_output(f"memory://{folder}/a.bin") as f:
        f.write(b"partial")
        raise ValueError
    assert not fs.exists(folder) or fs.ls(folder) == []
    with atomic_output(f"memory://{folder}/a.bin") as f:
        f.write(b"done")
    assert fs.ls(folder, detail=False) == [f"{folder}/a.bin"]
    assert fs.cat(f"{folder}/a.bin") == b"done"
    fs.rm(folder, recursive=True)


def test_file_objects_are_used_as_is() -> None:
    buf = io.BytesIO()
    with atomic_output(buf) as f:
        f.write(b"x")
    assert f is buf and not buf.closed and buf.getvalue() == b"x"
    with pytest.raises(TypeError, match="opened with 'wb'"), atomic_output(io.StringIO()):
        pass
    with pytest.raises(TypeError, match="opened with 'rb'"), open_input(object()):
        pass


def test_legacy_suffixes() -> None:
    names = PROTOCOLS
    assert legacy_suffixes("a/data.protobuf.lz4", names) == ("protobuf", "lz4")
    assert legacy_suffixes(Path("x.pickle-array.gzip"), names) == ("pickle-array", "gzip")
    assert legacy_suffixes("memory://b/x.zstd", names) == (None, "zstd")
    assert legacy_suffixes("plain.bin", names) == (None, None)
    assert legacy_suffixes(io.BytesIO(), names) == (None, None)


# ---------------------------------------------------------------------- BinaryReader
def test_reader_over_bytes_tracks_offsets_and_truncation() -> None:
    r = BinaryReader(b"abcdefgh")
    assert r.read(3, "x") == b"abc" and r.offset == 3 and r.remaining() == 5
    with pytest.raises(
        FormatError, match="truncated data: the tail at offset 3 needs 9 bytes, only 5"
    ):
        r.payload(9, "the tail")
    assert r.read_some(10) == b"defgh" and r.remaining() == 0


def test_reader_payloads_are_writable() -> None:
    copied = BinaryReader(b"abcd").payload(2, "x")  # bytes: copied
    assert not copied.readonly and bytes(copied) == b"ab"
    data = bytearray(b"abcd")
    view = BinaryReader(data).payload(2, "x")
    view[0] = ord("z")  # a writable buffer: a view, no copy
    assert data == b"zbcd"


def test_reader_over_a_seekable_file_knows_its_size(tmp_path: Path) -> None:
    path = tmp_path / "r.bin"
    path.write_bytes(b"0123456789")
    with open(path, "rb") as f:
        f.read(2)
        r = BinaryReader(f)
        assert r.remaining() == 8
        with pytest.raises(FormatError, match="needs 100 bytes, only 8 left"):
            r.payload(100, "x")  # fails before allocating 100 bytes


class _Pipe(io.RawIOBase):
    """Non-seekable, returns at most 3 bytes per read (like a pipe or socket)."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        n = min(3, len(b), len(self._data))
        b[:n], self._data = self._data[:n], self._data[n:]
        return n


def test_reader_over_a_pipe_loops_over_short_reads() -> None:
    r = BinaryReader(_Pipe(b"0123456789"))
    assert r.remaining() is None
    assert bytes(r.payload(8, "x")) == b"01234567"
    with pytest.raises(FormatError, match="truncated data: y at offset 8 needs 5 bytes, only 2"):
        r.payload(5, "y")


def test_reader_over_a_pipe_does_not_trust_huge_lengths(monkeypatch) -> None:
    from docmill.io import _files

    monkeypatch.setattr(_files, "_CHUNK", 4)
    r = BinaryReader(_Pipe(b"0123456789"))
    with pytest.raises(FormatError, match="needs 1000000000000 bytes, only 10 left"):
        r.payload(10**12, "x")  # grows with the data instead of allocating 1 TB


def test_a_killed_writers_temporary_file_is_swept_by_the_next_save(tmp_path) -> None:
    import subprocess
    import sys
    import time

    dest = tmp_path / "out.docmill"
    script = (
        "import os, sys\n"
        "from docmill.io._files import atomic_output\n"
        "with atomic_output(sys.argv[1]) as f:\n"
        "    f.write(b'partial'); f.flush()\n"
        "    os.kill(os.getpid(), 9)\n"
    )
    subprocess.run([sys.executable, "-c", script, str(dest)], timeout=30)
    left = [p.name for p in tmp_path.iterdir()]
    assert len(left) == 1 and left[0].endswith(".tmp")  # SIGKILL leaves it behind
    old = time.time() - 60
    os.utime(tmp_path / left[0], (old, old))
    DocumentArray([Document(text="x")]).save_binary(dest)
    assert [p.name for p in tmp_path.iterdir()] == ["out.docmill"]


def test_a_live_writers_temporary_file_is_left_alone(tmp_path) -> None:
    import time

    dest = tmp_path / "out.docmill"
    with atomic_output(dest) as f:
        f.write(b"a")
        (tmp_name,) = [p for p in tmp_path.iterdir()]
        old = time.time() - 60
        os.utime(tmp_name, (old, old))
        DocumentArray([Document(text="x")]).save_binary(dest)  # a second writer meanwhile
        assert tmp_name.exists()
    assert dest.read_bytes() == b"a"


def test_saving_through_a_symlink_replaces_its_target(tmp_path) -> None:
    target = tmp_path / "real.docmill"
    link = tmp_path / "link.docmill"
    DocumentArray([Document(text="old")]).save_binary(target)
    link.symlink_to(target)
    DocumentArray([Document(text="new")]).save_binary(link)
    assert link.is_symlink()
    assert DocumentArray.load_binary(target)[0].text == "new"
