"""The ``docmill`` command end to end (small sizes)."""

from __future__ import annotations

import pytest

from docmill import _demo
from docmill.cli import main


@pytest.mark.timeout(120)
def test_demo_runs_both_experiments(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "-n", "12", "--unit", "0.002", "--num-worker", "2"]) == 0
    out = capsys.readouterr().out
    assert "1. load -> normalize" in out and "2. CPU/GPU overlap" in out
    for name in ("for-loop", "apply thread", "apply process", "map_batch into GPU"):
        assert name in out


def test_demo_uses_given_folder(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    _demo.make_images(tmp_path, 5, width=64, height=48)
    assert main(["demo", "--images", str(tmp_path), "--backends", "thread", "--skip-overlap"]) == 0
    out = capsys.readouterr().out
    assert "over 5 images" in out and "apply process" not in out


def test_demo_rejects_missing_folder(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--images", str(tmp_path / "nope")]) == 2
    assert "is not a folder" in capsys.readouterr().err


def test_bad_arguments_exit_with_usage(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["demo", "-n", "0"])
    assert e.value.code == 2
    assert "must be a positive integer" in capsys.readouterr().err


def test_make_images_validates(tmp_path) -> None:
    with pytest.raises(ValueError, match="positive"):
        _demo.make_images(tmp_path, 0)
