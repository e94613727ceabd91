"""Argument checks shared by every public function: one wording for each kind of value.

Each raises ``ValueError`` (a value of the right kind out of range, or the wrong
kind for a count) naming the argument, what it must be and what was given.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

__all__ = ["check_int", "check_seconds", "is_int"]


def is_int(value: Any) -> bool:
    """An integer (Python or numpy), not a bool."""
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def check_int(
    name: str, value: Any, minimum: int = 1, *, unit: str = "", alternative: str = ""
) -> int:
    """``value`` as an int if it is an integer ``>= minimum``, else ``ValueError``:
    ``"NAME must be an int >= MIN[ (UNIT)][, ALTERNATIVE]; got VALUE"``."""
    if not is_int(value) or value < minimum:
        what = f" ({unit})" if unit else ""
        alt = f", {alternative}" if alternative else ""
        raise ValueError(f"{name} must be an int >= {minimum}{what}{alt}; got {value!r}")
    return int(value)


def check_seconds(name: str, value: Any, alternative: str = "") -> float:
    """``value`` as a float if it is a number of seconds ``> 0``, else ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value > 0:
        alt = f", {alternative}" if alternative else ""
        raise ValueError(f"{name} must be a number of seconds > 0{alt}; got {value!r}")
    return float(value)
