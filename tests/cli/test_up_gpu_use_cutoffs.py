"""`corral up --gpu-idle-below F --gpu-use-stale S` (issues 14/17): the two cut-offs of measured
GPU use as a user sets them, carried through `ServerConfig` into the board the API, the Pool
page and /metrics judge by; a value out of range is refused naming the flag. (The review of
this stop found the wiring untested: the other tests set the board's cut-offs by hand.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from corral.cli import up
from corral.cli.main import app
from corral.cli.server import ServerConfig, bootstrap
from corral.control.device_use import UseCutoffs, board_for
from corral.testing.corral_up import stop_workers


def _up(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, *args: str) -> tuple[Any, list[Any]]:
    seen: list[Any] = []
    monkeypatch.setattr(up, "serve", lambda cfg, on_ready=None: seen.append(cfg))
    result = CliRunner().invoke(app, ["up", "--data-dir", str(tmp_path), *args],
                                env={"COLUMNS": "200"})
    return result, seen


def test_the_flags_reach_the_server_config(monkeypatch: pytest.MonkeyPatch,
                                           tmp_path: Path) -> None:
    result, seen = _up(monkeypatch, tmp_path, "--gpu-idle-below", "0.5", "--gpu-use-stale", "60")
    assert result.exit_code == 0, result.output
    assert [(c.gpu_idle_below, c.gpu_use_stale_s) for c in seen] == [(0.5, 60.0)]
    result, seen = _up(monkeypatch, tmp_path)
    assert result.exit_code == 0, result.output
    assert [(c.gpu_idle_below, c.gpu_use_stale_s) for c in seen] == [(0.1, 300.0)]


@pytest.mark.parametrize(("flag", "value"), [("--gpu-idle-below", "0"),
                                             ("--gpu-idle-below", "1.5"),
                                             ("--gpu-use-stale", "0"),
                                             ("--gpu-use-stale", "a week")])
def test_a_bad_value_is_refused_naming_the_flag(monkeypatch: pytest.MonkeyPatch,
                                                tmp_path: Path, flag: str, value: str) -> None:
    result, seen = _up(monkeypatch, tmp_path, flag, value)
    assert result.exit_code == 2 and not seen, result.output
    assert flag in result.output


def test_the_server_judges_by_them(tmp_path: Path) -> None:
    data = tmp_path / "data"
    parts = bootstrap(ServerConfig(data_dir=data, worker_user="same", gpu_idle_below=0.5,
                                   gpu_use_stale_s=60.0))
    try:
        assert board_for(parts.store).cutoffs == UseCutoffs(0.5, 60.0)
    finally:
        parts.close()
        stop_workers(data)
