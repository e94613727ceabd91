"""A real hub on 127.0.0.1: uvicorn in its own process, started with the ``docmill hub
serve`` command (the S3 endpoint, ``s3``, is in tests/conftest.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from _servers import free_port, stop, wait_listening
from docmill.hub.server import TokenFile


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
    wait_listening(port, proc)
    return Hub(f"http://127.0.0.1:{port}", root, token, tokens, log), proc


@pytest.fixture(scope="session")
def hub(tmp_path_factory) -> Hub:
    h, proc = _start_hub(tmp_path_factory.mktemp("hub"))
    yield h
    stop(proc)


@pytest.fixture(scope="session")
def small_hub(tmp_path_factory) -> Hub:
    """A hub that refuses uploads over 20 kB."""
    h, proc = _start_hub(tmp_path_factory.mktemp("small-hub"), max_bytes=20_000)
    yield h
    stop(proc)
