"""Chaos against real agents: a host dies, an agent freezes past the heartbeat timeout, the
control plane is killed under running work. Nothing is lost, nothing runs twice."""

from __future__ import annotations

import signal
import time

import pytest

from corral.backends.local_runner import ProcessIdentity, is_alive, read_identity

from .conftest import TIMEOUT_S, Cluster
from .harness import AgentProc, wait_for

pytestmark = pytest.mark.slow


def _other(node: str) -> str:
    return "host-b" if node == "host-a" else "host-a"


def _first_node(cluster: Cluster, name: str) -> str:
    wait_for(lambda: cluster.ticks(name), f"{name}'s first tick")
    return cluster.ticks(name)[0][1]


def _by_attempt(cluster: Cluster, name: str) -> dict[int, list[tuple[int, str, int, float]]]:
    out: dict[int, list[tuple[int, str, int, float]]] = {}
    for row in cluster.ticks(name):
        out.setdefault(row[0], []).append(row)
    return out


def test_a_dead_host_is_lost_and_its_gang_restarts_on_the_other(cluster: Cluster) -> None:
    spec = cluster.ticker("victim", ticks=60, every=0.1, gpus=4, restart_backoff=0)
    with cluster.server.client() as c:
        wid = c.submit(spec).group_id
        node = _first_node(cluster, "victim")
        cluster.agents[node].kill_host()
        done = c.wait(wid, timeout_s=90)
    assert done.state == "succeeded" and done.attempt == 1, done
    runs = _by_attempt(cluster, "victim")
    assert {r[1] for r in runs[1]} == {_other(node)}  # restarted elsewhere
    assert max(r[3] for r in runs[0]) < min(r[3] for r in runs[1])  # never both at once
    assert ("NodeCordoned", node) in cluster.node_events()


def test_a_frozen_agent_is_fenced_and_its_work_never_runs_twice(cluster: Cluster) -> None:
    """SIGSTOP past the timeout: the runner's lease (4 s) kills the worker before the server
    (5 s) restarts it elsewhere; on SIGCONT the agent finds its attempt fenced and stays out."""
    spec = cluster.ticker("frozen", ticks=60, every=0.1, gpus=4, restart_backoff=0)
    with cluster.server.client() as c:
        wid = c.submit(spec).group_id
        node = _first_node(cluster, "frozen")
        agent = cluster.agents[node]
        agent.signal(signal.SIGSTOP)
        try:
            wait_for(lambda: c.get(wid).attempt >= 1, "the restart elsewhere", timeout=60)
        finally:
            agent.signal(signal.SIGCONT)
        resumed = time.time()
        done = c.wait(wid, timeout_s=90)
        wait_for(lambda: cluster.node_health().get(node) == "healthy", "the node back",
                 timeout=30)
    assert done.state == "succeeded" and done.attempt == 1, done
    runs = _by_attempt(cluster, "frozen")
    assert max(r[3] for r in runs[0]) < min(r[3] for r in runs[1])  # never both at once
    assert max(r[3] for r in runs[0]) < resumed  # the thawed agent did not start it again
    assert {r[1] for r in runs[1]} == {_other(node)}
    assert ("NodeUncordoned", node) in cluster.node_events()


def test_a_thawed_agent_kills_the_workers_the_server_fenced(cluster: Cluster) -> None:
    """With a lease longer than the timeout the worker outlives the freeze; the agent kills it
    as soon as it is back (the overlap in between is the price of such a lease: README)."""
    node = "host-c"
    late = AgentProc(cluster.server.url, cluster.tmp / node, node,
                     _token(cluster), extra=["--lease", "120"]).start()
    try:
        wait_for(lambda: node in cluster.node_health(), "host-c joined")
        for n in ("host-a", "host-b"):  # only host-c takes the first attempt
            cluster.server.cli("cordon", n)
        spec = cluster.ticker("fenced", ticks=600, every=0.1, gpus=4, restart_backoff=0)
        with cluster.server.client() as c:
            wid = c.submit(spec).group_id
            assert _first_node(cluster, "fenced") == node
            # frozen before its launch, the agent would have no worker for the server to fence
            wait_for(lambda: c.get(wid).state == "running", "attempt 0 running", timeout=60)
            late.signal(signal.SIGSTOP)
            wait_for(lambda: ("NodeCordoned", node) in cluster.node_events(), "host-c lost",
                     timeout=60)
            for n in ("host-a", "host-b"):
                cluster.server.cli("uncordon", n)
            wait_for(lambda: c.get(wid).attempt >= 1, "the restart elsewhere", timeout=60)
            pids = _worker_pids(late)
            assert pids and all(is_alive(p) for p in pids)  # still running, frozen agent or not
            late.signal(signal.SIGCONT)
            wait_for(lambda: not any(is_alive(p) for p in pids), "the fenced worker killed",
                     timeout=30)
            # the killed copy's end changed nothing: attempt 1 runs on (once it has started)
            now = wait_for(lambda: (w := c.get(wid)).state != "starting" and w, "attempt 1",
                           timeout=60)
            assert now.state == "running" and now.attempt == 1, now
            c.cancel(wid)
            assert c.wait(wid, timeout_s=60).state == "cancelled"
    finally:
        late.stop()
        late.kill_workers()


def test_work_keeps_running_through_a_control_plane_restart(cluster: Cluster) -> None:
    spec = cluster.ticker("steady", ticks=40, every=0.25, workers=2, gpus=4)
    with cluster.server.client() as c:
        wid = c.submit(spec).group_id
        c.wait(wid, states={"running"}, timeout_s=60)
    cluster.server.kill9()
    before = len(cluster.ticks("steady"))
    # the workers go on without a server: a new tick, waited for (a fixed 3 s window assumed
    # a tick every 0.25 s gets CPU in time under load)
    wait_for(lambda: len(cluster.ticks("steady")) > before, "a tick without a server")
    cluster.server.start("--backend", "agent", "--agent-timeout", str(TIMEOUT_S))
    with cluster.server.client() as c:
        done = c.wait(wid, timeout_s=90)
    assert done.state == "succeeded" and done.attempt == 0, done
    for w in (0, 1):
        assert len({pid for _, _, pid, _ in cluster.ticks("steady", w)}) == 1
        assert len(cluster.ticks("steady", w)) == 40


def _token(cluster: Cluster) -> str:
    from .conftest import make_token

    return make_token(cluster.server, 1)


def _worker_pids(agent: AgentProc) -> list[ProcessIdentity]:
    """The identities of the worker processes this agent started (pid and start time)."""
    found = []
    for record in (agent.data_dir / "state" / "work").glob("*/*/worker-*/child.json"):
        who = read_identity(record)
        if who is not None:
            found.append(who)
    return found
