"""`setup` on a real Ray cluster: run by the worker's runner on its node before the command;
a failure is SetupFailed with its code and the command never runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from backends.test_ray import backend, gpu_nodes, log_of, wait_ended  # noqa: F401 (fixtures)
from corral.backends import WorkerState, base

from .conftest import make_spec

pytestmark = pytest.mark.ray


def test_setup_runs_first_and_its_failure_is_setup_failed(
        backend, gpu_nodes: list[str], tmp_path: Path) -> None:  # noqa: F811
    marker = tmp_path / "ran"
    backend.launch(make_spec("ray-setup-ok").on(gpu_nodes[0]).devices(0)
                   .python("print('command ran')").with_(setup="echo setup ran").build())
    backend.launch(make_spec("ray-setup-bad").on(gpu_nodes[0]).devices(1)
                   .python(f"open({str(marker)!r}, 'w')").with_(setup="exit 6").build())
    assert [s.state for s in wait_ended(backend, "ray-setup-ok")] == [WorkerState.SUCCEEDED]
    log = log_of(backend, "ray-setup-ok", 0)
    assert log.index("setup ran") < log.index("command ran")
    [bad] = wait_ended(backend, "ray-setup-bad")
    assert (bad.state, bad.reason, bad.exit_code) == (WorkerState.FAILED, base.SETUP_FAILED, 6)
    assert not marker.exists()
    for wid in ("ray-setup-ok", "ray-setup-bad"):
        backend.release(wid, 0)
