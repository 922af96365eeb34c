"""Where a service replica listens, and the routes a gateway sends traffic to.

Every replica is told a port in its environment, `CORRAL_PORT` and `PORT` (the name most HTTP
servers and PaaS conventions read). The port is a function of the replica's row alone, its
`seq` (the store's unique, increasing row number), so the control plane, every API replica and
a gateway compute the same URL without a table of allocations, and a replica keeps its port
across restarts (its clients' connections come back to the same address):

    port = PORT_BASE + seq mod PORT_SPAN          seq 123457 -> 20000 + 123457 % 12768 = 22545

PORT_BASE is 20000, or the server's `CORRAL_REPLICA_PORT_BASE` (1024-52768, read by `port_base`):
replica ports are the same seqs in every store, so two servers on one host (two `corral up`, two
test sessions) would give their replicas the same ports; each server then takes its own base.
Every process that computes URLs (the control loop, the API, `corral gateway` only gets the
URLs from them) must see the same value. Without it, PORT_BASE..PORT_BASE + PORT_SPAN - 1 is
20000-32767, below Linux's ephemeral range (32768+), so
outgoing connections do not take it. Two live replicas share a port only when their seqs differ
by a multiple of 12,768 *and* they run on one host: the loop then replaces the newer one by a
new replica row, which has another seq and so another port, with a PortInUse event naming the
port and the replica that holds it (`corral.control.replicas.replace_port_clashes`, run by the
prober every step). A table of allocations would remove the case, at the price of a write per
launch. A port held by a process outside this server (another server, another tenant's
worker) is found by the readiness prober: the replica is not ready while its own process does
not listen there (`corral.control.port_owners`; local backend only so far).

The host: on the local backend every node is this machine (127.0.0.1); elsewhere the node id,
which is the host name for the agent, Slurm and SSH providers.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from corral.control.live_state import LiveState
from corral.control.services import ENDED, replica_state
from corral.store.workloads import WorkloadRecord

__all__ = ["CORRAL_PORT", "PORT", "PORT_BASE", "PORT_BASE_ENV", "PORT_SPAN", "Route",
           "collisions", "host_of", "live_routes", "port_base", "port_of", "replica_env",
           "routes", "url_of"]

CORRAL_PORT: Final = "CORRAL_PORT"
PORT: Final = "PORT"
PORT_BASE: Final = 20000
PORT_SPAN: Final = 12768
#: this server's base instead of PORT_BASE (two servers on one host)
PORT_BASE_ENV: Final = "CORRAL_REPLICA_PORT_BASE"
_MIN_BASE, _MAX_BASE = 1024, 65535 - PORT_SPAN + 1
#: backends whose nodes are all this machine
LOCAL_BACKENDS: Final = frozenset({"local", "fake"})


def port_base() -> int:
    """PORT_BASE, or `CORRAL_REPLICA_PORT_BASE` when set (read each time: a test sets it)."""
    raw = os.environ.get(PORT_BASE_ENV, "").strip()
    if not raw:
        return PORT_BASE
    try:
        base = int(raw)
    except ValueError:
        base = -1
    if not _MIN_BASE <= base <= _MAX_BASE:
        raise ValueError(f"{PORT_BASE_ENV}={raw!r}: replica ports are base + seq mod {PORT_SPAN}"
                         f"; give an integer {_MIN_BASE}-{_MAX_BASE}, or unset it for "
                         f"{PORT_BASE}")
    return base


def port_of(rec: WorkloadRecord) -> int:
    return port_base() + rec.seq % PORT_SPAN


def replica_env(rec: WorkloadRecord) -> dict[str, str]:
    """What a service replica finds in its environment on top of the contract."""
    port = str(port_of(rec))
    return {CORRAL_PORT: port, PORT: port}


def host_of(node_id: str, backend_name: str) -> str:
    return "127.0.0.1" if backend_name in LOCAL_BACKENDS else node_id


def url_of(rec: WorkloadRecord, node_id: str | None, backend_name: str) -> str | None:
    """http://host:port of a placed replica; None before it has a node."""
    if node_id is None:
        return None
    return f"http://{host_of(node_id, backend_name)}:{port_of(rec)}"


@dataclass(frozen=True)
class Route:
    """One replica as a gateway's route table takes it."""

    service: str
    replica: str
    url: str
    #: ready (send traffic), starting (not yet), draining (finish in-flight, send no new)
    state: str
    #: the service's name in its spec (its id is `service`)
    name: str = ""


def routes(records: Iterable[WorkloadRecord], nodes: Mapping[str, str], backend_name: str
           ) -> list[Route]:
    """Routes of every placed, not-ended service replica among `records`. `nodes`: replica id
    -> the node of its current attempt (replicas without one are left out: nowhere to send)."""
    out = []
    for rec in records:
        if rec.kind != "service" or rec.state not in ("starting", "running"):
            continue
        url = url_of(rec, nodes.get(rec.id), backend_name)
        state = replica_state(rec)
        if url is not None and state != ENDED:
            out.append(Route(rec.group_id, rec.id, url, state, rec.name))
    return sorted(out, key=lambda r: (r.service, r.replica))


def collisions(found: Iterable[Route]) -> list[tuple[str, str]]:
    """Pairs of replicas given the same host and port."""
    seen: dict[str, str] = {}
    out = []
    for r in found:
        if r.url in seen:
            out.append((seen[r.url], r.replica))
        seen.setdefault(r.url, r.replica)
    return out


def live_routes(live: LiveState, backend_name: str) -> list[Route]:
    """The routes of the control loop's state (`ControlLoop.live`), no store read: what feeds a
    gateway's route table every tick."""
    nodes = {wid: a[0].node_id for wid, a in live.assignments.items() if a}
    return routes(live.records.values(), nodes, backend_name)
