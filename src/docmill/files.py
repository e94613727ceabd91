"""Documents from files: a lazy, streaming ``from_files``.

``from_files('data/**/*.jpg')`` yields one Document per matching file, with its
``uri`` (and ``mime_type``) set and, on request, its content loaded. It never
lists more than it yields: instead of :func:`glob.iglob` (which reads every
directory it visits into a list first) it walks the pattern with
:func:`os.scandir`, one directory entry at a time, so taking the first 10 of
10 million files reads about 10 entries. Directory order is the file system's,
as with glob.

Pattern rules follow :mod:`glob`: ``*``, ``?`` and ``[...]`` match inside one
path component, names starting with ``.`` are matched only by a component
that starts with ``.``, and ``**`` matches zero or more directories when
``recursive`` is true (otherwise it is a plain ``*``). Symlinked directories
are followed, but never into one of their own ancestors.
"""

from __future__ import annotations

import fnmatch
import mimetypes
import numbers
import os
import random
import re
from collections.abc import Iterator, Sequence
from typing import Any

from docmill._checks import check_int
from docmill.document import Document

__all__ = ["from_files"]

_MAGIC = re.compile(r"[*?[]")
_READ_MODES = (None, "r", "rb")


def from_files(
    patterns: str | os.PathLike | Sequence[str | os.PathLike],
    recursive: bool = True,
    size: int | None = None,
    sampling_rate: float | None = None,
    read_mode: str | None = None,
    to_dataturi: bool = False,
    exclude_regex: str | None = None,
) -> Iterator[Document]:
    """Lazily yield a Document for every file matching ``patterns``.

    :param patterns: a glob pattern or a list of them (``~`` is expanded). A
        file matched by two patterns is yielded twice, as in legacy.
    :param recursive: let ``**`` match zero or more directories.
    :param size: stop after this many Documents.
    :param sampling_rate: keep each file with this probability, in (0, 1]
        (drawn from :mod:`random`; ``random.seed`` makes it repeatable).
    :param read_mode: ``None`` (only ``uri``), ``'r'`` (``text``, decoded as
        UTF-8) or ``'rb'`` (``blob``).
    :param to_dataturi: replace ``uri`` by a base64 ``data:`` URI of the file
        (its type guessed from the extension, else from the first bytes).
    :param exclude_regex: skip paths where this regex matches (``re.search``;
        legacy docarray used ``re.match``, which only matches at the start).

    Arguments are checked when called, not at the first ``next()``.
    """
    if isinstance(patterns, str | os.PathLike):
        patterns = [patterns]
    elif not isinstance(patterns, Sequence) or not all(
        isinstance(p, str | os.PathLike) for p in patterns
    ):
        raise TypeError(f"patterns must be a glob pattern or a list of them, got {patterns!r}")
    if size is not None:
        check_int("size", size, 0, alternative="or None")
    if sampling_rate is not None and (
        isinstance(sampling_rate, bool)
        or not isinstance(sampling_rate, numbers.Real)
        or not 0 < sampling_rate <= 1
    ):
        raise ValueError(f"sampling_rate must be None or a number in (0, 1], got {sampling_rate!r}")
    if read_mode not in _READ_MODES:
        raise ValueError(
            f"read_mode must be None (uri only), 'r' (text) or 'rb' (blob), got {read_mode!r}"
        )
    exclude = None
    if exclude_regex is not None:
        try:
            exclude = re.compile(exclude_regex)
        except (re.error, TypeError) as e:
            raise ValueError(f"exclude_regex {exclude_regex!r} is not a valid regex: {e}") from e
    return _generate(
        [os.path.expanduser(os.fspath(p)) for p in patterns],
        recursive,
        size,
        sampling_rate,
        read_mode,
        to_dataturi,
        exclude,
    )


def _generate(
    patterns: list[str],
    recursive: bool,
    size: int | None,
    sampling_rate: float | None,
    read_mode: str | None,
    to_dataturi: bool,
    exclude: re.Pattern | None,
) -> Iterator[Document]:
    if size == 0:
        return
    count = 0
    for pattern in patterns:
        for path in _iter_paths(pattern, recursive):
            if exclude is not None and exclude.search(path):
                continue
            if sampling_rate is not None and random.random() >= sampling_rate:
                continue
            yield _load(path, read_mode, to_dataturi)
            count += 1
            if count == size:
                return


