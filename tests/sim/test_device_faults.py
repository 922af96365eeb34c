"""GPU faults in the replay (`corral.sim.device_faults`): one GPU cordoned by the live rule
(`corral.core.device_cordons`), or its whole node, on the same faults."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from corral.cli import simulate
from corral.core.model import Node, WorkerAssignment, WorkerResources, Workload, WorkloadState
from corral.sim.device_faults import Cordon, DeviceFaults
from corral.sim.failures import FailureModel
from corral.sim.policies import replay_policy
from corral.sim.replay import ReplayOptions, run_replay
from corral.sim.trace import Trace, TraceTask

NODE = Node("n0", "p", "H100", 4, 81920, 128_000, 1_000_000)


def _faults(**fields: object) -> DeviceFaults:
    model = FailureModel(gpu_mtbf_s=1e6, gpu_fault_s=300, gpu_recover_after_s=200,
                         **fields)  # type: ignore[arg-type]
    return DeviceFaults(model, (NODE,), seed=0)


def test_a_fault_cordons_one_gpu_and_holds_its_room() -> None:
    faults = _faults()
    assert faults.fault(100.0, "n0", 2) == Cordon("n0", (2,), whole=False)
    assert faults.fault(150.0, "n0", 2) is None  # out already
    on_1 = Workload("w", "q", WorkerResources(gpus=1), state=WorkloadState.RUNNING,
                    assignments=(WorkerAssignment(0, "n0", (1,), 1000, 81920),))
    (hold,) = faults.holds([on_1])
    assert hold.workload_id == "gpu-cordon:n0:2" and hold.assignments[0].devices == (2,)


def test_a_gpu_returns_once_healthy_for_recover_after() -> None:
    faults = _faults()
    faults.fault(100.0, "n0", 2)
    assert faults.recover(400.0, "n0") is None  # still sick
    faults.clear(400.0, "n0", 2)
    assert faults.recover(500.0, "n0") is None  # healthy for 100 s of the 200 s
    assert faults.recover(600.0, "n0") == Cordon("n0", (2,), whole=False)
    assert faults.holds([]) == () and faults.cordoned_gpu_s(700.0) == pytest.approx(500.0)


@pytest.mark.parametrize("device_cordons", [True, False], ids=["per-gpu", "whole-node"])
def test_the_check_due_at_clear_plus_recover_after_lets_it_go(device_cordons: bool) -> None:
    """In floats, (3948.971 + 600) - 3948.971 is 599.9999999999995: a check at its due time
    must still see the GPU as healthy for recover_after (it stayed out for good before)."""
    faults = DeviceFaults(FailureModel(gpu_mtbf_s=1e6, gpu_fault_s=1800, gpu_recover_after_s=600,
                                       device_cordons=device_cordons), (NODE,))
    faults.fault(2148.971, "n0", 1)
    cleared = 2148.971 + 1800.0
    faults.clear(cleared, "n0", 1)
    assert faults.recover(cleared + 600.0, "n0") is not None


def test_every_gpu_out_takes_the_node_out_whole() -> None:
    faults = _faults()
    for d in range(3):
        assert faults.fault(10.0 * d, "n0", d) is not None
    assert faults.fault(30.0, "n0", 3) == Cordon("n0", (0, 1, 2, 3), whole=True)
    assert faults.holds([]) == ()  # the node is out, not its devices


def test_without_device_cordons_a_fault_takes_its_node() -> None:
    faults = _faults(device_cordons=False)
    assert faults.fault(100.0, "n0", 1) == Cordon("n0", (0, 1, 2, 3), whole=True)
    faults.clear(400.0, "n0", 1)
    assert faults.recover(599.0, "n0") is None
    assert faults.recover(600.0, "n0") == Cordon("n0", (0, 1, 2, 3), whole=True)
    assert faults.cordoned_gpu_s(600.0) == pytest.approx(4 * 500.0)


def test_the_same_seed_meets_the_same_faults_whatever_is_cordoned() -> None:
    a, b = _faults(), _faults(device_cordons=False)
    assert [a.next_fault("n0") for _ in range(5)] == [b.next_fault("n0") for _ in range(5)]


# -- in the replay ----------------------------------------------------------------------------

def _task(name: str, at: float, duration: float) -> TraceTask:
    return TraceTask(name, 1000, 1024, 1, 1000, qos="BE", submitted=at, duration=duration)


# four 1-GPU jobs fill the node; a fifth arrives while GPU 0 is out
TRACE = Trace("faults", (NODE,), (*(_task(x, 0.0, 1000.0) for x in "ABCD"),
                                  _task("E", 200.0, 100.0)))


def _script(monkeypatch: pytest.MonkeyPatch, at: float, device: int) -> None:
    """Each node of each replay: one fault, on `device` at `at` seconds, then none."""
    def scripted() -> Iterator[tuple[float, int]]:
        yield at, device
        while True:
            yield 1e9, 0
    chains: dict[tuple[int, str], Iterator[tuple[float, int]]] = {}  # per replay and node
    monkeypatch.setattr(DeviceFaults, "next_fault",
                        lambda self, node: next(chains.setdefault((id(self), node), scripted())))


@pytest.fixture
def one_fault(monkeypatch: pytest.MonkeyPatch) -> None:
    _script(monkeypatch, 100.0, 0)


def _run(device_cordons: bool) -> dict[str, object]:
    model = FailureModel(gpu_mtbf_s=1e6, gpu_fault_s=300, gpu_recover_after_s=200,
                         device_cordons=device_cordons)
    policy = replay_policy("fifo-backfill", "corral", TRACE)
    return run_replay(TRACE, policy, 3, ReplayOptions(queues="qos", failures=model)).report


@pytest.mark.usefixtures("one_fault")
def test_a_per_gpu_cordon_keeps_the_nodes_other_work_running() -> None:
    gpu, node = _run(True), _run(False)
    assert gpu["completed"] == node["completed"] == 5
    assert gpu["gpu_faults"] == node["gpu_faults"] == 1
    # out from the fault (100 s) until healthy for 200 s after it cleared (400 s): 500 s
    assert gpu["gpu_hours_cordoned"] == pytest.approx(500 / 3600, abs=1e-4)
    assert node["gpu_hours_cordoned"] == pytest.approx(4 * 500 / 3600, abs=1e-4)
    # the faulty GPU's job lost its 100 s either way; the drained ones saved theirs
    assert gpu["gpu_hours_lost"] == node["gpu_hours_lost"] == pytest.approx(100 / 3600, abs=1e-4)
    gpu_jct, node_jct = gpu["jct_s"], node["jct_s"]
    assert isinstance(gpu_jct, dict) and isinstance(node_jct, dict)
    assert gpu_jct["avg"] < node_jct["avg"]
    assert gpu["makespan_s"] == pytest.approx(1600.0)  # A restarts on GPU 0 once it is back


def test_waiting_work_is_not_given_up_on_while_work_still_ends(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The replay stops waiting for capacity that comes back only after `patience` (8 h here)
    without progress; a finish is progress. B (both GPUs) waits all of A's 50,000 s; GPU 1
    (not A's) faults at 49,000 s and is back at 51,200 s, after A ended: B still runs."""
    _script(monkeypatch, 49_000.0, 1)
    node = Node("n0", "p", "H100", 2, 81920, 128_000, 1_000_000)
    b = TraceTask("B", 1000, 1024, 2, 1000, qos="BE", submitted=10.0, duration=100.0)
    trace = Trace("patience", (node,), (_task("A", 0.0, 50_000.0), b))
    model = FailureModel(gpu_mtbf_s=1e6, gpu_fault_s=2000, gpu_recover_after_s=200)
    policy = replay_policy("fifo-backfill", "corral", trace)
    report = run_replay(trace, policy, 3, ReplayOptions(queues="qos", failures=model)).report
    assert (report["completed"], report["gpu_hours_lost"]) == (2, 0.0)  # A was not hit
    assert report["makespan_s"] == pytest.approx(51_300.0)


def test_corral_simulate_replay_takes_gpu_faults(tmp_path: Path) -> None:
    """`corral simulate replay --gpu-mtbf` (per GPU) and `--node-cordons` meet the same faults;
    a bad value is a message and exit code 2."""
    out = tmp_path / "r.json"
    base = ["replay", "--synthetic", "120", "--synthetic-nodes", "4", "--seed", "1",
            "--gpu-mtbf", "86400", "--json", str(out)]
    reports = []
    for extra in ([], ["--node-cordons"]):
        result = CliRunner().invoke(simulate.app, [*base, *extra])
        assert result.exit_code == 0, result.output
        reports.append(json.loads(out.read_text()))
    gpu, node = reports
    assert gpu["gpu_faults"] > 0 and node["gpu_faults"] > 0
    assert gpu["gpu_hours_cordoned"] < node["gpu_hours_cordoned"]
    bad = CliRunner().invoke(simulate.app, [*base[:-2], "--gpu-mtbf", "-5"])
    assert bad.exit_code == 2 and "gpu_mtbf_s must be positive" in bad.output
