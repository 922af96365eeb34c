"""The pool in the store: providers, nodes and queues, read back as core model values."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, delete, func, insert, select, update

from corral.core.model import CapacityKind, Health, Node, Queue
from corral.store.changes import next_node_seq
from corral.store.schema import NodeRow, Provider, QueueRow

__all__ = [
    "NodeGroup",
    "delete_queue",
    "get_queue",
    "list_nodes",
    "list_queues",
    "node_groups",
    "node_state",
    "nodes_changed_since",
    "nodes_version",
    "page_nodes",
    "set_cordoned",
    "sync_nodes",
    "upsert_queue",
]


def sync_nodes(conn: Connection, providers: Sequence[dict[str, Any]], nodes: Sequence[Node]) -> None:
    """Make the declared pool current: add or update these nodes, deactivate the others.

    What an operator did at run time survives a restart with the same pool file: a cordon
    stays, because the file does not say anything about cordons.
    """
    for p in providers:
        old = conn.execute(select(Provider.spec).where(Provider.name == p["name"])).first()
        # merged, not replaced: a node's bare provider ({name, capacity_kind}) must not erase
        # the declaration of a provider added at run time (corral.control.pool_providers)
        spec = {**(old.spec or {}), **p} if old is not None else p
        values = {"capacity_kind": spec.get("capacity_kind", "on-demand"),
                  "region": spec.get("region", "default"), "spec": spec}
        if old is not None:
            conn.execute(update(Provider).where(Provider.name == p["name"]).values(**values))
        else:
            conn.execute(insert(Provider).values(name=p["name"], **values))
    stamp = next_node_seq(conn)
    known = {r.id for r in conn.execute(select(NodeRow.id))}
    for n in nodes:
        values = {**_node_values(n), "change_seq": stamp}
        if n.id in known:
            conn.execute(update(NodeRow).where(NodeRow.id == n.id).values(**values, active=True))
        else:
            conn.execute(insert(NodeRow).values(id=n.id, cordoned=n.cordoned, active=True, **values))
    gone = known - {n.id for n in nodes}
    if gone:
        conn.execute(update(NodeRow).where(NodeRow.id.in_(gone))
                     .values(active=False, change_seq=stamp))


def _node_values(n: Node) -> dict[str, Any]:
    return {
        "provider": n.provider, "gpu_model": n.gpu_model, "gpu_count": n.gpu_count,
        "gpu_memory_mib": n.gpu_memory_mib, "cpu_milli": n.cpu_milli, "memory_mib": n.memory_mib,
        "price_per_gpu_hour": n.price_per_gpu_hour, "capacity_kind": str(n.capacity_kind),
        "region": n.region, "zone": n.zone, "rack": n.rack, "nvlink_domain": n.nvlink_domain,
        "health": str(n.health), "labels": dict(n.labels),
    }


def list_nodes(conn: Connection, *, include_inactive: bool = False) -> list[Node]:
    q = select(NodeRow).order_by(NodeRow.id)
    if not include_inactive:
        q = q.where(NodeRow.active.is_(True))
    return [_node(r) for r in conn.execute(q)]


def _state_filter(state: str) -> Any:
    """SQL for a node state: unhealthy (health not ok), cordoned (healthy but cordoned),
    schedulable (neither)."""
    if state == "unhealthy":
        return NodeRow.health != str(Health.HEALTHY)
    if state == "cordoned":
        return (NodeRow.health == str(Health.HEALTHY)) & NodeRow.cordoned.is_(True)
    return (NodeRow.health == str(Health.HEALTHY)) & NodeRow.cordoned.is_(False)


def page_nodes(conn: Connection, *, after: str | None = None, limit: int | None = None,
               provider: str | None = None, gpu_model: str | None = None,
               state: str | None = None) -> list[Node]:
    """Active nodes in id order after `after`, filtered, at most `limit`."""
    q = select(NodeRow).where(NodeRow.active.is_(True)).order_by(NodeRow.id)
    if after is not None:
        q = q.where(NodeRow.id > after)
    if provider is not None:
        q = q.where(NodeRow.provider == provider)
    if gpu_model is not None:
        q = q.where(NodeRow.gpu_model == gpu_model)
    if state is not None:
        q = q.where(_state_filter(state))
    if limit is not None:
        q = q.limit(limit)
    return [_node(r) for r in conn.execute(q)]


@dataclass(frozen=True, slots=True)
class NodeGroup:
    provider: str
    gpu_model: str
    state: str  # schedulable | cordoned | unhealthy
    nodes: int
    gpus: int


def node_groups(conn: Connection) -> list[NodeGroup]:
    """Active nodes counted per (provider, GPU model, state), in that order (GROUP BY)."""
    out = []
    for state in ("schedulable", "cordoned", "unhealthy"):
        q = (select(NodeRow.provider, NodeRow.gpu_model, func.count(), func.sum(NodeRow.gpu_count))
             .where(NodeRow.active.is_(True), _state_filter(state))
             .group_by(NodeRow.provider, NodeRow.gpu_model))
        out += [NodeGroup(p, m, state, int(n), int(g or 0)) for p, m, n, g in conn.execute(q)]
    return sorted(out, key=lambda g: (g.provider, g.gpu_model, g.state))


def node_state(node: Node) -> str:
    """The state `page_nodes` and `node_groups` file a node under."""
    if node.health != Health.HEALTHY:
        return "unhealthy"
    return "cordoned" if node.cordoned else "schedulable"


def _node(r: Any) -> Node:
    return Node(id=r.id, provider=r.provider, gpu_model=r.gpu_model, gpu_count=r.gpu_count,
                gpu_memory_mib=r.gpu_memory_mib, cpu_milli=r.cpu_milli, memory_mib=r.memory_mib,
                price_per_gpu_hour=r.price_per_gpu_hour,
                capacity_kind=CapacityKind(r.capacity_kind), region=r.region, zone=r.zone,
                rack=r.rack, nvlink_domain=r.nvlink_domain, cordoned=r.cordoned,
                health=Health(r.health), labels=tuple(sorted(r.labels.items())))


def nodes_version(conn: Connection) -> int:
    """The largest change number of any node: it moves whenever a node is written."""
    return int(conn.execute(select(func.coalesce(func.max(NodeRow.change_seq), 0))).scalar_one())


def nodes_changed_since(conn: Connection, after: int) -> tuple[list[tuple[Node, bool]], int]:
    """Nodes written after change number `after` (`corral.store.changes`), each with whether it
    is active, and the largest change number read (`after` when none)."""
    q = select(NodeRow).where(NodeRow.change_seq > after).order_by(NodeRow.change_seq)
    out, last = [], after
    for r in conn.execute(q):
        out.append((_node(r), bool(r.active)))
        last = max(last, int(r.change_seq))
    return out, last


def set_cordoned(conn: Connection, node_id: str, cordoned: bool) -> bool:
    """False when no active node has this id."""
    result = conn.execute(update(NodeRow).where(NodeRow.id == node_id, NodeRow.active.is_(True))
                          .values(cordoned=cordoned, change_seq=next_node_seq(conn)))
    return result.rowcount == 1


def _queue(r: Any) -> Queue:
    return Queue(r.name, r.parent, r.quota_gpus, r.limit_gpus, r.weight, r.priority,
                 tuple(sorted(r.quota_by_model.items())))


def list_queues(conn: Connection) -> list[Queue]:
    return [_queue(r) for r in conn.execute(select(QueueRow).order_by(QueueRow.name))]


def get_queue(conn: Connection, name: str) -> Queue | None:
    r = conn.execute(select(QueueRow).where(QueueRow.name == name)).first()
    return _queue(r) if r is not None else None


def upsert_queue(conn: Connection, q: Queue) -> bool:
    """Create or replace a queue; True when it was created."""
    values = {"parent": q.parent, "quota_gpus": q.quota_gpus, "limit_gpus": q.limit_gpus,
              "weight": q.weight, "priority": q.priority, "quota_by_model": dict(q.quota_by_model)}
    if conn.execute(update(QueueRow).where(QueueRow.name == q.name).values(**values)).rowcount:
        return False
    conn.execute(insert(QueueRow).values(name=q.name, **values))
    return True


def delete_queue(conn: Connection, name: str) -> bool:
    return conn.execute(delete(QueueRow).where(QueueRow.name == name)).rowcount == 1
