"""backend='ray' passes the conformance suite on a local Ray with 2 CPUs (started once
for this module, as ``ray.init`` would for a user)."""

from __future__ import annotations

import importlib.util
import os
from contextlib import contextmanager
from pathlib import Path

import pytest
from conformance import *  # noqa: F403 - the suite's tests, fixtures and hook
from conformance import Case, square

from docmill import parallel

if importlib.util.find_spec("ray") is None:
    pytest.skip("backend='ray' needs docmill[ray]", allow_module_level=True)

_started = False


def _ensure_ray():
    global _started
    import ray

    if not ray.is_initialized():
        # the workers import the test modules (conformance) as the driver does
        here = str(Path(__file__).parent)
        os.environ["PYTHONPATH"] = os.pathsep.join(
            p for p in (here, os.environ.get("PYTHONPATH", "")) if p
        )
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        _started = True


@contextmanager
def _ray_case():
    _ensure_ray()
    yield {"backend": "ray"}


CONFORMANCE_CASES = [Case("ray", _ray_case, keeps_connections=True, backend="ray")]


@pytest.fixture(scope="module", autouse=True)
def _stop_ray():
    yield
    if _started:
        import ray

        ray.shutdown()


def test_ray_options_are_the_ray_backends():
    with pytest.raises(TypeError, match="an option of backend 'dask' or 'ray'"):
        parallel.map(square, [1], address="auto")
