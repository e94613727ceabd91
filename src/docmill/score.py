"""``NamedScore``: the value type of ``Document.scores`` and ``Document.evaluations``.

As in docarray 0.21, ``d.scores['cosine'].value`` reads a score and a missing name
reads an empty score (value 0.0) that is kept once read. A NamedScore is a ``dict``
of its set attributes (``value``, ``op_name``, ``description``, ``ref_id``), so it
is stored, compared and turned into JSON as that dict; a number or a dict put into
``scores`` becomes a NamedScore.
"""

from __future__ import annotations

from typing import Any

__all__ = ["NamedScore"]

_FIELDS = {"value": 0.0, "op_name": "", "description": "", "ref_id": ""}


class NamedScore(dict):
    """A score with its name of operation, description and the id it refers to."""

    __slots__ = ()

    def __init__(self, value: Any = None, op_name: Any = None, description: Any = None,
                 ref_id: Any = None, **extra: Any) -> None:  # fmt: skip
        if isinstance(value, dict):  # NamedScore({'value': ...})
            value, rest = value.get("value"), value
            op_name = rest.get("op_name", op_name)
            description = rest.get("description", description)
            ref_id = rest.get("ref_id", ref_id)
            extra = {k: v for k, v in rest.items() if k not in _FIELDS} | extra
        if extra:
            raise TypeError(
                f"NamedScore takes value, op_name, description and ref_id; got "
                f"{', '.join(sorted(extra))}"
            )
        super().__init__()
        for name, v in (("value", value), ("op_name", op_name), ("description", description),
                        ("ref_id", ref_id)):  # fmt: skip
            if v is not None:
                self[name] = v

    def __getattr__(self, name: str) -> Any:
        if name in _FIELDS:
            return self.get(name, _FIELDS[name])
        raise AttributeError(f"NamedScore has no attribute {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        if name not in _FIELDS:
            raise AttributeError(f"NamedScore has no attribute {name!r}")
        if value is None:
            self.pop(name, None)
        else:
            self[name] = value

    def to_dict(self) -> dict[str, Any]:
        return dict(self)

    def __repr__(self) -> str:
        return f"NamedScore({', '.join(f'{k}={v!r}' for k, v in self.items())})"


def as_score(v: Any) -> Any:
    """A number or a plain dict as a NamedScore; anything else as it is."""
    if isinstance(v, NamedScore):
        return v
    if isinstance(v, dict) and set(v) <= set(_FIELDS):
        return NamedScore(v)
    if isinstance(v, int | float) and not isinstance(v, bool):
        return NamedScore(value=v)
    return v


class Scores(dict):
    """``{name: NamedScore}``: a missing name reads (and keeps) an empty NamedScore."""

    __slots__ = ()

    def __init__(self, values: Any = ()) -> None:
        super().__init__()
        self.update(values)

    def __missing__(self, key: str) -> NamedScore:
        s = self[key] = NamedScore()
        return s

    def __setitem__(self, key: str, value: Any) -> None:
        super().__setitem__(key, as_score(value))

    def update(self, *args: Any, **kwargs: Any) -> None:
        for k, v in dict(*args, **kwargs).items():
            self[k] = v

    def setdefault(self, key: str, default: Any = None) -> Any:
        if key not in self:
            self[key] = default
        return self[key]
