"""`corral up --backend slurm --slurm-warm-slots N --slurm-pilot-reuse-s S`: the Slurm
backend's warm slots as a user sets them (issue 16), passed through `ServerConfig` to
`SlurmBackend(warm_slots=N, pilot_reuse_s=S)`; on by default, the backend's own default (one
default for `corral up` and for `SlurmBackend()`), 0 turning them off; a negative, absurd or
non-integer value refused with an error naming the setting."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import typer
import typer.main
from typer.testing import CliRunner

from corral.backends.errors import InvalidRequest
from corral.backends.slurm import (
    DEFAULT_WARM_SLOTS,
    MAX_PILOT_REUSE_S,
    MAX_WARM_SLOTS,
    SlurmBackend,
)
from corral.cli import server, up
from corral.cli.defaults import DataDir
from corral.cli.main import app


def _up(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, *args: str) -> tuple[Any, list[Any]]:
    seen: list[Any] = []
    monkeypatch.setattr(up, "serve", lambda cfg, on_ready=None: seen.append(cfg))
    result = CliRunner().invoke(app, ["up", "--data-dir", str(tmp_path), "--backend", "slurm",
                                      *args], env={"COLUMNS": "200"})
    return result, seen


def test_the_flag_reaches_the_server_config(monkeypatch: pytest.MonkeyPatch,
                                            tmp_path: Path) -> None:
    result, seen = _up(monkeypatch, tmp_path, "--slurm-warm-slots", "2")
    assert result.exit_code == 0, result.output
    assert [cfg.slurm_warm_slots for cfg in seen] == [2]
    result, seen = _up(monkeypatch, tmp_path, "--slurm-warm-slots", "0")
    assert result.exit_code == 0, result.output
    assert [cfg.slurm_warm_slots for cfg in seen] == [0]  # off when asked


def test_by_default_corral_up_runs_the_backends_default_warm_slots_with_reuse(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    result, seen = _up(monkeypatch, tmp_path)
    assert result.exit_code == 0, result.output
    assert DEFAULT_WARM_SLOTS > 0  # on: the 0.8x of Slurm alone needs them (bench/README)
    assert [(c.slurm_warm_slots, c.slurm_pilot_reuse_s) for c in seen] == [
        (DEFAULT_WARM_SLOTS, 60.0)]
    assert server.ServerConfig(data_dir=tmp_path).slurm_warm_slots == DEFAULT_WARM_SLOTS
    backend = SlurmBackend(tmp_path / "work")
    assert (backend.warm_slots, backend.pilots.reuse_s) == (DEFAULT_WARM_SLOTS, 60.0)


def test_the_reuse_flag_reaches_the_backend(monkeypatch: pytest.MonkeyPatch,
                                            tmp_path: Path) -> None:
    result, seen = _up(monkeypatch, tmp_path, "--slurm-pilot-reuse-s", "0")
    assert result.exit_code == 0, result.output
    assert [c.slurm_pilot_reuse_s for c in seen] == [0.0]  # one worker a Slurm job
    backend, _ = server._backend(seen[0], DataDir(tmp_path), None, [])  # type: ignore[arg-type]
    assert isinstance(backend, SlurmBackend) and backend.pilots.reuse_s == 0.0
    result, seen = _up(monkeypatch, tmp_path, "--slurm-pilot-reuse-s", "3601")
    assert result.exit_code == 2 and not seen, result.output
    assert "--slurm-pilot-reuse-s" in result.output


@pytest.mark.parametrize("value", ["-1", str(MAX_WARM_SLOTS + 1), "1.5", "many"])
def test_a_bad_value_is_refused_naming_the_flag(monkeypatch: pytest.MonkeyPatch,
                                                tmp_path: Path, value: str) -> None:
    result, seen = _up(monkeypatch, tmp_path, "--slurm-warm-slots", value)
    assert result.exit_code == 2 and not seen, result.output
    assert "--slurm-warm-slots" in result.output


def test_the_flag_bound_is_the_backends() -> None:
    one = typer.Typer()
    one.command()(up.up)
    (param,) = [p for p in typer.main.get_command(one).params if p.name == "slurm_warm_slots"]
    assert (param.min, param.max) == (0, MAX_WARM_SLOTS)  # type: ignore[attr-defined]
    (reuse,) = [p for p in typer.main.get_command(one).params
                if p.name == "slurm_pilot_reuse_s"]
    assert (reuse.min, reuse.max) == (0, MAX_PILOT_REUSE_S)  # type: ignore[attr-defined]


def test_the_server_builds_the_slurm_backend_with_them(tmp_path: Path) -> None:
    cfg = server.ServerConfig(data_dir=tmp_path, backend="slurm", slurm_warm_slots=3)
    backend, _ = server._backend(cfg, DataDir(tmp_path), None, [])  # type: ignore[arg-type]
    assert isinstance(backend, SlurmBackend) and backend.warm_slots == 3


@pytest.mark.parametrize("value", [-1, MAX_WARM_SLOTS + 1, 1.5, True, "2"])
def test_the_backend_refuses_a_bad_value_naming_it(tmp_path: Path, value: Any) -> None:
    with pytest.raises(InvalidRequest) as e:
        SlurmBackend(tmp_path, warm_slots=value)
    assert e.value.field == "warm_slots" and "give 0 (off)" in str(e.value)