def _load(path: str, read_mode: str | None, to_dataturi: bool) -> Document:
    mime = mimetypes.guess_type(path, strict=False)[0]
    doc = Document(uri=path, mime_type=mime)
    if read_mode is None and not to_dataturi:
        return doc
    with open(path, "rb") as f:
        data = f.read()
    if read_mode == "rb":
        doc.blob = data
    elif read_mode == "r":
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ValueError(
                f"{path}: not UTF-8 text ({e.reason} at byte {e.start}); use read_mode='rb'"
            ) from None
        # universal newlines, like open(path, 'r')
        doc.text = text.replace("\r\n", "\n").replace("\r", "\n")
    if to_dataturi:
        from docmill import uri as _uri

        mime = mime or _uri.sniff_mime_type(data)
        doc.uri = _uri.to_datauri(data, mime, charset=None, base64=True)
    return doc


# ---------------------------------------------------------------------- streaming glob
def _iter_paths(pattern: str, recursive: bool = True) -> Iterator[str]:
    """Paths of the non-directory entries matching a glob ``pattern``, streamed.

    Literal components are checked directly, wildcard components read their
    directory entry by entry; nothing is ever read ahead of what is yielded
    (plus the open directory handles of the current path).
    """
    if not _MAGIC.search(pattern):
        if os.path.lexists(pattern) and not os.path.isdir(pattern):
            yield pattern
        return
    if pattern.endswith(os.sep):
        return  # only directories can match, and directories are never yielded
    parts = pattern.split(os.sep)
    root = os.sep if parts[0] == "" else ""  # absolute pattern: start at /
    parts = [p for p in parts if p]
    # the literal prefix is the directory the walk starts from
    k = next(i for i, p in enumerate(parts) if _MAGIC.search(p))
    base = root + os.sep.join(parts[:k])
    if base and not os.path.isdir(base):
        return
    yield from _match(base, parts[k:], recursive, _ancestor_key(base or "."))


def _join(dirpath: str, name: str) -> str:
    return os.path.join(dirpath, name) if dirpath else name


def _scan(dirpath: str) -> Iterator[os.DirEntry]:
    """Entries of ``dirpath`` one at a time; an unreadable directory has none (as in glob)."""
    try:
        with os.scandir(dirpath or ".") as it:
            yield from it
    except OSError:
        return


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False


def _ancestor_key(path: str) -> tuple[tuple[int, int], ...]:
    try:
        st = os.stat(path)
    except OSError:
        return ()
    return ((st.st_dev, st.st_ino),)


def _match(
    dirpath: str, parts: list[str], recursive: bool, ancestors: tuple[tuple[int, int], ...]
) -> Iterator[str]:
    """Paths under ``dirpath`` matching the components ``parts``."""
    part, rest = parts[0], parts[1:]
    if recursive and part == "**":
        yield from _match_double_star(dirpath, rest, recursive, ancestors)
        return
    if not _MAGIC.search(part):  # literal component: no listing needed
        path = _join(dirpath, part)
        if rest:
            if os.path.isdir(path):
                yield from _match(path, rest, recursive, ancestors)
        elif os.path.lexists(path) and not os.path.isdir(path):
            yield path
        return
    matches = re.compile(fnmatch.translate(part)).match
    show_hidden = part.startswith(".")
    for entry in _scan(dirpath):
        name = entry.name
        if (name[0] == "." and not show_hidden) or not matches(name):
            continue
        if rest:
            if _is_dir(entry):
                yield from _match(_join(dirpath, name), rest, recursive, ancestors)
        elif not _is_dir(entry):
            yield _join(dirpath, name)


def _match_double_star(
    dirpath: str, rest: list[str], recursive: bool, ancestors: tuple[tuple[int, int], ...]
) -> Iterator[str]:
    """``**``: ``rest`` matched in ``dirpath`` and in every directory below it, depth first."""
    if rest:
        yield from _match(dirpath, rest, recursive, ancestors)
    for entry in _scan(dirpath):
        if entry.name[0] == ".":
            continue
        if not _is_dir(entry):
            if not rest:  # a trailing ** matches every file below
                yield _join(dirpath, entry.name)
            continue
        key = _entry_key(entry)
        if key is None or key in ancestors:
            continue  # a symlink back into its own ancestors: would loop forever
        yield from _match_double_star(
            _join(dirpath, entry.name), rest, recursive, (*ancestors, key)
        )


def _entry_key(entry: os.DirEntry) -> Any:
    try:
        st = entry.stat()  # follows symlinks; cached by the DirEntry
    except OSError:
        return None
    return (st.st_dev, st.st_ino)
