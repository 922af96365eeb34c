"""/v1/dashboard/providers: the Providers page's data (issue 11): each provider, the instances
corral rented from it with their lifecycle state and price, and the money spent per provider.

Where it comes from (read from the store, so any API process answers the same):

- providers: the pool's nodes grouped by provider (nodes, GPUs), and the renting ones as
  declared (`corral.control.pool_providers`: kind, origin, lifecycle);
- instances: folded from the autoscaler's audit records, which it writes for every act
  (`autoscale.launch` names the instances and the offer with its price, `autoscale.drain`,
  `autoscale.interrupted`, `autoscale.terminate`), and the agents' table (an instance whose
  agent registered is `ready`, named by its node). States: provisioning -> ready -> draining ->
  terminated (a spot notice: `interrupted`, then terminated);
- money: an instance costs its offer's price per hour from its launch to its termination (or
  now), as the providers bill it and as the simulator counts it (`corral.sim.autoscaled`).
  It is what corral rented, not what work used: idle rented time is money spent too.

Visible to every signed-in user: no queue or workload is named here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field
from sqlalchemy import func, select

from corral.api.context import Caller
from corral.control import pool_providers as PP
from corral.core.model import Node
from corral.store import audit
from corral.store.schema import AuditEntry
from corral.web.routes import _ERRORS, Web

__all__ = ["InstanceRow", "ProviderRow", "ProvidersView", "fold_instances", "router"]

router = APIRouter(prefix="/v1/dashboard", tags=["dashboard"])
#: the newest autoscaler records read per refresh (an instance older than these is not shown)
RECORDS = 5000


class InstanceRow(BaseModel):
    id: str
    provider: str
    instance_type: str
    zone: str
    capacity_kind: str
    price_per_hour: float
    state: str = Field(description="provisioning, ready, draining, interrupted or terminated")
    launched_at: float
    ended_at: float | None = None
    node_id: str | None = None
    spent: float = Field(description="price per hour x hours from launch to end (or now)")
    reason: str = Field(default="", description="the autoscaler's sentence for its last act on it")


class ProviderRow(BaseModel):
    name: str
    kind: str = Field(description="static, ssh, aws, or the nodes' provider when undeclared")
    lifecycle: str = Field(default="active", description="active, retiring or removed")
    origin: str = ""
    nodes: int = 0
    gpus: int = 0
    live_instances: int = 0
    spend_per_hour: float = Field(default=0.0, description="the price of its live instances, per hour")
    spent: float = Field(default=0.0, description="rented so far (the instances shown)")


class ProvidersView(BaseModel):
    at: float
    providers: list[ProviderRow]
    instances: list[InstanceRow]
    spent: float
    spend_per_hour: float


@dataclass
class _Instance:
    id: str
    offer: Mapping[str, Any]
    launched_at: float
    state: str = "provisioning"
    ended_at: float | None = None
    node_id: str | None = None
    reasons: list[str] = field(default_factory=list)


def fold_instances(records: Iterable[audit.AuditRecord], joined: Mapping[str, str],
                   now: float) -> list[InstanceRow]:
    """The instances the autoscaler's records name, oldest launch first. Pure."""
    seen: dict[str, _Instance] = {}
    by_node: dict[str, str] = {}
    for r in sorted(records, key=lambda r: r.id):
        what = r.action.removeprefix("autoscale.")
        d = r.detail or {}
        if what == "launch":
            for iid in filter(None, r.target.split(",")):
                seen[iid] = _Instance(iid, d.get("offer") or {}, r.at,
                                      reasons=[str(d.get("reason", ""))])
            continue
        iid = str(d.get("instance") or (r.target if what == "terminate" else ""))
        if not iid and r.target in by_node:  # a host's notice names its node
            iid = by_node[r.target]
        i = seen.get(iid)
        if i is None:
            continue
        if what == "drain" and i.state != "terminated":
            i.state, i.node_id = "draining", r.target
        elif what in ("interrupted", "agent.spot_notice") and i.state != "terminated":
            i.state, i.node_id = "interrupted", r.target
        elif what == "terminate":
            i.state, i.ended_at = "terminated", r.at
        if i.node_id:
            by_node[i.node_id] = i.id
        i.reasons.append(str(d.get("reason", "")))
    out = []
    for i in sorted(seen.values(), key=lambda i: (i.launched_at, i.id)):
        node = i.node_id or joined.get(i.id)
        state = "ready" if i.state == "provisioning" and i.id in joined else i.state
        price = float(i.offer.get("price_per_hour") or 0.0)
        end = i.ended_at if i.ended_at is not None else now
        out.append(InstanceRow(
            id=i.id, provider=str(i.offer.get("provider", "")),
            instance_type=str(i.offer.get("instance_type", "")), zone=str(i.offer.get("zone", "")),
            capacity_kind=str(i.offer.get("capacity_kind", "")), price_per_hour=price,
            state=state, launched_at=i.launched_at, ended_at=i.ended_at, node_id=node,
            spent=round(price * max(end - i.launched_at, 0.0) / 3600.0, 4),
            reason=next((x for x in reversed(i.reasons) if x), "")))
    return out


def provider_rows(nodes: Sequence[Node], declared: Sequence[PP.Declared],
                  instances: Sequence[InstanceRow]) -> list[ProviderRow]:
    """One row per provider that has nodes, is declared, or rented an instance. Pure."""
    rows: dict[str, ProviderRow] = {}
    for d in declared:
        rows[d.spec.name] = ProviderRow(name=d.spec.name, kind=d.spec.kind,
                                        lifecycle=d.lifecycle, origin=d.origin)
    for n in nodes:
        row = rows.setdefault(n.provider, ProviderRow(name=n.provider, kind="static"))
        row.nodes += 1
        row.gpus += n.gpu_count
    for i in instances:
        row = rows.setdefault(i.provider, ProviderRow(name=i.provider, kind="renting"))
        row.spent = round(row.spent + i.spent, 4)
        if i.state != "terminated":
            row.live_instances += 1
            row.spend_per_hour = round(row.spend_per_hour + i.price_per_hour, 4)
    return sorted(rows.values(), key=lambda r: (-r.spent, r.name))


@router.get("/providers", response_model=ProvidersView, responses=_ERRORS)
def providers(web: Web, who: Caller) -> ProvidersView:
    """Providers, the instances corral rented with their state and price, money per provider."""
    from corral.store.agents import AgentNodeRow

    now = web.ctx.clock.now()
    nodes = web.reader.read().nodes
    with web.ctx.store.read() as conn:
        records = audit.list_audit(conn, actor="autoscaler", limit=RECORDS, after_id=_from(conn))
        records += audit.list_audit(conn, action="agent.spot_notice", limit=RECORDS)
        joined = {r.instance_id: r.node_id for r in conn.execute(
            select(AgentNodeRow.instance_id, AgentNodeRow.node_id)
            .where(AgentNodeRow.instance_id != ""))}
        declared = PP.declared_providers(conn, include_removed=True)
    instances = fold_instances(records, joined, now)
    rows = provider_rows(nodes, declared, instances)
    return ProvidersView(at=now, providers=rows, instances=instances,
                         spent=round(sum(r.spent for r in rows), 4),
                         spend_per_hour=round(sum(r.spend_per_hour for r in rows), 4))


def _from(conn: Any) -> int:
    """The audit id to read after: about the newest `RECORDS` entries of every actor x 4."""
    last = conn.execute(select(func.max(AuditEntry.id))).scalar() or 0
    return max(0, int(last) - RECORDS * 4)
