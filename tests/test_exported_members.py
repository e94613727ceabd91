"""The public gate: docmill/__init__.py re-exports one sorted __all__ and nothing is missing."""

from __future__ import annotations

import docmill


def test_all_is_sorted_and_complete() -> None:
    assert list(docmill.__all__) == sorted(docmill.__all__)
    for name in docmill.__all__:
        assert hasattr(docmill, name), name


def test_public_names_have_docstrings() -> None:
    for name in docmill.__all__:
        obj = getattr(docmill, name)
        if callable(obj):
            assert obj.__doc__, f"docmill.{name} has no docstring"


def test_py_typed_is_shipped() -> None:
    from importlib.resources import files

    assert files("docmill").joinpath("py.typed").is_file()
