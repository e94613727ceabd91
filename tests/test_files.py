"""from_files: glob semantics, options, laziness, and DocumentArray.from_files."""

from __future__ import annotations

import base64
import glob
import itertools
import os
import random
from pathlib import Path

import pytest

from docmill import Document, DocumentArray, from_files


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """root/{a.txt, b.jpg, .hidden.txt, sub/c.txt, sub/deep/{d.txt, e.png}, .hid/f.txt, skip/g.txt}"""
    files = {
        "a.txt": b"alpha",
        "b.jpg": b"\xff\xd8\xff\xe0 not really a jpeg",
        ".hidden.txt": b"hidden",
        "sub/c.txt": b"gamma",
        "sub/deep/d.txt": b"delta",
        "sub/deep/e.png": b"\x89PNG",
        ".hid/f.txt": b"in a hidden dir",
        "skip/g.txt": b"g",
    }
    for rel, data in files.items():
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return tmp_path


def rel(docs, root: Path) -> list[str]:
    return sorted(os.path.relpath(d.uri, root) for d in docs)


class CountingScandir:
    """Stands in for os.scandir: counts directories opened/closed and entries handed out."""

    def __init__(self) -> None:
        self.real = os.scandir
        self.opened = self.closed = self.entries = 0

    def __call__(self, path="."):
        real = self.real(path)
        self.opened += 1
        counter = self

        class Entries:
            def __enter__(self):
                return self

            def __exit__(self, *exc):
                counter.closed += 1
                real.close()

            def __iter__(self):
                for entry in real:
                    counter.entries += 1
                    yield entry

        return Entries()


@pytest.fixture
def scandir(monkeypatch) -> CountingScandir:
    counting = CountingScandir()
    monkeypatch.setattr(os, "scandir", counting)
    return counting


# ---------------------------------------------------------------------- glob semantics
@pytest.mark.parametrize(
    ("pattern", "recursive", "expected"),
    [
        ("*.txt", True, ["a.txt"]),
        ("**/*.txt", True, ["a.txt", "skip/g.txt", "sub/c.txt", "sub/deep/d.txt"]),
        ("**/*.txt", False, ["skip/g.txt", "sub/c.txt"]),  # ** is a plain * then
        ("sub/**", True, ["sub/c.txt", "sub/deep/d.txt", "sub/deep/e.png"]),
        ("*/deep/*", True, ["sub/deep/d.txt", "sub/deep/e.png"]),
        ("sub/*/?.png", True, ["sub/deep/e.png"]),
        ("[ab].*", True, ["a.txt", "b.jpg"]),
        (".*", True, [".hidden.txt"]),
        (".*/*.txt", True, [".hid/f.txt"]),
        ("sub/c.txt", True, ["sub/c.txt"]),
        ("sub/missing.txt", True, []),
        ("sub", True, []),  # a directory is never yielded
        ("sub/*/", True, []),
        ("nothere/*.txt", True, []),
        ("*", True, ["a.txt", "b.jpg"]),
    ],
)
def test_patterns(tree: Path, pattern: str, recursive: bool, expected: list[str]) -> None:
    got = list(from_files(os.path.join(tree, pattern), recursive=recursive))
    assert rel(got, tree) == expected
    assert all(isinstance(d, Document) for d in got)


@pytest.mark.parametrize(
    "pattern", ["**/*.txt", "**", "*/*", "sub/**/*", ".*", "*.jpg", "**/deep/*"]
)
@pytest.mark.parametrize("recursive", [True, False])
def test_same_paths_in_the_same_order_as_glob(
    tree: Path, monkeypatch, pattern: str, recursive: bool
) -> None:
    monkeypatch.chdir(tree)
    expected = [p for p in glob.iglob(pattern, recursive=recursive) if not os.path.isdir(p)]
    assert [d.uri for d in from_files(pattern, recursive=recursive)] == expected


def test_relative_absolute_path_and_home_patterns(tree: Path, monkeypatch) -> None:
    monkeypatch.chdir(tree / "sub")
    assert [d.uri for d in from_files("*.txt")] == ["c.txt"]
    assert [d.uri for d in from_files("deep/*.txt")] == ["deep/d.txt"]
    assert [d.uri for d in from_files(tree / "a.txt")] == [str(tree / "a.txt")]
    monkeypatch.setenv("HOME", str(tree))
    assert [d.uri for d in from_files("~/*.txt")] == [str(tree / "a.txt")]


def test_several_patterns_in_order_with_repeats(tree: Path) -> None:
    got = [os.path.relpath(d.uri, tree) for d in from_files([str(tree / "*.jpg"), str(tree / "*")])]
    assert got[0] == "b.jpg" and sorted(got[1:]) == ["a.txt", "b.jpg"]  # repeats, like legacy
    assert list(from_files([])) == []


