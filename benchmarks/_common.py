"""Plumbing shared by the benchmark scripts: timing, the legacy docarray venv, the machine line."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

from docmill._demo import best_of

__all__ = ["LEGACY_PYTHON", "best_of", "identity", "machine_line", "run_legacy"]

#: legacy docarray 0.21.1 lives in its own virtualenv, outside the repository
LEGACY_PYTHON = Path.home() / "legacy" / "bin" / "python"


def identity(x: Any) -> Any:
    return x


def machine_line() -> str:
    import numpy as np

    return (
        f"{platform.machine()}, {os.cpu_count()} cores "
        f"({len(os.sched_getaffinity(0))} usable), Python {platform.python_version()}, "
        f"numpy {np.__version__}"
    )


def run_legacy(script: str, timeout: float = 900) -> dict[str, Any]:
    """Run ``script`` with the legacy venv's python; it prints one JSON object last.
    Returns {} when the venv is missing or the run fails (the reason goes to stderr)."""
    if not LEGACY_PYTHON.exists():
        return {}
    res = None
    try:
        res = subprocess.run(
            [str(LEGACY_PYTHON), "-c", script], capture_output=True, text=True, timeout=timeout
        )
        return json.loads(res.stdout.strip().splitlines()[-1])
    except (subprocess.SubprocessError, ValueError, IndexError):
        print("legacy docarray run failed:", res.stderr[-500:] if res else "", file=sys.stderr)
        return {}
