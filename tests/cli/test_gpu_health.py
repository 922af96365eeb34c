"""`corral up` wires NVML GPU health into its control loop: the parts are built by `bootstrap`,
exactly as `corral up` builds them, over a fake pynvml (tests/backends/fake_pynvml.py) that
reports two GPUs; the loop runs on a manual clock, workers are real local processes.

Proves: an XID on one GPU cordons that GPU only, overheated GPUs (all of them) cordon the node
(and drain what runs there, which waits for healthy GPUs), the node returns after GPU_RECOVER_PROBES healthy probes, the probe interval
is honoured and configurable from the command line, and without NVML or GPUs (or with a pool
file, or the probe turned off) nothing is probed and nothing fails.
"""

from __future__ import annotations

import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from backends.fake_pynvml import NVML_ERROR_DRIVER_NOT_LOADED, FakeGpu, FakeNvml
from corral.cli.server import GPU_RECOVER_PROBES, Composed, ServerConfig, bootstrap
from corral.control import ManualClock, Submissions
from corral.control.device_cordons import cordoned_devices
from corral.control.health import (
    DEVICE_CORDONED,
    NODE_CORDONED,
    NODE_DRAINED,
    NODE_UNCORDONED,
    DeviceCordon,
    HealthMonitor,
)
from corral.core.model import Health
from corral.spec import WorkloadSpec
from corral.store import pool as P
from corral.store import workloads as W
from corral.testing.corral_up import stop_workers

INTERVAL = 10.0
HOST = socket.gethostname()
EXAMPLE_POOL = Path(__file__).resolve().parents[2] / "examples" / "pool.yaml"
# Ends at once on SIGTERM, as the preemption contract asks; else runs long past the test.
SLEEPER = ("import signal,sys,time; signal.signal(signal.SIGTERM, lambda *a: sys.exit(0)); "
           "time.sleep(120)")


