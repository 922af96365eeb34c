"""`image:` on the agent backend, for real: a `corral up --backend agent` and two `corral
agent` processes on this machine, one whose host runs podman (a wrapper over a storage of the
test's own holding a busybox image imported here, never pulled: `podman_image`'s), one
whose host has none (its runtime program does not exist). Seen from outside: each host's
report on its node, a submission no node can run refused naming image, image work placed only
on the podman host (its output, its volume, its checkpoint dir and its exit code shipped back),
`corral exec` inside the container through the agent, and a cancel that reaches the container
as SIGTERM and removes it at the grace. Skipped where podman cannot run."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from tests.agent.conftest import make_token
from tests.agent.harness import AgentProc, wait_for
from tests.integration.podman_image import (
    IMAGE,
    containers_named,
    image_runtime,
)

from corral.backends.containers import RUNTIME_ENV, ContainerRuntime
from corral.core.model import LABEL_CONTAINER_RUNTIME
from corral.testing.corral_up import CorralServer

# real containers and three real processes (server and two agents)
pytestmark = pytest.mark.slow

PODMAN_HOST, PLAIN_HOST = "host-pod", "host-plain"


@dataclass
class Pool:
    server: CorralServer
    runtime: ContainerRuntime
    tmp: Path
    refused_without_podman: httpx.Response  # an image submitted while no host had podman
    agents: dict[str, AgentProc]

    def spec(self, name: str, script: str, **fields: object) -> dict[str, object]:
        return {"name": name, "queue": "default", "cpu": 0.1, "memory": 64, "image": IMAGE,
                "command": ["/bin/sh", "-c", script], **fields}

    def containers(self) -> str:
        return containers_named(self.runtime, every=True)


def _submit_raw(server: CorralServer, spec: dict[str, object]) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/workloads", json=spec, timeout=30,
                      headers={"Authorization": f"Bearer {server.token}"})


def _label(pool: Pool, node_id: str) -> str | None:
    with pool.server.client() as c:
        return next(n.labels.get(LABEL_CONTAINER_RUNTIME) for n in c.nodes() if n.id == node_id)


def _joined(server: CorralServer, names: set[str]) -> bool:
    with server.client() as c:
        return names <= {n.id for n in c.nodes()}


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pool]:
    images = ExitStack()  # podman's runroot must stay within 50 characters: image_runtime
    runtime = images.enter_context(image_runtime())
    root = tmp_path_factory.mktemp("agent-images")
    server = CorralServer(root / "cp").start("--backend", "agent", "--agent-timeout", "5")
    agents = [AgentProc(server.url, root / PLAIN_HOST, PLAIN_HOST, make_token(server, 1),
                        extra=["--provider", "plain"],
                        env={RUNTIME_ENV: str(root / "no-such-podman")})]
    try:
        agents[0].start()
        wait_for(lambda: _joined(server, {PLAIN_HOST}), "the host without podman to join")
        image = {"name": "early", "queue": "default", "cpu": 0.1, "memory": 64,
                 "image": IMAGE, "command": ["/bin/true"]}
        refused = _submit_raw(server, image)
        agents.append(AgentProc(server.url, root / PODMAN_HOST, PODMAN_HOST,
                                make_token(server, 1), env={RUNTIME_ENV: runtime.program},
                                # dearer: work free to go anywhere prefers the plain host
                                extra=["--price", "5"]))
        agents[1].start()
        wait_for(lambda: _joined(server, {PODMAN_HOST}), "the podman host to join")
        # the backend's answer on image is kept a few seconds (asked on every submission)
        wait_for(lambda: _submit_raw(server, image).status_code == 201, "image accepted",
                 timeout=30, every=1.0)
        yield Pool(server, runtime, root, refused, {a.node_id: a for a in agents})
    finally:
        for a in agents:
            a.stop()
            a.kill_workers()
        server.stop()
        images.close()  # every container removed, the storage deleted


def test_each_host_reports_its_runtime_and_an_image_no_host_can_run_is_refused(
        pool: Pool) -> None:
    with pool.server.client() as c:
        labels = {n.id: n.labels.get(LABEL_CONTAINER_RUNTIME) for n in c.nodes()}
    assert labels == {PODMAN_HOST: "podman", PLAIN_HOST: "none"}
    refused = pool.refused_without_podman
    assert refused.status_code == 422, refused.text
    fields = {d["field"]: d["message"] for d in refused.json()["problems"]}
    assert "no node can run images, none has podman" in fields["image"], fields
    assert "the agent backend" in fields["image"]
    # the podman host is there now, but this image may only go where it is not
    kept_off = _submit_raw(pool.server, pool.spec("off", "true", node_selector={
        "corral.dev/provider": "plain"}))
    assert kept_off.status_code == 422, kept_off.text
    assert "image and node_selector together" in kept_off.text
    dry = httpx.post(f"{pool.server.url}/v1/dry-run", json=pool.spec("dry", "true"), timeout=30,
                     headers={"Authorization": f"Bearer {pool.server.token}"})
    assert dry.status_code == 200, dry.text
    assert any(f"`podman run {IMAGE}` on its agent's host" in n
               and f"hosts whose agent reports podman ({PODMAN_HOST})" in n
               for n in dry.json()["notes"]), dry.json()


def test_image_work_runs_only_on_the_podman_host_with_the_local_contract(pool: Pool) -> None:
    data, ckpt = pool.tmp / "data", pool.tmp / "ckpt"
    data.mkdir()
    (data / "f").write_text("from-the-volume\n")
    script = ("echo node=$CORRAL_NODE_ID stage=$STAGE; cat /data/f; test -d /usr || "
              "echo busybox-root; echo saved > $CORRAL_CHECKPOINT_DIR/ckpt-$CORRAL_NODE_ID; "
              "echo init=$(cat /proc/1/comm); echo shm > /dev/shm/$CORRAL_WORKLOAD_ID; exit 3")
    with pool.server.client() as c:
        ids = [c.submit(pool.spec(f"img-{i}", script, gpus=1, env={"STAGE": "inside"},
                                  checkpoint_dir=str(ckpt), max_restarts=0,
                                  volumes=[{"name": "data", "host_path": str(data),
                                            "mount": "/data", "read_only": True}])
                        ).workloads[0].id for i in range(3)]
        for wid in ids:
            done = c.wait(wid, timeout_s=120)
            assert (done.state, done.exit_code) == ("failed", 3), (done, pool.server.log())
            assert {p.node_id for p in done.placements} == {PODMAN_HOST}
            log = c.logs(wid).data
            assert f"node={PODMAN_HOST} stage=inside" in log, log
            assert "from-the-volume" in log and "busybox-root" in log
            assert "init=podman-init" in log  # --init: a pid 1 that forwards SIGTERM
            # the worker log's first line says how the planned GPU was handed in
            assert f"[corral] image {IMAGE} in container corral-{wid}-0-0-" in log
            assert "no GPU device files" in log
    assert (ckpt / f"ckpt-{PODMAN_HOST}").read_text() == "saved\n"
    for wid in ids:  # --ipc=host: the host's /dev/shm, not podman's own 64 MiB
        shm = Path("/dev/shm") / wid
        assert shm.read_text() == "shm\n"
        shm.unlink()
    assert not [n for n in pool.containers().split() if any(w in n for w in ids)]  # --rm


def test_corral_exec_runs_inside_the_container_through_the_agent(pool: Pool) -> None:
    with pool.server.client() as c:
        wid = c.submit(pool.spec("img-exec", "echo ready; sleep 600", env={"STAGE": "in"})
                       ).workloads[0].id
        wait_for(lambda: "ready" in c.logs(wid).data, "the worker to start", timeout=120)
        got = pool.server.cli("exec", wid, "--", "/bin/sh", "-c",
                              "echo $STAGE; test -d /usr || echo busybox-root")
        assert got.stdout.split() == ["in", "busybox-root"], got
        c.cancel(wid)
        c.wait(wid, timeout_s=120)


def test_a_cancel_reaches_the_container_and_removes_it_at_the_grace(pool: Pool) -> None:
    script = ("trap 'echo got TERM by $(cat $CORRAL_PREEMPT_DEADLINE_FILE), ignoring' TERM; "
              "echo ready; while true; do sleep 1 & wait; done")  # wait: the trap runs at once
    with pool.server.client() as c:
        # the agent learns of the stop a sync later, and has what is left of the grace
        wid = c.submit(pool.spec("img-cancel", script, preemption_grace=5)).workloads[0].id
        wait_for(lambda: "ready" in c.logs(wid).data, "the worker to start", timeout=120)
        assert f"corral-{wid}-0-0-" in pool.containers()
        c.cancel(wid)
        done = c.wait(wid, timeout_s=120)
        assert done.state == "cancelled", done
        assert done.placements[0].reason == "KilledAfterGrace", done
        # SIGTERM reached the container first, the deadline file was there to read inside
        assert re.search(r"got TERM by \d+\.\d+, ignoring", c.logs(wid).data), c.logs(wid).data
    wait_for(lambda: f"corral-{wid}-" not in pool.containers(), "the container removed",
             timeout=60)


def test_a_dead_agents_container_ends_at_its_lease_and_the_work_waits_for_a_podman_host(
        pool: Pool) -> None:
    """Last in the module: it kills the podman host's agent (its workers run on, as when an
    agent dies alone) and starts it again over the same data dir, first without podman."""
    agent = pool.agents[PODMAN_HOST]
    script = 'trap "echo got TERM, ignoring" TERM; echo ready; while true; do sleep 1; done'
    with pool.server.client() as c:
        wid = c.submit(pool.spec("img-lease", script)).workloads[0].id
        wait_for(lambda: "ready" in c.logs(wid).data, "the worker to start", timeout=120)
        assert f"corral-{wid}-0-0-" in pool.containers()
        agent.proc.kill()  # type: ignore[union-attr]  # the agent alone: `podman run` lives on
        agent.proc.wait(10)  # type: ignore[union-attr]
        # its runner sees the lease (4 s) go stale: SIGKILL, then the container removed, so
        # it cannot run on beside a restart elsewhere
        wait_for(lambda: f"corral-{wid}-0-0-" not in pool.containers(),
                 "the container removed at the lease", timeout=60)
        # the server loses the host (5 s); the only other host has no podman
        waiting = wait_for(lambda: (w := c.get(wid)).state == "pending"
                           and w.reason_code == "NoNodeSelected" and w, "the work to wait")
        assert waiting.reason_message.startswith("no node can run images: none has podman"), (
            waiting)
        # back over its data dir (its credential; no join) on a host where podman is gone:
        # its first sync reports it, and the node no longer runs images
        agent.env = {RUNTIME_ENV: str(pool.tmp / "no-such-podman")}
        agent.start()
        wait_for(lambda: _label(pool, PODMAN_HOST) == "none" and c.get(wid).state == "pending",
                 "the host's report of no runtime")
        assert c.get(wid).reason_message.startswith("no node can run images")
        agent.stop()
        agent.env = {RUNTIME_ENV: pool.runtime.program}  # podman back: reported, work placed
        agent.start()
        wait_for(lambda: (w := c.get(wid)).state == "running" and w.attempt == 1,
                 "the work to start again on the podman host", timeout=120)
        assert _label(pool, PODMAN_HOST) == "podman"
        assert {p.node_id for p in c.get(wid).placements} == {PODMAN_HOST}
        c.cancel(wid)
        c.wait(wid, timeout_s=120)
