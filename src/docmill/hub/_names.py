"""Array names and where they go: one place that validates both."""

from __future__ import annotations

import os
import re
from typing import Any

__all__ = ["check_name", "split_target"]

#: a name: letters, digits and ``._-``, starting with a letter or digit, <= 128 long
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def check_name(name: Any) -> str:
    """``name`` if it is a safe array name, else ``ValueError`` saying what is allowed."""
    if not isinstance(name, str) or not NAME.fullmatch(name) or name.endswith((".", ".tmp")):
        raise ValueError(
            f"invalid array name {name!r}: use 1-128 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit (no '/', no '..', no leading dot)"
        )
    return name


def split_target(name: Any) -> tuple[str, str]:
    """``(where, name)`` for what push/pull were given:

    - ``http(s)://host:port/NAME`` -> (``http(s)://host:port``, NAME): a docmill hub;
    - an fsspec URL ``proto://path/NAME`` -> (``proto://path``, NAME);
    - a plain NAME -> (``$DOCMILL_HUB`` or ``''`` for the embedded store, NAME).
    """
    if not isinstance(name, str):
        raise TypeError(f"the array name must be a str, got {type(name).__name__}")
    if "://" in name:
        where, _, last = name.rpartition("/")
        if where.endswith(":/"):  # 'memory://x' -> ('memory://', 'x')
            where += "/"
        return where, check_name(last)  # 'memory://dir/' names no array: ValueError
    return os.environ.get("DOCMILL_HUB", "").rstrip("/"), check_name(name)
