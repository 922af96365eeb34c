"""Where a workload that names no checkpoint folder checkpoints (`act.checkpoint_dir`): the
absolute root is made once per root and working directory, never stale after a chdir."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from corral.control.act import checkpoint_dir
from corral.control.settings import ControlSettings


def _dir(root: Path, wid: str = "w1", named: str | None = None) -> str:
    rec, spec = SimpleNamespace(id=wid), SimpleNamespace(checkpoint_dir=named)
    return checkpoint_dir(rec, spec, ControlSettings(checkpoint_root=root))  # type: ignore[arg-type]


def test_a_relative_root_follows_the_working_directory(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    monkeypatch.chdir(tmp_path / "a")
    assert _dir(Path("ckpt")) == str(tmp_path.resolve() / "a" / "ckpt" / "w1")
    monkeypatch.chdir(tmp_path / "b")
    assert _dir(Path("ckpt"), "w2") == str(tmp_path.resolve() / "b" / "ckpt" / "w2")


def test_an_absolute_root_is_resolved_and_a_named_folder_wins(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    assert _dir(tmp_path / "link") == str((tmp_path / "real").resolve() / "w1")
    assert _dir(tmp_path / "link", named="/data/mine") == "/data/mine"
