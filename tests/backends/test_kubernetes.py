"""The Kubernetes backend against an in-memory API server (corral.backends.kubernetes_fake) that
sits behind the official client's HTTP transport: the client's serialization, query parameters,
model objects and errors run for real; the server and the kubelet are played by the test.

A real cluster is exercised only when KUBECONFIG names one (see the last test).
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corral.backends import (
    AttemptStillRunning,
    BackendUnavailable,
    InvalidLaunchSpec,
    LaunchConflict,
    LaunchError,
    WorkerState,
    base,
)
from corral.backends.base import WorkerStatus
from corral.core.model import Health

from .conftest import make_spec

pytest.importorskip("kubernetes", reason="kubernetes is not installed: pip install -e '.[k8s]'")

from corral.backends.kubernetes import KubernetesBackend
from corral.backends.kubernetes_fake import FakeKubernetes
from corral.backends.kubernetes_objects import pod_name, service_name

IMAGE = "python:3.11-slim"


@pytest.fixture
def fake() -> FakeKubernetes:
    k = FakeKubernetes()
    k.add_node("gpu-a", zone="z1")
    k.add_node("gpu-b", zone="z2")
    k.add_node("cpu-c", gpus=0)
    return k


@pytest.fixture
def backend(fake: FakeKubernetes, tmp_path: Path) -> KubernetesBackend:
    return KubernetesBackend(tmp_path / "work", image=IMAGE, api_client=fake.api_client(),
                             shared_gpu_resource="nvidia.com/gpu.shared", shares_per_gpu=4)


def states(backend: KubernetesBackend, wid: str) -> list[tuple[WorkerState, str, int | None]]:
    return [(s.state, s.reason, s.exit_code) for s in backend.poll(time.time())
            if s.workload_id == wid]


def env_of(pod: dict) -> dict[str, str]:
    return {e["name"]: e["value"] for e in pod["spec"]["containers"][0]["env"]}


def test_inventory_maps_nodes(fake: FakeKubernetes, backend: KubernetesBackend) -> None:
    fake.cordon("gpu-b")
    fake.set_ready("cpu-c", False)
    nodes = {n.id: n for n in backend.inventory()}
    a = nodes["gpu-a"]
    assert (a.provider, a.gpu_count, a.gpu_model, a.gpu_memory_mib, a.cpu_milli, a.memory_mib,
            a.zone, a.health, a.cordoned) == ("kubernetes", 8, "NVIDIA-H100-80GB-HBM3", 81559,
                                              64000, 524288, "z1", Health.HEALTHY, False)
    assert nodes["gpu-b"].cordoned
    assert (nodes["cpu-c"].gpu_count, nodes["cpu-c"].health) == (0, Health.UNHEALTHY)


def test_a_gang_becomes_pods_bound_to_their_nodes_with_the_contract(
        fake: FakeKubernetes, backend: KubernetesBackend) -> None:
    spec = (make_spec("k8s-gang").workers(2).on("gpu-a", "gpu-b").devices(5, 6)
            .python("print(1)").with_(env={"SEED": "7"}, checkpoint_dir="/ckpt/g").build())
    backend.launch(spec)
    pods = [fake.pod(pod_name("k8s-gang", 0, w)) for w in (0, 1)]
    assert [p["spec"]["nodeName"] for p in pods] == ["gpu-a", "gpu-b"]
    assert {p["spec"]["restartPolicy"] for p in pods} == {"Never"}
    assert pods[1]["metadata"]["labels"] == {
        "app.kubernetes.io/managed-by": "corral", "corral.io/workload": "k8s-gang",
        "corral.io/attempt": "0", "corral.io/worker": "1"}
    assert pods[0]["metadata"]["annotations"]["corral.io/devices"] == "5,6"
    container = pods[0]["spec"]["containers"][0]
    assert (container["image"], container["resources"]) == (IMAGE, {"limits": {
        "nvidia.com/gpu": "2"}})
    env = env_of(pods[1])
    svc = service_name("k8s-gang", 0)
    assert (env["CUDA_VISIBLE_DEVICES"], env["CORRAL_WORKER_INDEX"], env["CORRAL_WORKERS"],
            env["CORRAL_CHECKPOINT_DIR"], env["SEED"], env["CORRAL_MASTER_ADDR"]) == (
        "0,1", "1", "2", "/ckpt/g", "7", f"{svc}.corral.svc")
    volume = pods[0]["spec"]["volumes"][0]["downwardAPI"]["items"][0]
    assert volume["fieldRef"]["fieldPath"] == "metadata.annotations['corral.io/preempt-deadline']"
    assert env["CORRAL_PREEMPT_DEADLINE_FILE"] == "/etc/corral/preempt-deadline"
    service = fake.services[("corral", svc)]
    assert (service["spec"]["clusterIP"], service["spec"]["selector"]["corral.io/worker"]) == (
        "None", "0")


@pytest.mark.parametrize(("shared", "limits", "noted"), [
    pytest.param(True, {"nvidia.com/gpu.shared": "1"}, False, id="shared-resource"),
    pytest.param(False, {"nvidia.com/gpu": "1"}, True, id="whole-gpu-fallback"),
])
def test_a_share_of_a_gpu(fake: FakeKubernetes, tmp_path: Path, shared: bool, limits: dict,
                          noted: bool) -> None:
    options = {"shared_gpu_resource": "nvidia.com/gpu.shared", "shares_per_gpu": 4} if shared \
        else {}
    backend = KubernetesBackend(tmp_path, image=IMAGE, api_client=fake.api_client(), **options)
    backend.launch(make_spec("k8s-share").on("gpu-a").devices(3).share(250, 20000).build())
    pod = fake.pod(pod_name("k8s-share", 0, 0))
    assert pod["spec"]["containers"][0]["resources"]["limits"] == limits
    assert ("corral.io/note" in pod["metadata"]["annotations"]) is noted
    assert env_of(pod)["CORRAL_GPU_MILLI"] == "250"


ENDS = [
    pytest.param(0, "", (WorkerState.SUCCEEDED, base.EXITED, 0), id="exit-0"),
    pytest.param(3, "", (WorkerState.FAILED, base.EXITED, 3), id="exit-3"),
    pytest.param(137, "OOMKilled", (WorkerState.FAILED, base.KILLED_BY_SIGNAL, -9), id="oom"),
]


@pytest.mark.parametrize(("code", "why", "expected"), ENDS)
def test_pod_phases_become_worker_states(fake: FakeKubernetes, backend: KubernetesBackend,
                                         code: int, why: str, expected: tuple) -> None:
    backend.launch(make_spec("k8s-run").on("gpu-a").build())
    name = pod_name("k8s-run", 0, 0)
    assert states(backend, "k8s-run") == [(WorkerState.STARTING, base.STARTING, None)]
    fake.run(name)
    assert states(backend, "k8s-run") == [(WorkerState.RUNNING, base.RUNNING, None)]
    fake.exit(name, code, reason=why)
    assert states(backend, "k8s-run") == [expected]


def test_stop_writes_the_deadline_then_deletes_with_the_grace(
        fake: FakeKubernetes, backend: KubernetesBackend) -> None:
    backend.launch(make_spec("k8s-stop").on("gpu-a").build())
    name = pod_name("k8s-stop", 0, 0)
    fake.run(name)
    fake.requests.clear()
    backend.stop("k8s-stop", 0, 30.0, "preempted")
    backend.stop("k8s-stop", 0, 60.0, "again")  # never extends: no further calls
    calls = [(m, p) for m, p, _ in fake.requests if name in p]
    assert calls == [("PATCH", f"/api/v1/namespaces/corral/pods/{name}"),
                     ("DELETE", f"/api/v1/namespaces/corral/pods/{name}")]
    deadline = float(fake.pod(name)["metadata"]["annotations"]["corral.io/preempt-deadline"])
    assert 0 < deadline - time.time() <= 30
    assert fake.pod(name)["metadata"]["deletionGracePeriodSeconds"] == 30
    assert states(backend, "k8s-stop") == [(WorkerState.RUNNING, base.RUNNING, None)]
    fake.exit(name, 0)  # it checkpointed and left: the API server removes the pod
    [status] = [s for s in backend.poll(time.time()) if s.workload_id == "k8s-stop"]
    assert (status.state, status.reason) == (WorkerState.STOPPED, base.STOPPED_IN_TIME)
    assert status.message.startswith("preempted")


def test_a_not_ready_node_loses_its_worker_and_the_pod_is_fenced(
        fake: FakeKubernetes, backend: KubernetesBackend) -> None:
    backend.launch(make_spec("k8s-lost").workers(2).on("gpu-a", "gpu-b").build())
    for w in (0, 1):
        fake.run(pod_name("k8s-lost", 0, w))
    fake.set_ready("gpu-b", False)
    assert [s[:2] for s in states(backend, "k8s-lost")] == [
        (WorkerState.RUNNING, base.RUNNING), (WorkerState.LOST, base.NODE_LOST)]
    assert ("corral", pod_name("k8s-lost", 0, 1)) not in fake.pods  # force-deleted


def test_release_collects_logs_and_deletes_what_it_created(
        fake: FakeKubernetes, backend: KubernetesBackend) -> None:
    backend.launch(make_spec("k8s-done").on("gpu-a").build())
    name = pod_name("k8s-done", 0, 0)
    fake.run(name)
    fake.write_log(name, "step 1\nstep 2\n")
    assert backend.read_logs("k8s-done", 0, 7) == (b"step 2\n", 14)
    with pytest.raises(AttemptStillRunning):
        backend.release("k8s-done", 0)
    fake.exit(name, 0)
    backend.release("k8s-done", 0)
    assert not fake.pods and not fake.services
    assert backend.read_logs("k8s-done", 0) == (b"step 1\nstep 2\n", 14)
    assert backend.poll(time.time()) == []


def test_launch_is_idempotent_and_a_new_backend_readopts(
        fake: FakeKubernetes, backend: KubernetesBackend) -> None:
    spec = make_spec("k8s-adopt").on("gpu-a").build()
    backend.launch(spec)
    backend.launch(spec)
    assert len(fake.pods) == 1
    with pytest.raises(LaunchConflict):
        backend.launch(make_spec("k8s-adopt").on("gpu-b").build())
    fake.run(pod_name("k8s-adopt", 0, 0))
    successor = KubernetesBackend(backend.records.root, image=IMAGE,
                                  api_client=fake.api_client())
    assert [(s.workload_id, s.state) for s in successor.poll(time.time())] == [
        ("k8s-adopt", WorkerState.RUNNING)]


def test_a_refused_pod_fails_the_launch_and_leaves_nothing(
        fake: FakeKubernetes, backend: KubernetesBackend) -> None:
    backend.launch(make_spec("k8s-first").on("gpu-b").build())
    fake.fail_next("POST", "/pods", 403, after=1)  # the gang's second pod is refused
    with pytest.raises(LaunchError, match="refused"):
        backend.launch(make_spec("k8s-refused").workers(2).on("gpu-a", "gpu-b").build())
    assert sorted(name for _, name in fake.pods) == [pod_name("k8s-first", 0, 0)]
    assert ("corral", service_name("k8s-refused", 0)) not in fake.services
    assert [s for s, _, _ in states(backend, "k8s-refused")] == [WorkerState.LOST] * 2


def test_errors_name_the_field_or_say_the_engine_is_away(
        fake: FakeKubernetes, backend: KubernetesBackend) -> None:
    for spec in (make_spec("k8s-bad").on("gpu-z").build(),
                 make_spec("k8s-bad").on("cpu-c").devices(0).build()):
        with pytest.raises(InvalidLaunchSpec) as e:
            backend.launch(spec)
        assert e.value.field == "assignments"
    backend.launch(make_spec("k8s-up").on("gpu-a").build())
    fake.fail_next("GET", "/pods", 503)
    with pytest.raises(BackendUnavailable):
        backend.poll(time.time())


@given(st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=1,
               max_size=120), st.integers(0, 999), st.integers(0, 4095))
def test_pod_names_are_valid_dns_labels(workload_id: str, attempt: int, worker: int) -> None:
    name = pod_name(workload_id, attempt, worker)
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", name), name
    assert name.endswith(f"-{attempt}-{worker}")


def test_distinct_ids_get_distinct_names() -> None:
    long = "x" * 80
    assert pod_name(long + "a", 0, 0) != pod_name(long + "b", 0, 0)
    assert pod_name("Train_1", 0, 0) != pod_name("train-1", 0, 0)


@pytest.mark.skipif(not os.environ.get("KUBECONFIG"), reason="no KUBECONFIG: no real cluster")
def test_a_real_cluster_runs_a_pod(tmp_path: Path) -> None:  # pragma: no cover - needs a cluster
    backend = KubernetesBackend(tmp_path, image="busybox:1.36",
                                namespace=os.environ.get("CORRAL_TEST_NAMESPACE", "default"))
    nodes = [n for n in backend.inventory() if n.health == Health.HEALTHY and not n.cordoned]
    assert nodes
    spec = make_spec("k8s-real").on(nodes[0].id).devices().command("sh", "-c", "echo hi").build()
    backend.launch(spec)
    deadline = time.monotonic() + 300

    def ended() -> list[WorkerStatus]:
        return [s for s in backend.poll(time.time()) if s.state.ended]

    while not ended() and time.monotonic() < deadline:
        time.sleep(1)
    assert [s.state for s in ended()] == [WorkerState.SUCCEEDED]
    assert b"hi" in backend.read_logs("k8s-real", 0)[0]
    backend.release("k8s-real", 0)
