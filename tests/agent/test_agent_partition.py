"""A network partition with a live agent, made on this machine by a proxy the test cuts
(partition.py). The agent runs on and renews its lease, so its runners do not kill the worker;
the server, hearing nothing for `--agent-timeout`, declares the node lost, fences the attempt
and restarts the gang elsewhere (attempt + 1). What must hold:

- healed, the agent kills its fenced copy and never starts that attempt again: the attempt
  fences it, not the node (the node takes work again);
- with `--self-fence-after` under the server's timeout, the agent stops its worker before the
  server restarts it elsewhere: never two copies at once, even across the partition."""

from __future__ import annotations

import time

import pytest

from corral.backends.local_runner import is_alive

from .conftest import Cluster, make_token
from .harness import AgentProc, wait_for
from .partition import Partition
from .test_agent_chaos import _by_attempt, _first_node, _worker_pids

pytestmark = pytest.mark.slow


def _partitioned_agent(cluster: Cluster, extra: list[str]) -> tuple[AgentProc, Partition]:
    link = Partition(cluster.server.url).start()
    agent = AgentProc(link.url, cluster.tmp / "host-p", "host-p", make_token(cluster.server, 1),
                      extra=extra).start()
    wait_for(lambda: "host-p" in cluster.node_health(), "host-p joined")
    return agent, link


def _run_on_host_p(cluster: Cluster, name: str) -> tuple[str, dict[str, object]]:
    for n in ("host-a", "host-b"):  # only host-p takes the first attempt
        cluster.server.cli("cordon", n)
    spec = cluster.ticker(name, ticks=600, every=0.1, gpus=4, restart_backoff=0)
    with cluster.server.client() as c:
        wid = c.submit(spec).group_id
    assert _first_node(cluster, name) == "host-p"
    return wid, spec


def _restart_elsewhere(cluster: Cluster, wid: str) -> None:
    wait_for(lambda: ("NodeCordoned", "host-p") in cluster.node_events(), "host-p lost",
             timeout=60)
    for n in ("host-a", "host-b"):
        cluster.server.cli("uncordon", n)
    with cluster.server.client() as c:
        wait_for(lambda: c.get(wid).attempt >= 1, "the restart elsewhere", timeout=60)


def test_healed_agent_kills_its_fenced_copy_and_never_restarts_it(cluster: Cluster) -> None:
    agent, link = _partitioned_agent(cluster, [])
    try:
        wid, _ = _run_on_host_p(cluster, "split")
        with cluster.server.client() as c:
            wait_for(lambda: c.get(wid).state == "running", "attempt 0 running", timeout=60)
            link.cut()
            _restart_elsewhere(cluster, wid)
            pids = _worker_pids(agent)
            # the documented window: a live agent's worker runs on through the partition
            assert agent.alive() and pids and all(is_alive(p) for p in pids)
            link.heal()
            wait_for(lambda: not any(is_alive(p) for p in pids), "the fenced copy killed",
                     timeout=30)
            killed = time.time()
            wait_for(lambda: cluster.node_health().get("host-p") == "healthy", "host-p back",
                     timeout=30)
            now = wait_for(lambda: (w := c.get(wid)).state == "running" and w, "attempt 1",
                           timeout=60)
            assert now.attempt == 1, now
            runs = _by_attempt(cluster, "split")
            assert {r[1] for r in runs[1]} <= {"host-a", "host-b"}
            # attempt 0 is never started again on host-p: one pid, and no tick after the heal
            assert len({r[2] for r in runs[0]}) == 1
            assert max(r[3] for r in runs[0]) < killed
            c.cancel(wid)
            assert c.wait(wid, timeout_s=60).state == "cancelled"
    finally:
        link.stop()
        agent.stop()
        agent.kill_workers()


def test_self_fencing_agent_stops_before_the_restart_elsewhere(cluster: Cluster) -> None:
    agent, link = _partitioned_agent(cluster, ["--self-fence-after", "2"])  # server: 5 s
    try:
        wid, _ = _run_on_host_p(cluster, "fenced-self")
        with cluster.server.client() as c:
            wait_for(lambda: c.get(wid).state == "running", "attempt 0 running", timeout=60)
            pids = _worker_pids(agent)
            link.cut()
            wait_for(lambda: not any(is_alive(p) for p in pids), "the self-fenced copy ended",
                     timeout=30)
            _restart_elsewhere(cluster, wid)
            link.heal()
            wait_for(lambda: cluster.node_health().get("host-p") == "healthy", "host-p back",
                     timeout=30)
            wait_for(lambda: _by_attempt(cluster, "fenced-self").get(1), "attempt 1 ticks",
                     timeout=60)
            runs = _by_attempt(cluster, "fenced-self")
            assert max(r[3] for r in runs[0]) < min(r[3] for r in runs[1])  # never both at once
            assert len({r[2] for r in runs[0]}) == 1  # and never started again on host-p
            c.cancel(wid)
            assert c.wait(wid, timeout_s=60).state == "cancelled"
    finally:
        link.stop()
        agent.stop()
        agent.kill_workers()
