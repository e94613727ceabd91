"""What a run with ``on_error='skip'`` or ``retries=`` tells its caller: the failures
(index, id, exception type, message, the worker's traceback, retries) and counts.

``parallel.map`` returns an iterator with a ``report`` attribute, readable during
the run and after it; ``apply`` / ``apply_batch`` fill the :class:`Report` passed as
``report=``. A run that skipped items ends with one summary ``RuntimeWarning``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

from docmill.errors import DocmillError

__all__ = ["Failure", "Report", "TooManyFailures"]


@dataclass(frozen=True)
class Failure:
    """One item that failed (after its retries) and was skipped."""

    index: int
    id: str | None
    type: str
    message: str
    _traceback: Any = field(compare=False, repr=False)  # str, or formatted on first read
    retries: int
    exception: BaseException | None = field(default=None, compare=False, repr=False)

    @property
    def traceback(self) -> str:
        """The worker's traceback, as text."""
        tb = self._traceback
        if not isinstance(tb, str):
            tb = str(tb)
            object.__setattr__(self, "_traceback", tb)
        return tb


class TooManyFailures(DocmillError):
    """More items failed than ``max_failures`` allows; ``.report`` holds them all."""

    def __init__(self, message: str, report: Report) -> None:
        super().__init__(message)
        self.report = report


@dataclass
class Report:
    """Failures and counts of one run (see the module docstring)."""

    failures: list[Failure] = field(default_factory=list)
    done: int = 0
    retried: int = 0

    @property
    def failed(self) -> int:
        return len(self.failures)

    def summary(self) -> str:
        """One line: done, failed, retried, and the first failure."""
        line = f"{self.done} done, {self.failed} failed, {self.retried} retried"
        if self.failures:
            f = self.failures[0]
            where = f"item {f.index}" + (f" (id {f.id!r})" if f.id else "")
            line += f"; first: {where}: {f.type}: {f.message}"
        return line

    def _limit(self, max_failures: Any, seen: int, total: int | None, final: bool = False) -> None:
        """Raise :class:`TooManyFailures` past ``max_failures``: a count, or a fraction
        of all the items (when the input has a length) or of those seen so far (once
        there are 100 of them, or at the end)."""
        if max_failures is None:
            return
        if isinstance(max_failures, int):
            limit: float = max_failures
        elif total is not None:
            limit = max_failures * total
        elif seen >= 100 or final:
            limit = max_failures * seen
        else:
            return
        if self.failed > limit:
            firsts = "; ".join(
                f"item {f.index}" + (f" (id {f.id!r})" if f.id else "") + f": {f.type}: {f.message}"
                for f in self.failures[:5]
            )
            raise TooManyFailures(
                f"{self.failed} items failed, more than max_failures={max_failures!r} "
                f"allows ({self.summary()}); the first: {firsts}",
                self,
            )

    def _warn(self) -> None:
        if self.failures:
            warnings.warn(f"docmill: {self.summary()}", RuntimeWarning, stacklevel=3)