def test_symlink_loops_end(tree: Path) -> None:
    (tree / "sub" / "deep" / "up").symlink_to(tree)  # points at an ancestor
    (tree / "link").symlink_to(tree / "skip")  # an ordinary symlinked directory
    got = rel(from_files(str(tree / "**/*.txt")), tree)
    assert got == ["a.txt", "link/g.txt", "skip/g.txt", "sub/c.txt", "sub/deep/d.txt"]


def test_mime_type_and_uri_are_set(tree: Path) -> None:
    (doc,) = from_files(str(tree / "*.jpg"))
    assert doc.uri == str(tree / "b.jpg")
    assert doc.mime_type == "image/jpeg"
    assert doc.blob == b"" and doc.text == ""


# ---------------------------------------------------------------------- options
def test_size(tree: Path) -> None:
    pattern = str(tree / "**/*.txt")
    assert len(list(from_files(pattern, size=2))) == 2
    assert len(list(from_files(pattern, size=100))) == 4
    assert list(from_files(pattern, size=0)) == []


def test_size_zero_reads_no_directory(tree: Path, scandir: CountingScandir) -> None:
    assert list(from_files(str(tree / "**"), size=0)) == []
    assert scandir.opened == 0


def test_sampling_rate_is_repeatable_with_a_seed(tree: Path) -> None:
    for i in range(200):
        (tree / f"n{i:03d}.dat").write_bytes(b"")
    pattern = str(tree / "*.dat")
    random.seed(11)
    first = [d.uri for d in from_files(pattern, sampling_rate=0.3)]
    random.seed(11)
    assert [d.uri for d in from_files(pattern, sampling_rate=0.3)] == first
    assert len(list(from_files(pattern, sampling_rate=1))) == 200
    # binomial(200, 0.3): mean 60, sd 6.5; these bounds are more than 6 sd away
    assert 20 <= len(first) <= 100


def test_sampling_and_size_together(tree: Path) -> None:
    for i in range(100):
        (tree / f"n{i:03d}.dat").write_bytes(b"")
    got = list(from_files(str(tree / "*.dat"), sampling_rate=0.5, size=10))
    assert len(got) == 10


@pytest.mark.parametrize(
    ("regex", "expected"),
    [
        ("/deep/", ["a.txt", "skip/g.txt", "sub/c.txt"]),
        (r"\.txt$", []),
        (r"g\.txt", ["a.txt", "sub/c.txt", "sub/deep/d.txt"]),  # searched anywhere in the path
        (r"(sub|skip)/", ["a.txt"]),
    ],
    ids=["directory", "suffix", "name", "alternation"],  # keep the regexes out of tmp_path
)
def test_exclude_regex(tree: Path, regex: str, expected: list[str]) -> None:
    assert rel(from_files(str(tree / "**/*.txt"), exclude_regex=regex), tree) == expected


def test_read_modes(tree: Path) -> None:
    (text,) = from_files(str(tree / "a.txt"), read_mode="r")
    assert text.text == "alpha" and text.blob == b""
    (blob,) = from_files(str(tree / "b.jpg"), read_mode="rb")
    assert blob.blob == (tree / "b.jpg").read_bytes() and blob.text == ""
    (tree / "crlf.txt").write_bytes("x\r\ny\rz é".encode())
    (crlf,) = from_files(str(tree / "crlf.txt"), read_mode="r")
    assert crlf.text == "x\ny\nz é"  # universal newlines, UTF-8


def test_read_mode_r_on_binary_names_the_file(tree: Path) -> None:
    with pytest.raises(ValueError, match=r"b\.jpg: not UTF-8 text.*read_mode='rb'"):
        list(from_files(str(tree / "b.jpg"), read_mode="r"))


def test_to_dataturi(tree: Path) -> None:
    (doc,) = from_files(str(tree / "b.jpg"), to_dataturi=True)
    head, data = doc.uri.split(",", 1)
    assert head == "data:image/jpeg;base64"
    assert base64.b64decode(data) == (tree / "b.jpg").read_bytes()
    assert doc.blob == b""
    (both,) = from_files(str(tree / "a.txt"), to_dataturi=True, read_mode="rb")
    assert both.uri == "data:text/plain;base64," + base64.b64encode(b"alpha").decode()
    assert both.blob == b"alpha"
    (tree / "x.unknownext").write_bytes(b"\x00")
    (odd,) = from_files(str(tree / "x.unknownext"), to_dataturi=True)
    assert odd.uri == "data:application/octet-stream;base64,AA=="
    png_magic = b"\x89PNG\r\n\x1a\n"
    (tree / "png.unknownext").write_bytes(png_magic)  # no known extension: sniffed
    (sniffed,) = from_files(str(tree / "png.unknownext"), to_dataturi=True)
    assert sniffed.uri == "data:image/png;base64," + base64.b64encode(png_magic).decode()


