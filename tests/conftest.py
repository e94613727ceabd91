"""Fixtures shared by several test modules."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from _images import write_sample_files
from _servers import free_port, stop, wait_listening


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    """Sample files (see ``_images.write_sample_files``) in a fresh folder."""
    return write_sample_files(tmp_path)


@pytest.fixture(scope="session")
def s3(tmp_path_factory) -> str:
    """An s3:// URL on a real local S3 endpoint (moto's server), with a bucket."""
    pytest.importorskip("s3fs", reason="s3:// needs s3fs")
    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    wait_listening(port, proc)
    mp = pytest.MonkeyPatch()
    mp.setenv("AWS_ACCESS_KEY_ID", "testing")
    mp.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
    mp.setenv("FSSPEC_S3_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    import fsspec

    fsspec.config.set_conf_env(fsspec.config.conf)  # pick up FSSPEC_S3_* now
    fs = fsspec.filesystem("s3", skip_instance_cache=True)
    fs.mkdir("docmill-test")
    yield "s3://docmill-test/arrays"
    mp.undo()
    stop(proc)
