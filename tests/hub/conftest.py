"""Real servers on 127.0.0.1: the docmill hub (uvicorn, in its own process, started with
the ``docmill hub serve`` command) and a local S3 endpoint (moto's server mode)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from docmill.hub.server import TokenFile


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_listening(port: int, proc: subprocess.Popen, seconds: float = 20) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited: {proc.stderr.read() if proc.stderr else ''}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port} after {seconds} s")


def _stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@dataclass
class Hub:
    url: str
    root: Path
    token: str
    tokens: TokenFile
    log: Path


def _start_hub(tmp: Path, max_bytes: int | None = None) -> tuple[Hub, subprocess.Popen]:
    root, token_file, log = tmp / "root", tmp / "tokens.json", tmp / "server.log"
    tokens = TokenFile(str(token_file))
    token = tokens.create("writer")
    port = free_port()
    cmd = [sys.executable, "-m", "docmill.cli", "hub", "serve", "--root", str(root),
           "--port", str(port), "--token-file", str(token_file)]  # fmt: skip
    if max_bytes:
        cmd += ["--max-bytes", str(max_bytes)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(log, "w") as out:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    _wait_listening(port, proc)
    return Hub(f"http://127.0.0.1:{port}", root, token, tokens, log), proc


@pytest.fixture(scope="session")
def hub(tmp_path_factory) -> Hub:
    h, proc = _start_hub(tmp_path_factory.mktemp("hub"))
    yield h
    _stop(proc)


@pytest.fixture(scope="session")
def small_hub(tmp_path_factory) -> Hub:
    """A hub that refuses uploads over 20 kB."""
    h, proc = _start_hub(tmp_path_factory.mktemp("small-hub"), max_bytes=20_000)
    yield h
    _stop(proc)


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
    _wait_listening(port, proc)
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
    _stop(proc)