# ---------------------------------------------------------------------- laziness
@pytest.mark.timeout(30)
def test_taking_a_few_reads_only_a_few_entries(tmp_path: Path, scandir: CountingScandir) -> None:
    big = tmp_path / "big"
    big.mkdir()
    for i in range(2000):
        (big / f"f{i:04d}.txt").write_bytes(b"")
    gen = from_files(str(tmp_path / "big" / "*.txt"))
    assert scandir.opened == 0  # nothing is listed before the first next()
    taken = list(itertools.islice(gen, 3))
    assert len(taken) == 3
    assert scandir.entries <= 3
    gen.close()
    assert scandir.closed == scandir.opened  # an abandoned walk closes its directories


@pytest.mark.timeout(30)
def test_recursive_walk_is_lazy_too(tmp_path: Path, scandir: CountingScandir) -> None:
    for d in range(50):
        sub = tmp_path / f"d{d:02d}" / "inner"
        sub.mkdir(parents=True)
        for i in range(20):
            (sub / f"f{i}.txt").write_bytes(b"")
    taken = list(itertools.islice(from_files(str(tmp_path / "**/*.txt")), 5))
    assert len(taken) == 5
    assert scandir.opened < 10 and scandir.entries < 60  # of 50 directories and 1000 files
    assert len(list(from_files(str(tmp_path / "**/*.txt")))) == 1000
    assert scandir.closed == scandir.opened


def test_size_stops_without_reading_further(tmp_path: Path, scandir: CountingScandir) -> None:
    for i in range(500):
        (tmp_path / f"f{i}.txt").write_bytes(b"")
    assert len(list(from_files(str(tmp_path / "*.txt"), size=4))) == 4
    assert scandir.entries == 4


# ---------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"size": -1}, "size must be an int >= 0, or None; got -1"),
        ({"size": 1.5}, "got 1.5"),
        ({"size": True}, "got True"),
        ({"sampling_rate": 0}, r"sampling_rate must be None or a number in \(0, 1\], got 0"),
        ({"sampling_rate": 1.5}, "got 1.5"),
        ({"sampling_rate": -0.1}, "got -0.1"),
        ({"sampling_rate": float("nan")}, "got nan"),
        ({"sampling_rate": "0.5"}, "got '0.5'"),
        ({"read_mode": "w"}, "read_mode must be.*got 'w'"),
        ({"read_mode": "rt"}, "got 'rt'"),
        ({"exclude_regex": "(unclosed"}, r"exclude_regex '\(unclosed' is not a valid regex"),
    ],
)
def test_bad_arguments_raise_at_the_call(tree: Path, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        from_files(str(tree / "*"), **kwargs)  # no next(): checked eagerly
    with pytest.raises(ValueError, match=match):
        DocumentArray.from_files(str(tree / "*"), **kwargs)


@pytest.mark.parametrize("patterns", [5, [str, 5], None, b"*.txt"])
def test_bad_patterns(patterns) -> None:
    with pytest.raises(TypeError, match="patterns must be a glob pattern"):
        from_files(patterns)


def test_an_unreadable_file_is_named(tree: Path) -> None:
    (tree / "broken.txt").symlink_to(tree / "gone.txt")  # listed, but cannot be opened
    assert rel(from_files(str(tree / "b*.txt")), tree) == ["broken.txt"]  # uri only: no read
    with pytest.raises(FileNotFoundError, match=r"broken\.txt"):
        list(from_files(str(tree / "b*.txt"), read_mode="rb"))


# ---------------------------------------------------------------------- DocumentArray.from_files
def test_document_array_from_files(tree: Path) -> None:
    da = DocumentArray.from_files(str(tree / "**/*.txt"), read_mode="r", exclude_regex="skip")
    assert isinstance(da, DocumentArray)
    assert rel(da, tree) == ["a.txt", "sub/c.txt", "sub/deep/d.txt"]
    assert sorted(da.texts) == ["alpha", "delta", "gamma"]
    assert len(DocumentArray.from_files(str(tree / "**"), size=2)) == 2
    assert len(DocumentArray.from_files(str(tree / "**"), recursive=False)) == 2
    da_uri = DocumentArray.from_files([str(tree / "a.txt")], to_dataturi=True)
    assert da_uri[0].uri.startswith("data:text/plain;base64,")
    for d in da:
        assert da[d.id] is d
