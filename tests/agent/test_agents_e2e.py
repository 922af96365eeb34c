"""`corral up --backend agent` with two real `corral agent` processes on this machine: a gang
across both hosts, logs and exit codes shipped back, join tokens and credentials."""

from __future__ import annotations

import os

import httpx
import pytest

from .conftest import Cluster, make_token
from .harness import AgentProc, wait_for

pytestmark = pytest.mark.slow


def test_a_gang_spans_two_agents_and_its_logs_come_back(shared_cluster: Cluster) -> None:
    cluster = shared_cluster
    spec = cluster.ticker("gang", ticks=3, every=0.2, workers=2, gpus=4)
    with cluster.server.client() as c:
        wid = c.submit(spec).group_id
        done = c.wait(wid, timeout_s=60)
        assert done.state == "succeeded", done
        logs = {w: c.logs(wid, worker=w).data for w in (0, 1)}
    nodes = {cluster.ticks("gang", w)[0][1] for w in (0, 1)}
    assert nodes == {"host-a", "host-b"}  # one worker per host: 4 GPUs each, 4 per host
    rendezvous = {line.split("master", 1)[1].strip() for log in logs.values()
                  for line in log.splitlines() if line.startswith("done on")}
    assert len(rendezvous) == 1  # both workers were given the same master address and port
    assert all("done on host-" in log for log in logs.values())


def test_a_failing_worker_ships_its_exit_code(shared_cluster: Cluster) -> None:
    import sys

    cluster = shared_cluster
    spec = {"name": "fails", "queue": "default", "cpu": 0.1, "memory": 64,
            "max_restarts": 0,
            "command": [sys.executable, "-c", "import sys; print('bye'); sys.exit(3)"]}
    with cluster.server.client() as c:
        wid = c.submit(spec).group_id
        done = c.wait(wid, timeout_s=60)
        assert done.state == "failed"
        described = cluster.server.cli_json("describe", wid)
    assert "bye" in cluster.server.cli("logs", wid).stdout
    assert described["exit_code"] == 3  # type: ignore[index]


def test_join_tokens_are_spent_and_secrets_do_not_cross(shared_cluster: Cluster) -> None:
    cluster = shared_cluster
    # The fixture's token had two uses, both spent: a third host is refused, and says why.
    third = AgentProc(cluster.server.url, cluster.tmp / "host-c", "host-c",
                      cluster.join_token).start()
    assert third.proc is not None
    assert third.proc.wait(30) == 1
    assert "used up" in third.log()
    # A live node cannot be taken over with a fresh token.
    fresh = make_token(cluster.server, 1)
    r = httpx.post(f"{cluster.server.url}/agent/v1/join",
                   headers={"Authorization": f"Bearer {fresh}"},
                   json={"node_id": "host-a", "facts": {"gpus": 1}})
    assert r.status_code == 409 and "alive" in r.json()["message"]
    # Neither the admin token on the agent wire, nor a join token on the API.
    sync = httpx.post(f"{cluster.server.url}/agent/v1/sync", json={},
                      headers={"Authorization": f"Bearer {cluster.server.token}"})
    assert sync.status_code == 401
    api = httpx.get(f"{cluster.server.url}/v1/nodes", headers={"Authorization": f"Bearer {fresh}"})
    assert api.status_code == 401
    # A user mistake in the facts names the field.
    bad = httpx.post(f"{cluster.server.url}/agent/v1/join",
                     headers={"Authorization": f"Bearer {fresh}"},
                     json={"node_id": "host-d", "facts": {"gpus": -1}})
    assert bad.status_code == 422 and "gpus" in bad.text
    # The admin lists tokens without their secrets, and a revoked token joins nothing.
    listed = cluster.server.cli_json("agent-tokens", "ls")
    assert all("token" not in t for t in listed)  # type: ignore[union-attr]
    newest = max(t["id"] for t in listed)  # type: ignore[union-attr]
    cluster.server.cli("agent-tokens", "revoke", str(newest))
    r = httpx.post(f"{cluster.server.url}/agent/v1/join",
                   headers={"Authorization": f"Bearer {fresh}"},
                   json={"node_id": "host-e", "facts": {"gpus": 1}})
    assert r.status_code == 401 and "revoked" in r.json()["message"]
    audited = cluster.server.cli_json("audit", "--action", "agent_token.revoke")
    assert [e["target"] for e in audited["items"]] == [str(newest)]  # type: ignore[index]


def test_an_agent_restarted_over_its_data_dir_keeps_its_node_and_workers(
        patient_cluster: Cluster) -> None:
    cluster = patient_cluster
    spec = cluster.ticker("survivor", ticks=20, every=0.25, gpus=4)
    with cluster.server.client() as c:
        wid = c.submit(spec).group_id
        c.wait(wid, states={"running"}, timeout_s=60)
        wait_for(lambda: cluster.ticks("survivor"), "the first tick")
        node = cluster.ticks("survivor")[0][1]
        agent = cluster.agents[node]
        agent.stop()  # SIGTERM: the agent goes, its worker runs on
        agent.join_token = None  # it must come back on its saved credential alone
        agent.start()
        done = c.wait(wid, timeout_s=60)
    assert done.state == "succeeded" and done.attempt == 0
    assert len({pid for _, _, pid, _ in cluster.ticks("survivor")}) == 1  # one process, never twice


@pytest.mark.skipif(os.geteuid() != 0, reason="worker users need root")
def test_an_agent_run_as_root_runs_each_queue_as_its_own_user(cluster: Cluster) -> None:
    agent = cluster.agents["host-a"]
    agent.stop()
    agent.worker_user, agent.join_token = "per-queue", None
    agent.start()
    cluster.server.cli("cordon", "host-b")
    with cluster.server.client() as c:
        wid = c.submit({"name": "who", "queue": "default", "cpu": 0.1, "memory": 64,
                        "command": ["/usr/bin/id", "-un"]}).group_id
        assert c.wait(wid, timeout_s=60).state == "succeeded"
        assert c.logs(wid).data.strip() == "corral-q-default"
