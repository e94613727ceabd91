"""The registry of backends by name: ``backend='process'`` -> a :class:`Backend` class.

Entries are ``"module:Class"`` strings, imported on first use (``process`` pulls
in multiprocessing, cloudpickle and the shared-memory transport), or classes.
A new engine is one module with a :class:`~docmill.parallel.Backend` subclass
plus one call::

    from docmill.parallel import register_backend
    register_backend("dask", "mypackage.dask_backend:DaskBackend")
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from docmill.parallel._base import Backend

__all__ = ["BACKENDS", "POOL_TYPES", "backend_class", "backend_for_pool", "register_backend"]

#: backend name -> ``"module:Class"`` or a Backend subclass. ``'pool'`` is chosen by
#: passing ``pool=``, not by name.
BACKENDS: dict[str, str | type[Backend]] = {
    "serial": "docmill.parallel.serial:SerialBackend",
    "thread": "docmill.parallel.thread:ThreadBackend",
    "process": "docmill.parallel.process:ProcessBackend",
    "pool": "docmill.parallel.pool:PoolBackend",
    "dask": "docmill.parallel.dask_backend:DaskBackend",
    "ray": "docmill.parallel.ray_backend:RayBackend",
    "asyncio": "docmill.parallel.asyncio_backend:AsyncioBackend",
}

#: ``"module.Class"`` of a pool object -> the backend that runs on it (``pool=`` of that
#: type picks it; any other pool goes to ``'pool'``). Matched by name along the pool's
#: class hierarchy, so nothing is imported to check.
POOL_TYPES: dict[str, str] = {"distributed.client.Client": "dask"}


def backend_for_pool(pool: object) -> str:
    """The backend that runs on ``pool``: one registered for its type, else ``'pool'``."""
    for cls in type(pool).__mro__:
        name = POOL_TYPES.get(f"{cls.__module__}.{cls.__qualname__}")
        if name is not None:
            return name
    return "pool"


def register_backend(
    name: str,
    backend: str | type[Backend],
    *,
    replace: bool = False,
    pools: tuple[str, ...] = (),
) -> None:
    """Make ``backend='name'`` run on ``backend`` (a Backend subclass, or
    ``"module:Class"`` imported when first used). ``replace=True`` to override a name.
    ``pools``: ``"module.Class"`` names of pool objects that ``pool=`` hands to it."""
    from docmill.parallel._base import Backend

    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"a backend name must be an identifier such as 'dask', got {name!r}")
    if isinstance(backend, str):
        if backend.count(":") != 1:
            raise ValueError(f"expected 'module:Class' for backend {name!r}, got {backend!r}")
    elif not (isinstance(backend, type) and issubclass(backend, Backend)):
        raise TypeError(
            f"backend {name!r} must be a docmill.parallel.Backend subclass or a "
            f"'module:Class' string, got {backend!r}"
        )
    if name in BACKENDS and not replace and BACKENDS[name] != backend:
        raise ValueError(f"backend {name!r} is already registered; pass replace=True to override")
    BACKENDS[name] = backend
    for pool_type in pools:
        POOL_TYPES[pool_type] = name


def backend_class(name: str) -> type[Backend]:
    """The Backend class registered as ``name`` (imported now if needed)."""
    entry = BACKENDS[name]
    if isinstance(entry, str):
        module, _, cls = entry.partition(":")
        return getattr(importlib.import_module(module), cls)
    return entry