@pytest.fixture
def fake_gpus(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeNvml:
    fake = FakeNvml(gpus=[FakeGpu(), FakeGpu()])
    monkeypatch.setitem(sys.modules, "pynvml", fake.module())
    monkeypatch.chdir(tmp_path)  # no examples/pool.yaml here: the pool comes from NVML
    return fake


@pytest.fixture
def up(tmp_path: Path) -> Iterator[Callable[..., Composed]]:
    """Build corral up's parts like `serve` does; close them and their workers afterwards."""
    built: list[Composed] = []

    def build(**cfg: object) -> Composed:
        # worker_user same: as root the default is per-queue users, who cannot run this
        # interpreter when it lives under /root (see corral.testing.corral_up)
        cfg = {"worker_user": "same", **cfg}
        parts = bootstrap(ServerConfig(data_dir=tmp_path / "data", **cfg))  # type: ignore[arg-type]
        parts.loop.clock = ManualClock(time.time())
        built.append(parts)
        return parts

    yield build
    for parts in built:
        parts.close()
    stop_workers(tmp_path / "data")


def node_health(parts: Composed) -> Health:
    with parts.store.read() as c:
        return next(n.health for n in P.list_nodes(c) if n.id == HOST)


def node_events(parts: Composed) -> list[tuple[str, str | None, str]]:
    with parts.store.read() as c:
        return [(e.reason, e.workload_id, e.message) for e in W.list_events(c)
                if e.kind == "node" and e.subject == HOST]


def step(parts: Composed, dt: float = INTERVAL) -> None:
    parts.loop.step()
    parts.loop.clock.advance(dt)  # type: ignore[attr-defined]


def step_until(parts: Composed, done: Callable[[], bool], what: str, limit_s: float = 30.0) -> None:
    """Step (one probe interval per step) until `done`: real worker processes take real time to
    start and to end, so this waits a little between steps, bounded."""
    deadline = time.monotonic() + limit_s
    while not done():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        step(parts)
        threading.Event().wait(0.05)


def test_corral_up_probes_this_machines_gpus_and_cordons_on_an_xid(
        fake_gpus: FakeNvml, up: Callable[..., Composed]) -> None:
    parts = up(gpu_probe_interval_s=INTERVAL)
    assert parts.gpu_probe is not None and "NVML" in parts.pool_source
    assert isinstance(parts.loop.health, HealthMonitor)
    step(parts, dt=INTERVAL / 2)  # the first probe: both GPUs healthy
    assert node_health(parts) == Health.HEALTHY
    fake_gpus.pending_xids = [(1, 79)]
    step(parts, dt=INTERVAL / 2)  # half an interval later: not probed yet
    assert node_health(parts) == Health.HEALTHY and fake_gpus.pending_xids == [(1, 79)]
    step(parts)
    # GPU 1 alone is taken out; the node keeps GPU 0 in service (control/device_cordons.py)
    assert node_health(parts) == Health.HEALTHY
    [(reason, _, message)] = node_events(parts)
    assert reason == DEVICE_CORDONED
    assert "gpu 1: xid 79 (GPU has fallen off the bus)" in message
    with parts.store.read() as c:
        assert cordoned_devices(next(n for n in P.list_nodes(c) if n.id == HOST)) == (1,)


def test_an_unhealthy_gpu_drains_its_work_and_the_node_returns_when_healthy(
        fake_gpus: FakeNvml, up: Callable[..., Composed]) -> None:
    parts = up(gpu_probe_interval_s=INTERVAL, stop_grace_s=5.0)
    spec = WorkloadSpec.model_validate({
        "name": "sleeper", "queue": "default", "gpus": 1, "cpu": 0.1, "memory": 64,
        "command": [sys.executable, "-c", SLEEPER]})
    [rec] = Submissions(parts.store).submit(spec, "admin", parts.loop.clock.now())

    def workload() -> W.WorkloadRecord:
        with parts.store.read() as c:
            return next(r for r in W.load_active(c) if r.id == rec.id)

    step_until(parts, lambda: workload().state == "running", "the job to run")
    for gpu in fake_gpus.gpus:  # every GPU of the node: the node is cordoned as a whole
        gpu.temperature_c = 97
    step(parts)
    assert node_health(parts) == Health.UNHEALTHY
    assert workload().stop_reason == "NodeUnhealthy"
    # The worker leaves by the preemption contract; its job waits for a healthy GPU.
    step_until(parts, lambda: workload().state == "pending", "the drained job to wait")
    assert workload().attempt == 1
    assert [r for r, _, _ in node_events(parts)] == [NODE_CORDONED, NODE_DRAINED]
    assert node_events(parts)[1][1] == rec.id

    for gpu in fake_gpus.gpus:
        gpu.temperature_c = 40
    for _ in range(GPU_RECOVER_PROBES - 1):  # healthy, but not yet for long enough
        step(parts)
        assert node_health(parts) == Health.UNHEALTHY
    step(parts)
    assert node_health(parts) == Health.HEALTHY
    assert [r for r, _, _ in node_events(parts)][-1] == NODE_UNCORDONED
    step_until(parts, lambda: workload().state == "running", "the job to run again")
    assert workload().attempt == 1


@pytest.mark.parametrize("nvml", ["not-installed", "driver-not-loaded", "no-gpus"])
def test_without_nvml_or_gpus_corral_up_probes_nothing_and_runs(
        nvml: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        up: Callable[..., Composed]) -> None:
    module = {"not-installed": None,
              "driver-not-loaded": FakeNvml(init_error=NVML_ERROR_DRIVER_NOT_LOADED).module(),
              "no-gpus": FakeNvml(gpus=[]).module()}[nvml]
    monkeypatch.setitem(sys.modules, "pynvml", module)
    monkeypatch.chdir(tmp_path)
    parts = up()
    assert (parts.gpu_probe, parts.loop.health) == (None, None)
    assert parts.pool_source.startswith("a virtual inventory")
    assert parts.loop.step().leader


@pytest.mark.parametrize("cfg", [
    pytest.param({"pool_file": EXAMPLE_POOL}, id="a-pool-file-names-other-nodes"),
    pytest.param({"gpu_probe_interval_s": 0.0}, id="probe-turned-off"),
])
def test_gpus_found_but_not_probed(fake_gpus: FakeNvml, up: Callable[..., Composed],
                                   cfg: dict[str, object]) -> None:
    parts = up(**cfg)
    assert (parts.gpu_probe, parts.loop.health) == (None, None)
    fake_gpus.pending_xids = [(0, 79)]
    parts.loop.step()
    assert fake_gpus.pending_xids == [(0, 79)]  # nobody looked
    assert fake_gpus.inits == fake_gpus.shutdowns  # no NVML session left open


def test_the_probe_is_closed_with_the_server(fake_gpus: FakeNvml,
                                             up: Callable[..., Composed]) -> None:
    parts = up()
    assert fake_gpus.inits == fake_gpus.shutdowns + 1  # the probe's session
    parts.close()
    parts.gpu_probe = None  # closed here; the fixture must not close it again
    assert fake_gpus.inits == fake_gpus.shutdowns


def test_the_probe_interval_comes_from_the_command_line(monkeypatch: pytest.MonkeyPatch) -> None:
    from corral.cli import up as up_cli
    from corral.cli.main import app

    seen: list[ServerConfig] = []
    monkeypatch.setattr(up_cli, "serve", lambda cfg, on_ready=None: seen.append(cfg))
    runner = CliRunner()
    assert runner.invoke(app, ["up", "--gpu-probe-interval", "2.5"]).exit_code == 0
    assert runner.invoke(app, ["up"]).exit_code == 0
    assert [c.gpu_probe_interval_s for c in seen] == [2.5, 10.0]
    refused = runner.invoke(app, ["up", "--gpu-probe-interval", "-1"])
    assert refused.exit_code == 2 and not seen[2:]


def test_a_cordon_from_a_real_probe_is_one_action(fake_gpus: FakeNvml,
                                                  up: Callable[..., Composed]) -> None:
    parts = up(gpu_probe_interval_s=INTERVAL)
    monitor = parts.loop.health
    assert monitor is not None
    fake_gpus.gpus[1].lost = True
    now = parts.loop.clock.now()
    [action] = monitor.step(now)
    assert isinstance(action, DeviceCordon) and action.devices == (1,)
    assert "gpu 1: GPU has fallen off the bus (NVML: GPU is lost)" in dict(action.reasons)[1]
    assert monitor.step(now + INTERVAL) == []  # already cordoned: nothing more to do
