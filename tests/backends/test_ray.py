"""The Ray backend on a real multi-node Ray cluster (fake GPUs): inventory, a gang pinned to the
planned nodes with whole and fractional GPUs, the environment contract, logs, the preemption
contract, failures, and re-adoption by a new backend instance (a control-plane restart).

Workers are tiny Python programs; the tests wait for behaviour, never for an amount of time.
Node death is exercised end to end in tests/chaos.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.backends import InvalidLaunchSpec, LaunchConflict, UnknownAttempt, WorkerState, base
from corral.backends.base import WorkerStatus
from corral.core.model import Health
from corral.testing.raycluster import RayTestCluster

from .conftest import CHECKPOINT_ON_TERM, SHOW_ENV, eventually, make_spec

ray = pytest.importorskip("ray", reason="ray is not installed: pip install -e '.[ray]'")

pytestmark = pytest.mark.ray

IGNORE_TERM = """
import signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("running", flush=True)
while True:
    time.sleep(0.05)
"""


@pytest.fixture(scope="module")
def backend(ray_driver: RayTestCluster, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[object]:
    from corral.backends.ray import RayBackend

    b = RayBackend(tmp_path_factory.mktemp("ray-work"), node_root=str(
        tmp_path_factory.mktemp("ray-nodes")))
    yield b
    b.close()


@pytest.fixture(scope="module")
def gpu_nodes(backend) -> list[str]:
    return sorted(n.id for n in backend.inventory() if n.gpu_count and n.health == Health.HEALTHY)


def wait_ended(backend, workload_id: str, attempt: int = 0) -> list[WorkerStatus]:
    def ended() -> list[WorkerStatus] | None:
        mine = [s for s in backend.poll(time.time())
                if (s.workload_id, s.attempt) == (workload_id, attempt)]
        return mine if mine and all(s.state.ended for s in mine) else None
    return eventually(ended, f"{workload_id} to end", timeout=90)


def wait_running(backend, workload_id: str, attempt: int = 0) -> None:
    def running() -> bool:
        mine = [s for s in backend.poll(time.time())
                if (s.workload_id, s.attempt) == (workload_id, attempt)]
        return bool(mine) and all(s.state == WorkerState.RUNNING for s in mine)
    eventually(running, f"{workload_id} to run", timeout=90)


def log_of(backend, workload_id: str, worker: int) -> str:
    return backend.read_logs(workload_id, worker, 0, max_bytes=1 << 20)[0].decode()


def test_inventory_is_the_ray_node_table_as_one_provider(backend, ray_driver) -> None:
    nodes = {n.id: n for n in backend.inventory()}
    live_ids = {ray_driver.node_ids[w] for w in ray_driver.live_workers}
    gpu = [n for n in nodes.values() if dict(n.labels)["ray.io/node-id"] in live_ids]
    assert len(gpu) == 2
    assert {(n.provider, n.gpu_count, n.gpu_model, n.gpu_memory_mib, n.health) for n in gpu} == {
        ("ray", 4, "H100", 81559, Health.HEALTHY)}
    head = dict(nodes)[f"ray-{ray_driver.head_node_id[:12]}"]
    assert (head.gpu_count, head.gpu_model) == (0, "none")


def test_a_gang_runs_pinned_to_its_planned_nodes_with_the_environment_contract(
        backend, gpu_nodes: list[str], tmp_path: Path) -> None:
    spec = (make_spec("ray-gang").workers(2).on(*gpu_nodes).devices(2).share(250, 20000)
            .python(SHOW_ENV + "\nimport time; time.sleep(0.5)")
            .with_(checkpoint_dir=str(tmp_path / "ckpt")).build())
    whole = make_spec("ray-whole").on(gpu_nodes[0]).devices(0, 1).python(SHOW_ENV).build()
    backend.launch(spec)
    backend.launch(whole)
    ended = wait_ended(backend, "ray-gang")
    assert [(s.worker, s.state, s.exit_code) for s in ended] == [
        (0, WorkerState.SUCCEEDED, 0), (1, WorkerState.SUCCEEDED, 0)]
    envs = [json.loads(log_of(backend, "ray-gang", w).splitlines()[0]) for w in (0, 1)]
    assert [e["CORRAL_NODE_ID"] for e in envs] == gpu_nodes
    assert {(e["CUDA_VISIBLE_DEVICES"], e["CORRAL_GPU_MILLI"], e["CORRAL_WORKERS"])
            for e in envs} == {("2", "250", "2")}
    assert len({(e["CORRAL_MASTER_ADDR"], e["CORRAL_MASTER_PORT"]) for e in envs}) == 1
    assert envs[0]["CORRAL_CHECKPOINT_DIR"] == str(tmp_path / "ckpt")
    assert (tmp_path / "ckpt").is_dir()
    whole_env = json.loads(log_of(backend, "ray-whole", 0).splitlines()[0])
    assert whole_env["CUDA_VISIBLE_DEVICES"] == "0,1"
    wait_ended(backend, "ray-whole")
    for wid in ("ray-gang", "ray-whole"):
        backend.release(wid, 0)
    assert log_of(backend, "ray-gang", 1).startswith("{")  # collected: readable after release
    assert not [s for s in backend.poll(time.time()) if s.workload_id.startswith("ray-")]


def test_a_batch_is_launched_whole_with_each_attempts_error_in_order(
        backend, gpu_nodes: list[str]) -> None:
    """launch_many: one node table read, every actor created without waiting for the last;
    a refused attempt (a node not in the cluster) fails alone, in its place."""
    specs = [make_spec(f"ray-batch-{i}").on(gpu_nodes[i % 2]).devices(i // 2).python(SHOW_ENV)
             .build() for i in range(4)]
    bad = make_spec("ray-batch-bad").on("ray-nosuchnode").build()
    errors = backend.launch_many([*specs[:2], bad, *specs[2:]])
    assert errors[:2] == [None, None] and errors[3:] == [None, None]
    assert isinstance(errors[2], InvalidLaunchSpec)
    assert backend.launch_many(specs) == [None] * 4  # the same attempts again: no-ops
    for i, spec in enumerate(specs):
        assert [s.state for s in wait_ended(backend, spec.workload_id)] == [
            WorkerState.SUCCEEDED]
        env = json.loads(log_of(backend, spec.workload_id, 0).splitlines()[0])
        assert (env["CORRAL_WORKLOAD_ID"], env["CORRAL_NODE_ID"]) == (spec.workload_id,
                                                                      gpu_nodes[i % 2])
        backend.release(spec.workload_id, 0)


def test_workers_run_on_the_planned_ray_node_and_ray_holds_their_gpu_share(
        backend, gpu_nodes) -> None:
    from corral.backends.ray import NAMESPACE
    from corral.backends.ray_worker import host_name

    total = ray.cluster_resources()["GPU"]
    eventually(lambda: ray.available_resources().get("GPU", 0.0) == pytest.approx(total),
               "earlier tests' placement groups to be removed")
    spec = (make_spec("ray-pin").workers(2).on(gpu_nodes[1], gpu_nodes[1]).devices(3)
            .share(500, 40000).python(CHECKPOINT_ON_TERM).build())
    backend.launch(spec)
    wait_running(backend, "ray-pin")
    expected = next(dict(n.labels)["ray.io/node-id"] for n in backend.inventory()
                    if n.id == gpu_nodes[1])
    host = ray.get_actor(host_name(expected), namespace=NAMESPACE)
    places = [backend._place(backend._attempts[("ray-pin", 0)], w) for w in (0, 1)]
    answers = ray.get(host.statuses.remote(places), timeout=30)
    assert [a["state"] for a in answers] == ["running", "running"]
    assert {a["node"] for a in answers} == {expected}
    # Ray's own accounting holds the two halves, on that node, until the release.
    eventually(lambda: ray.available_resources().get("GPU", 0.0) == pytest.approx(total - 1.0),
               "Ray to account 2 x 0.5 GPU to the gang")
    backend.stop("ray-pin", 0, 30.0, "test over")
    wait_ended(backend, "ray-pin")
    backend.release("ray-pin", 0)
    eventually(lambda: ray.available_resources().get("GPU", 0.0) == pytest.approx(total),
               "the release to give the gang's GPUs back to Ray")


def test_stop_follows_the_preemption_contract(backend, gpu_nodes) -> None:
    polite = make_spec("ray-polite").on(gpu_nodes[0]).python(CHECKPOINT_ON_TERM).build()
    stubborn = make_spec("ray-stubborn").on(gpu_nodes[1]).python(IGNORE_TERM).build()
    for spec in (polite, stubborn):
        backend.launch(spec)
    for wid in ("ray-polite", "ray-stubborn"):
        wait_running(backend, wid)
        eventually(lambda wid=wid: "running" in log_of(backend, wid, 0), f"{wid} to print")
    backend.stop("ray-polite", 0, 30.0, "preempted by a higher priority")
    backend.stop("ray-polite", 0, 60.0, "again")  # never extends, first reason stays
    backend.stop("ray-stubborn", 0, 1.0, "evicted")
    [polite_end] = wait_ended(backend, "ray-polite")
    [stubborn_end] = wait_ended(backend, "ray-stubborn")
    assert (polite_end.state, polite_end.reason, polite_end.exit_code) == (
        WorkerState.STOPPED, base.STOPPED_IN_TIME, 0)
    assert polite_end.message.startswith("preempted by a higher priority")
    assert "SIGTERM; deadline file seen: True" in log_of(backend, "ray-polite", 0)
    assert (stubborn_end.state, stubborn_end.reason, stubborn_end.exit_code) == (
        WorkerState.STOPPED, base.KILLED_AFTER_GRACE, -9)
    for wid in ("ray-polite", "ray-stubborn"):
        backend.release(wid, 0)


FAILURES = [
    pytest.param(("-c", "import sys; sys.exit(3)"), WorkerState.FAILED, base.EXITED, 3,
                 id="exit-3"),
    pytest.param(None, WorkerState.FAILED, base.COMMAND_NOT_FOUND, 127, id="no-such-program"),
]


@pytest.mark.parametrize(("args", "state", "reason", "code"), FAILURES)
def test_failures_are_reported_with_their_exit_code(backend, gpu_nodes, args, state, reason,
                                                    code, request) -> None:
    wid = f"ray-fail-{request.node.callspec.id}"
    builder = make_spec(wid).on(gpu_nodes[0])
    builder = builder.command(sys.executable, *args) if args else builder.command(
        "/nonexistent/program")
    backend.launch(builder.build())
    [end] = wait_ended(backend, wid)
    assert (end.state, end.reason, end.exit_code) == (state, reason, code)
    backend.release(wid, 0)


def test_a_new_backend_readopts_running_work_and_launch_is_idempotent(
        backend, gpu_nodes, tmp_path: Path) -> None:
    from corral.backends.ray import RayBackend

    spec = make_spec("ray-adopt").on(gpu_nodes[0]).python(CHECKPOINT_ON_TERM).build()
    backend.launch(spec)
    wait_running(backend, "ray-adopt")
    successor = RayBackend(backend.records.root, node_root=backend.node_root)
    successor.launch(spec)  # the same spec again: a no-op, no second worker
    mine = [s for s in successor.poll(time.time()) if s.workload_id == "ray-adopt"]
    assert [(s.worker, s.state) for s in mine] == [(0, WorkerState.RUNNING)]
    with pytest.raises(LaunchConflict):
        successor.launch(make_spec("ray-adopt").on(gpu_nodes[1]).python("pass").build())
    successor.stop("ray-adopt", 0, 10.0, "done")
    [end] = wait_ended(successor, "ray-adopt")
    assert end.state == WorkerState.STOPPED
    successor.release("ray-adopt", 0)
    backend._attempts.pop(("ray-adopt", 0), None)  # the old instance is gone in real life


def test_bad_placements_are_refused_naming_the_field(backend, gpu_nodes) -> None:
    cases = [make_spec("ray-bad").on("ray-nosuchnode").build(),
             make_spec("ray-bad").on(gpu_nodes[0]).devices(4).build(),
             make_spec("ray-bad").on(gpu_nodes[0]).devices(0, 1).share(500, 100).build()]
    for spec in cases:
        with pytest.raises(InvalidLaunchSpec) as e:
            backend.launch(spec)
        assert e.value.field == "assignments"
    with pytest.raises(UnknownAttempt):
        backend.read_logs("ray-bad", 0)


WRITE_PROGRESS = """
import json, os, pathlib, time
path = pathlib.Path(os.environ["CORRAL_PROGRESS_FILE"])
tmp = path.with_name(".progress.tmp")
tmp.write_text(json.dumps({"steps": 40 + int(os.environ["CORRAL_WORKER_INDEX"]),
                           "total_steps": 400, "steps_per_s": 2.5}))
os.rename(tmp, path)
print("wrote", path, flush=True)
while True:
    time.sleep(0.05)
"""


def test_workers_progress_files_are_read_back_through_their_node_hosts(
        backend, gpu_nodes: list[str]) -> None:
    spec = (make_spec("ray-progress").workers(2).on(*gpu_nodes).devices(3)
            .python(WRITE_PROGRESS).build())
    backend.launch(spec)
    found = eventually(lambda: (p := backend.progress("ray-progress", 0)) and len(p) == 2 and p,
                       "both workers' progress", timeout=90)
    assert {w: (p.steps, p.total_steps, p.steps_per_s) for w, p in found.items()} == {
        0: (40, 400, 2.5), 1: (41, 400, 2.5)}
    assert backend.progress("ray-progress", 7) == {}  # an attempt it never launched
    backend.stop("ray-progress", 0, 0.0, "test over")
    wait_ended(backend, "ray-progress")
    backend.release("ray-progress", 0)
