"""Fixtures shared by several test modules."""

from __future__ import annotations

from pathlib import Path

import pytest

from _images import write_sample_files


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    """Sample files (see ``_images.write_sample_files``) in a fresh folder."""
    return write_sample_files(tmp_path)
