"""The spot warning read on the host, end to end: a real `corral up --backend agent`, two real
`corral agent` processes, each polling its own instance metadata service (tests/agent/imds.py,
a local HTTP server implementing EC2's documented `spot/instance-action` with IMDSv2 tokens;
moto does not serve that path). The host the job runs on is told it is taken back: its agent
reports it (`POST /agent/v1/notice`), the control plane cordons the node and stops the job with
the preemption contract (SIGTERM first: the ticker exits 0 on it), and the job restarts on the
other host as attempt 1 with no restart spent (max_restarts 0: a spent restart would fail it)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from corral.testing.corral_up import CorralServer

from .conftest import TIMEOUT_S, Cluster, make_token
from .harness import AgentProc, wait_for
from .imds import Imds

pytestmark = pytest.mark.slow


@pytest.fixture
def spot_cluster(tmp_path: Path) -> Iterator[tuple[Cluster, dict[str, Imds]]]:
    with ExitStack() as stack:
        imds = {n: stack.enter_context(Imds()) for n in ("host-a", "host-b")}
        server = CorralServer(tmp_path / "cp").start("--backend", "agent", "--agent-timeout",
                                                     str(TIMEOUT_S))
        token = make_token(server, 2)
        agents = {n: AgentProc(server.url, tmp_path / n, n, token,
                               extra=["--capacity-kind", "spot",
                                      "--spot-notice-url", imds[n].url]).start()
                  for n in imds}
        c = Cluster(server, agents, token, tmp_path)
        try:
            wait_for(lambda: set(c.node_health()) == {"host-a", "host-b"}, "both agents joined")
            yield c, imds
        finally:
            for a in agents.values():
                a.stop()
                a.kill_workers()
            server.stop()


def test_a_notice_read_on_the_host_moves_the_job_without_spending_a_restart(
        spot_cluster: tuple[Cluster, dict[str, Imds]]) -> None:
    cluster, imds = spot_cluster
    spec = cluster.ticker("spotty", ticks=400, every=0.1, gpus=4, max_restarts=0,
                          preemptible=True)
    with cluster.server.client() as c:
        wid = c.submit(spec).group_id
        wait_for(lambda: len(cluster.ticks("spotty")) >= 3, "the job to run")
        first = cluster.ticks("spotty")[0][1]
        other = "host-b" if first == "host-a" else "host-a"
        imds[first].interrupt(in_s=120)
        wait_for(lambda: any(t[0] == 1 for t in cluster.ticks("spotty")),
                 "attempt 1 to run", timeout=60)
        moved = {t[1] for t in cluster.ticks("spotty") if t[0] == 1}
        w = c.get(wid)
        nodes = {n.id: n for n in c.nodes()}
    assert moved == {other}
    assert (w.attempt, w.restart_count) == (1, 0)
    assert nodes[first].cordoned and not nodes[other].cordoned
    assert ("SpotInterrupted", first) in cluster.node_events()
    audit = cluster.server.cli_json("audit", "--action", "agent.spot_notice", "--json")["items"]  # type: ignore[index]
    assert [(e["target"], e["detail"]["stopped"]) for e in audit] == [(first, [wid])]
    # the other host's metadata was read, never with a notice: nothing was reported from it
    assert any(r[0] == "GET" for r in imds[other].requests)
