"""Documents from and to line- and table-shaped data, as docarray 0.21 read and wrote it:
CSV, NDJSON / JSON lines, plain lines, numpy arrays and pandas DataFrames.

- ``save_csv``: one row per Document with its set fields (``exclude_fields`` left out);
  with ``flatten_tags`` each tag becomes a ``tag__<name>`` column. Values are written
  as ``str(value)``; CSV holds no types, so it is for interchange, not round trips.
- ``from_csv`` / ``from_ndjson``: each row / JSON object becomes ``Document(row,
  field_resolver=...)``: columns that are not fields go into ``tags``. A row with
  ``document`` and ``groundtruth`` columns yields a pair of Documents, as legacy.
- ``from_lines``: lines of JSON (``line_format='json'``), CSV, or plain text (one
  Document per line, its text); with ``filepath`` the suffix decides
  (``.jsonl``/``.ndjson``/... JSON, ``.csv``/``.tcsv`` CSV, anything else text).
- ``from_ndarray``: one Document per row along ``axis`` with that row as its content.
- ``to_dataframe`` / ``from_dataframe``: legacy's ``jsonschema`` dict per row (pandas
  needed, imported on use).
"""

from __future__ import annotations

import csv
import json
import os
import random
from collections.abc import Iterable, Iterator, Sequence
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any

import numpy as np

from docmill._checks import check_int
from docmill.document import FIELDS, Document
from docmill.errors import FormatError, MissingExtra

if TYPE_CHECKING:
    from docmill.array import DocumentArray

__all__ = [
    "from_csv",
    "from_dataframe",
    "from_lines",
    "from_ndarray",
    "from_ndjson",
    "save_csv",
    "to_dataframe",
]

_JSONL = {".jsonlines", ".ndjson", ".jsonl", ".jl", ".ldjson"}
_CSV = {".csv", ".tcsv"}


def _subsample(items: Iterable[Any], size: int | None, rate: float | None) -> Iterator[Any]:
    if size is not None:
        check_int("size", size, 0, alternative="or None")
    if rate is not None and not (isinstance(rate, int | float) and 0 < rate <= 1):
        raise ValueError(f"sampling_rate must be None or a number in (0, 1], got {rate!r}")
    n = 0
    for x in items:
        if size is not None and n >= size:
            return
        if rate is None or random.random() < rate:
            n += 1
            yield x


def _pair_or_doc(value: dict, resolver: dict[str, str] | None) -> Any:
    if "document" in value and "groundtruth" in value:
        return (
            Document(value["document"], field_resolver=resolver),
            Document(value["groundtruth"], field_resolver=resolver),
        )
    return Document(value, field_resolver=resolver)


def _open_text(file: Any, encoding: str, mode: str = "r") -> Any:
    if hasattr(file, "read" if mode == "r" else "write") and not isinstance(file, os.PathLike):
        return nullcontext(file)
    return open(os.fspath(file), mode, encoding=encoding, newline="")


def from_csv(
    file: Any,
    field_resolver: dict[str, str] | None = None,
    size: int | None = None,
    sampling_rate: float | None = None,
    dialect: Any = "excel",
    encoding: str = "utf-8",
) -> Iterator[Any]:
    """Yield a Document per CSV row (see the module docstring)."""
    with _open_text(file, encoding) as fp:
        if dialect == "auto":
            head = fp.read(1024)
            fp.seek(0)
            try:
                dialect = csv.Sniffer().sniff(head)
            except csv.Error:
                dialect = "excel"
        for row in _subsample(csv.DictReader(fp, dialect=dialect), size, sampling_rate):
            yield _pair_or_doc(row, field_resolver)


def from_ndjson(
    fp: Iterable[str | bytes],
    field_resolver: dict[str, str] | None = None,
    size: int | None = None,
    sampling_rate: float | None = None,
) -> Iterator[Any]:
    """Yield a Document per line of JSON objects."""
    for i, line in enumerate(_subsample(fp, size, sampling_rate)):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except ValueError as e:
            raise FormatError(f"line {i + 1} is not JSON: {e}") from None
        if not isinstance(value, dict):
            raise FormatError(f"line {i + 1} holds a {type(value).__name__}, not a JSON object")
        yield _pair_or_doc(value, field_resolver)


