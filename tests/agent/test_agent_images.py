"""`image:` on agents, without processes: what a host reports, how the core reads it (image work
only on nodes that run containers, and why it waits when none does), what the agent backend
accepts at submission and refuses at launch. The real run is tests/integration/
test_images_agent.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from corral.agent.client import Refused
from corral.agent.host import Declared, container_label, host_facts
from corral.agent.protocol import HostFacts, SyncIn, SyncOut
from corral.agent.runtime import Agent, AgentSettings
from corral.backends.agent import AgentBackend, AgentNode, node_from_facts
from corral.backends.base import LaunchSpec
from corral.backends.containers import ContainerRuntime
from corral.backends.errors import InvalidLaunchSpec
from corral.control.packaging import packaging_refusals
from corral.core import reasons as R
from corral.core import schedule
from corral.core.constraints import unmet_constraint
from corral.core.model import (
    LABEL_CONTAINER_RUNTIME,
    LABEL_RUNS_IMAGES,
    ClusterState,
    Node,
    Queue,
    WorkerAssignment,
)
from corral.spec import WorkloadSpec

PODMAN = {LABEL_CONTAINER_RUNTIME: "podman"}
NONE = {LABEL_CONTAINER_RUNTIME: "none"}


def _node(node_id: str, labels: dict[str, str], provider: str = "agent") -> Node:
    facts = {"gpus": 4, "gpu_model": "h100", "gpu_memory_mib": 81920, "cpu_milli": 64_000,
             "memory_mib": 512_000, "provider": provider, "labels": labels}
    return node_from_facts(AgentNode(node_id, facts, last_seen=0.0, lost_at=None, seq=0))


def _spec(**fields: Any) -> WorkloadSpec:
    return WorkloadSpec.model_validate({"name": "w", "queue": "q", "gpus": 1, "cpu": 1,
                                        "memory": "1GiB", "command": ["x"], **fields})


def test_a_host_reports_the_runtime_it_found_or_none() -> None:
    assert container_label(ContainerRuntime(program="/opt/wrap/podman")) == PODMAN
    assert container_label(None) == NONE
    found = host_facts(Declared(gpus=0), containers=ContainerRuntime()).labels
    assert found[LABEL_CONTAINER_RUNTIME] == "podman"
    assert host_facts(Declared(gpus=0), containers=None).labels == NONE


@pytest.mark.parametrize(("labels", "runs"), [
    pytest.param(PODMAN, "true", id="podman"),
    pytest.param(NONE, "false", id="none"),
    pytest.param({}, "true", id="other backends' nodes: their backend decides"),
])
def test_a_node_runs_images_unless_it_reports_no_runtime(labels: dict[str, str],
                                                          runs: str) -> None:
    assert _node("n", labels).label(LABEL_RUNS_IMAGES) == runs


def test_image_work_is_placed_only_on_nodes_that_run_containers() -> None:
    nodes = (_node("plain-1", NONE), _node("pod", PODMAN), _node("plain-2", NONE))
    units = tuple(u for i in range(4)
                  for u in _spec(image="busybox").to_core(f"img-{i}", float(i)))
    units += tuple(_spec().to_core("bare", 9.0))
    plan = schedule(ClusterState(nodes, (Queue("q", quota_gpus=16),), units), 10.0)
    placed = {p.workload_id: {a.node_id for a in p.assignments} for p in plan.placements}
    assert {wid: on for wid, on in placed.items() if wid != "bare"} == {
        f"img-{i}": {"pod"} for i in range(4)}  # the podman host's 4 GPUs, nowhere else
    assert "bare" in placed  # work without an image goes anywhere


def test_with_no_node_that_runs_containers_the_reason_says_so() -> None:
    nodes = (_node("plain-1", NONE), _node("plain-2", NONE))
    unit = _spec(image="busybox").to_core("img", 0.0)[0]
    plan = schedule(ClusterState(nodes, (Queue("q", quota_gpus=8),), (unit,)), 1.0)
    reason = plan.pending["img"]
    assert reason.code == R.NO_NODE_SELECTED and reason.unresolvable
    assert reason.message.startswith("no node can run images: none has podman (2 of 2 "
                                     f"report {LABEL_CONTAINER_RUNTIME}=none)"), reason
    assert dict(reason.details) == {"field": "image"}  # the submission's error names image


def test_an_image_kept_off_the_podman_hosts_by_its_selector_names_both() -> None:
    nodes = (_node("plain", NONE, provider="plain"), _node("pod", PODMAN))
    unit = _spec(image="busybox", node_selector={"corral.dev/provider": "plain"}
                 ).to_core("img", 0.0)[0]
    found = unmet_constraint(unit, nodes)
    assert found is not None and found.code == R.CONSTRAINTS_DISJOINT
    assert "no node meets its image and node_selector together" in found.message
    assert unmet_constraint(_spec(image="busybox").to_core("img", 0.0)[0], nodes) is None


class _Mailbox:
    """The part of `Mailbox` launch and packaging_fields read; assign records the spec."""

    def __init__(self, *nodes: tuple[str, dict[str, str]]) -> None:
        self.facts = {n: {"gpus": 4, "labels": labels} for n, labels in nodes}
        self.assigned: list[LaunchSpec] = []
        self.asked = 0

    def nodes(self) -> list[AgentNode]:
        self.asked += 1
        return [AgentNode(n, f, last_seen=0.0, lost_at=None, seq=0)
                for n, f in self.facts.items()]

    def assigned_spec(self, workload_id: str, attempt: int) -> None:
        return None

    def assign(self, spec: LaunchSpec, addr: str, port: int, now: float) -> None:
        self.assigned.append(spec)


class _Clock:
    t = 100.0

    def __call__(self) -> float:
        return self.t


def test_the_agent_backend_honours_image_once_a_host_has_podman() -> None:
    clock, mailbox = _Clock(), _Mailbox(("plain", NONE))
    backend = AgentBackend(mailbox, clock=clock, restart_grace_s=0)  # type: ignore[arg-type]
    assert "image" not in backend.packaging_fields
    [(field, message)] = packaging_refusals(_spec(image="busybox"), "agent",
                                            backend.packaging_fields)
    assert field == "image" and "agent: no node can run images, none has podman" in message
    mailbox.facts["pod"] = {"gpus": 4, "labels": PODMAN}  # a host with podman joins
    assert "image" not in backend.packaging_fields  # the answer is kept a few seconds
    clock.t += 5.0
    assert "image" in backend.packaging_fields and mailbox.asked == 2
    assert "placed only on hosts whose agent reports podman (pod)" in backend.image_note("bb")
    # in a container a volume may be mounted elsewhere, read-only (as on the local backend)
    volume = {"name": "data", "host_path": "/srv/data", "mount": "/data", "read_only": True}
    assert packaging_refusals(_spec(image="busybox", volumes=[volume]), "agent",
                              backend.packaging_fields) == []
    assert {f for f, _ in packaging_refusals(_spec(volumes=[volume]), "agent",
                                             backend.packaging_fields)} == {
        "volumes[0].mount", "volumes[0].read_only"}  # without an image, a process on the host


def test_the_agent_backend_refuses_to_launch_an_image_on_a_host_without_a_runtime() -> None:
    mailbox = _Mailbox(("plain", NONE), ("old", {}), ("pod", PODMAN))
    backend = AgentBackend(mailbox, restart_grace_s=0)  # type: ignore[arg-type]

    def spec(node: str) -> LaunchSpec:
        return LaunchSpec(workload_id=f"img-{node}", attempt=0, queue="q", command=("true",),
                          image="busybox",
                          assignments=(WorkerAssignment(0, node, (0,), 1000, 81920),))
    with pytest.raises(InvalidLaunchSpec, match="node plain cannot run images") as refused:
        backend.launch(spec("plain"))
    assert refused.value.field == "image"
    backend.launch(spec("pod"))
    backend.launch(spec("old"))  # an agent older than the report: its own backend decides
    assert [s.workload_id for s in mailbox.assigned] == ["img-pod", "img-old"]


class _Server:
    """The agent's client, recording each sync's runtime report; `old`: a server of the last
    release, which refuses the field (extra=forbid), as the API words it."""

    def __init__(self, old: bool = False) -> None:
        self.old, self.reports, self.syncs = old, [], 0

    def sync(self, credential: str, request: SyncIn) -> SyncOut:
        self.syncs += 1
        if self.old and request.container_runtime is not None:
            raise Refused(422, "invalid_request", "container_runtime: unknown field; check "
                          "its spelling against the documented fields (docs/specs.md)")
        self.reports.append(request.container_runtime)
        return SyncOut(seq=0, assignments=[])

    def ship_logs(self, credential: str, chunks: list[Any]) -> list[int]:
        return []


def _agent(tmp_path: Path, server: _Server, runtime: ContainerRuntime | None) -> Agent:
    agent = Agent(AgentSettings(server="http://127.0.0.1:9", data_dir=tmp_path, node_id="h",
                                gpu_probe_interval_s=0, known_answer_interval_s=0,
                                poll_wait_s=0), HostFacts(gpus=0),
                  client=server, containers=runtime)  # type: ignore[arg-type]
    agent.credential = "cred"
    return agent


@pytest.mark.parametrize(("runtime", "said"), [
    pytest.param(ContainerRuntime(program="/opt/x/podman"), "podman", id="podman"),
    pytest.param(None, "none", id="none")])
def test_an_agent_reports_its_runtime_on_its_first_sync_after_each_start(
        tmp_path: Path, runtime: ContainerRuntime | None, said: str) -> None:
    server = _Server()
    agent = _agent(tmp_path, server, runtime)
    agent.turn()
    agent.turn()
    assert server.reports == [said, None]  # once: the server keeps it with the node's facts
    _agent(tmp_path, server, runtime).turn()  # a restart over the same data dir: again
    assert server.reports == [said, None, said]


def test_an_older_server_keeps_the_runtime_the_node_joined_with(tmp_path: Path) -> None:
    server = _Server(old=True)
    agent = _agent(tmp_path, server, ContainerRuntime())
    assert agent.turn() is None  # refused once, not fatal
    agent.turn()
    assert (server.syncs, server.reports) == (2, [None])
