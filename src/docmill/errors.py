"""The exceptions docmill raises.

Errors that mean "the world broke it" and errors that mean "you asked for
something wrong" are different classes::

    DocmillError                     base of everything docmill defines
     ├── WorkerCrashed (RuntimeError) a worker process died (exit, signal, OOM kill)
     ├── StartTimeout (TimeoutError)  a worker did not finish starting within init_timeout
     ├── FormatError (ValueError)     bytes that are not a valid docmill/legacy file
     ├── CheckpointMismatch (ValueError) a checkpoint written by another function or input
     └── MissingExtra (ImportError)   an optional engine is not installed

A failure inside a user's function is *not* wrapped: it is re-raised as its
original type, with the worker's traceback attached as ``__cause__``
(a :class:`RemoteTraceback`) and the failing item's index and id in its
message. Bad arguments raise the built-in ``ValueError`` / ``TypeError`` with
a message naming the bad value and the fix.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "CheckpointMismatch",
    "DocmillError",
    "FormatError",
    "MissingExtra",
    "RemoteTraceback",
    "StartTimeout",
    "WorkerCrashed",
]


class DocmillError(Exception):
    """Base class of every exception docmill defines."""


class WorkerCrashed(DocmillError, RuntimeError):
    """A worker died while it held work.

    ``exitcode`` is the worker's exit code (negative: killed by that signal),
    ``items`` the ``(index, id)`` pairs of the items it held.
    """

    def __init__(
        self,
        message: str,
        exitcode: int | None = None,
        items: Sequence[tuple[int, str | None]] = (),
    ) -> None:
        super().__init__(message)
        self.exitcode = exitcode
        self.items = list(items)

    def __reduce__(self):  # keep the extra fields across pickling
        return (type(self), (self.args[0], self.exitcode, self.items))


class StartTimeout(DocmillError, TimeoutError):
    """A worker did not finish starting (loading the function, running the
    initializer) within ``init_timeout`` seconds; no task ran on it."""


class FormatError(DocmillError, ValueError):
    """Bytes that do not form a valid file: names the offset or value and what was expected."""


class CheckpointMismatch(DocmillError, ValueError):
    """A ``checkpoint=`` file was written by another function (or version of it) or
    for another input; delete it, or pass ``checkpoint_check=False`` to resume anyway."""


class MissingExtra(DocmillError, ImportError):
    """An optional dependency is missing; the message names the ``pip install`` fix."""


class RemoteTraceback(Exception):
    """Carries the formatted traceback of an exception raised in a worker.

    Set as ``__cause__`` of the re-raised exception, so the worker's traceback
    is printed above the caller's.
    """

    def __init__(self, tb: str) -> None:
        super().__init__(tb)
        self.tb = tb

    def __str__(self) -> str:
        return self.tb


def add_note(exc: BaseException, note: str) -> None:
    """``exc.add_note(note)`` on Python >= 3.11; on 3.10 the note is kept in ``__notes__``
    (where 3.11's traceback printing would look) without failing."""
    if hasattr(exc, "add_note"):
        exc.add_note(note)
    else:  # pragma: no cover - Python 3.10
        notes = getattr(exc, "__notes__", None)
        try:
            if notes is None:
                exc.__notes__ = [note]  # type: ignore[attr-defined]
            else:
                notes.append(note)
        except (AttributeError, TypeError):
            pass


def require(module: str, extra: str, feature: str | None = None):
    """Import ``module`` or raise :class:`MissingExtra` naming ``pip install 'docmill[extra]'``
    (and ``feature``, what needs it, when given)."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        if feature is not None:
            raise MissingExtra(
                f"{feature} needs {module}: pip install 'docmill[{extra}]'"
            ) from None
        raise MissingExtra(
            f"{module!r} is needed for this feature but is not installed; "
            f"install it with: pip install 'docmill[{extra}]'"
        ) from e