def from_lines(
    lines: Iterable[str] | None = None,
    filepath: str | os.PathLike | None = None,
    read_mode: str = "r",
    line_format: str = "json",
    field_resolver: dict[str, str] | None = None,
    size: int | None = None,
    sampling_rate: float | None = None,
) -> Iterator[Any]:
    """Yield Documents from ``lines`` or the file at ``filepath`` (see the module docstring)."""
    if read_mode not in ("r", "rb"):
        raise ValueError(f"read_mode must be 'r' or 'rb', got {read_mode!r}")
    if line_format not in ("json", "csv", "text"):
        raise ValueError(f"line_format must be 'json', 'csv' or 'text', got {line_format!r}")
    if filepath is not None:
        path = os.path.expanduser(os.fspath(filepath))
        suffix = os.path.splitext(path)[1]
        kind = "json" if suffix in _JSONL else "csv" if suffix in _CSV else "text"
        with open(path, read_mode) as f:
            yield from _lines_of(f, kind, field_resolver, size, sampling_rate)
    elif lines is not None:
        yield from _lines_of(lines, line_format, field_resolver, size, sampling_rate)
    else:
        raise ValueError("from_lines() needs lines= or filepath=")


def _lines_of(lines: Any, kind: str, resolver: Any, size: Any, rate: Any) -> Iterator[Any]:
    if kind == "json":
        yield from from_ndjson(lines, resolver, size, rate)
    elif kind == "csv":
        yield from from_csv(lines, resolver, size, rate)
    else:
        for line in _subsample(lines, size, rate):
            if isinstance(line, bytes):
                yield Document(blob=line.rstrip(b"\r\n"))
            else:
                yield Document(text=line.rstrip("\r\n"))


def from_ndarray(
    array: Any, axis: int = 0, size: int | None = None, shuffle: bool = False
) -> Iterator[Document]:
    """Yield a Document per slice of ``array`` along ``axis``, the slice as its content."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"from_ndarray() needs a numpy array, got {type(array).__name__}")
    array = np.moveaxis(array, axis, 0)
    if shuffle:
        array = array[np.random.permutation(len(array))]
    for row in _subsample(array, size, None):
        yield Document(content=row)


def save_csv(
    da: Sequence[Document],
    file: Any,
    flatten_tags: bool = True,
    exclude_fields: Sequence[str] | None = None,
    dialect: Any = "excel",
    with_header: bool = True,
    encoding: str = "utf-8",
) -> None:
    """Write one CSV row per Document (see the module docstring)."""
    exclude = set(exclude_fields or ())
    rows: list[dict[str, str]] = []
    keys: dict[str, None] = {}
    for d in da:
        row = d.to_dict(exclude=exclude or None, exclude_none=True)
        tags = row.pop("tags", None) if flatten_tags else None
        if tags:
            row.update({f"tag__{k}": v for k, v in tags.items()})
        row = {k: str(v).replace("\n", " ") for k, v in row.items()}
        keys.update(dict.fromkeys(row))
        rows.append(row)
    if isinstance(file, str | os.PathLike):
        from docmill.io._files import atomic_output

        with atomic_output(file) as raw:
            import io as _io

            text = _io.TextIOWrapper(raw, encoding=encoding, newline="")
            _write_rows(text, list(keys), rows, dialect, with_header)
            text.flush()
            text.detach()
        return
    _write_rows(file, list(keys), rows, dialect, with_header)


def _write_rows(fp: Any, keys: list[str], rows: list, dialect: Any, header: bool) -> None:
    writer = csv.DictWriter(fp, fieldnames=keys, dialect=dialect)
    if header:
        writer.writeheader()
    writer.writerows(rows)


def _pandas() -> Any:
    try:
        import pandas
    except ImportError:
        raise MissingExtra(
            "to_dataframe / from_dataframe need pandas: pip install pandas"
        ) from None
    return pandas


def to_dataframe(da: Sequence[Document], **kwargs: Any) -> Any:
    """A pandas DataFrame with one row per Document (legacy's ``jsonschema`` dict)."""
    return _pandas().DataFrame([d.to_dict() for d in da], **kwargs)


def from_dataframe(df: Any) -> DocumentArray:
    """Inverse of :func:`to_dataframe` (columns that are not fields go into ``tags``)."""
    from docmill.array import DocumentArray

    pd = _pandas()
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"from_dataframe() needs a pandas DataFrame, got {type(df).__name__}")
    out = []
    for row in df.to_dict(orient="records"):
        row = {k: (None if _is_na(v) else v) for k, v in row.items()}
        out.append(Document.from_dict(row) if set(row) <= set(FIELDS) else Document(row))
    return DocumentArray(out)


def _is_na(v: Any) -> bool:
    return isinstance(v, float) and v != v  # NaN: what pandas puts in empty cells
