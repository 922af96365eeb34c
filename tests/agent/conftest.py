"""A real `corral up --backend agent` and two `corral agent` processes on this machine."""

from __future__ import annotations

import json
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from corral.testing.corral_up import CorralServer

from .harness import AgentProc, wait_for

TIMEOUT_S = 5  # the server's --agent-timeout in these tests; agents' --lease is 4 s

TICKER = textwrap.dedent("""
    import os, signal, sys, time
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    out = os.path.join(sys.argv[1], f"ticks-w{os.environ['CORRAL_WORKER_INDEX']}.txt")
    for i in range(int(sys.argv[2])):
        with open(out, "a") as f:
            f.write(f"{os.environ['CORRAL_ATTEMPT']} {os.environ['CORRAL_NODE_ID']} "
                    f"{os.getpid()} {time.time():.3f}\\n")
        time.sleep(float(sys.argv[3]))
    print("done on", os.environ["CORRAL_NODE_ID"], "master",
          os.environ["CORRAL_MASTER_ADDR"], os.environ["CORRAL_MASTER_PORT"], flush=True)
""")


@dataclass
class Cluster:
    server: CorralServer
    agents: dict[str, AgentProc]
    join_token: str
    tmp: Path

    def ticker(self, name: str, ticks: int, every: float, **fields: object) -> dict[str, object]:
        script = self.tmp / "ticker.py"
        script.write_text(TICKER)
        out = self.tmp / name
        out.mkdir(exist_ok=True)
        return {"name": name, "queue": "default", "cpu": 0.1, "memory": 64,
                "command": [sys.executable, str(script), str(out), str(ticks), str(every)],
                **fields}

    def ticks(self, name: str, worker: int = 0) -> list[tuple[int, str, int, float]]:
        path = self.tmp / name / f"ticks-w{worker}.txt"
        if not path.exists():
            return []
        rows = []
        for line in path.read_text().splitlines():
            parts = line.split()
            if len(parts) == 4:
                rows.append((int(parts[0]), parts[1], int(parts[2]), float(parts[3])))
        return rows

    def node_health(self) -> dict[str, str]:
        with self.server.client() as c:
            return {n.id: n.health for n in c.nodes()}

    def node_events(self) -> list[tuple[str, str]]:
        """(reason, node) of every node event, read from the server's store."""
        from corral.store import Store
        from corral.store import workloads as W
        from corral.store.database import sqlite_url

        store = Store(sqlite_url(self.server.data_dir / "corral.db"))
        try:
            with store.read() as conn:
                return [(e.reason, e.subject) for e in W.list_events(conn) if e.kind == "node"]
        finally:
            store.close()


def make_token(server: CorralServer, uses: int) -> str:
    made = json.loads(server.cli("agent-tokens", "create", "--uses", str(uses), "--json").stdout)
    return str(made["token"])


def _cluster(tmp_path: Path, timeout_s: float, agent_extra: list[str]) -> Iterator[Cluster]:
    server = CorralServer(tmp_path / "cp").start("--backend", "agent", "--agent-timeout",
                                                 str(timeout_s))
    token = make_token(server, 2)
    agents = {n: AgentProc(server.url, tmp_path / n, n, token, extra=agent_extra).start()
              for n in ("host-a", "host-b")}
    c = Cluster(server, agents, token, tmp_path)
    try:
        wait_for(lambda: set(c.node_health()) == {"host-a", "host-b"}, "both agents joined")
        yield c
    finally:
        for a in agents.values():
            a.stop()
            a.kill_workers()
        server.stop()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    yield from _cluster(tmp_path, TIMEOUT_S, [])


@pytest.fixture(scope="module")
def shared_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """One cluster for a module's tests that leave it as they found it (no agent stopped,
    killed, frozen or restarted; no node cordoned): each start of a server and two agents
    with their joins took ~3-4 s of setup and teardown on the 2-core box."""
    yield from _cluster(tmp_path_factory.mktemp("agents"), TIMEOUT_S, [])


@pytest.fixture
def patient_cluster(tmp_path: Path) -> Iterator[Cluster]:
    """The cluster with a 15 s worker lease and a 20 s server timeout, for a test that stops
    and starts an agent on purpose: with the 4 s lease, an agent restart on a loaded box (under
    pytest-xdist: SIGTERM, exit, a new interpreter, its first renewal) outlasted the lease and
    the runner killed its worker (attempt 1 where the test expects 0)."""
    yield from _cluster(tmp_path, 20, ["--lease", "15"])
