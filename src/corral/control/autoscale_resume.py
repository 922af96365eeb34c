"""What the pool autoscaler writes to the audit log so that a restart or a new leader resumes
where its predecessor stopped (corral.control.autoscale; the module's docstring tells the why).

    autoscale.replacement / replacement_ended -> the replacement in progress (old, offer, new)
    autoscale.emptied                         -> the consolidation guard (node, moved work)
    autoscale.drain / interrupted / removal_timeout -> nodes drained and still cordoned

Each is read once, before the first decision of a new autoscaler; each write is one audit row.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from types import MappingProxyType
from typing import Any

from sqlalchemy import select

from corral.autoscale.state import AutoscalerState, Replacement
from corral.core.model import ClusterState
from corral.providers.base import CapacityState, Instance
from corral.store import Store, audit
from corral.store.schema import AuditEntry

__all__ = ["ACTOR", "DRAIN_ACTIONS", "EMPTIED", "REPLACEMENT", "REPLACEMENT_ENDED",
           "persist_emptying", "persist_replacement", "record", "resume_draining",
           "resume_emptying", "resume_replacement"]

log = logging.getLogger("corral.control.autoscale")
ACTOR = "autoscaler"
#: audit actions that persist the replacement in progress (read back after a restart)
REPLACEMENT = "autoscale.replacement"
REPLACEMENT_ENDED = "autoscale.replacement_ended"
#: the audit action that persists the consolidation guard (the node being emptied, and until
#: when nothing is rented for the work moved off it), read back after a restart
EMPTIED = "autoscale.emptied"
#: audit actions of drains (each names its node as target and its instance in the detail)
DRAIN_ACTIONS = ("autoscale.drain", "autoscale.interrupted", "autoscale.removal_timeout")


def record(store: Store, now: float, what: str, target: str, detail: dict[str, Any]) -> None:
    with store.write() as conn:
        audit.record(conn, at=now, actor=ACTOR, action=f"autoscale.{what}",
                     target=target[:200], detail=detail)


# -- the replacement in progress ---------------------------------------------------------------
def resume_replacement(store: Store, current: Replacement | None) -> Replacement | None:
    """The replacement a predecessor left in progress: the latest record, unless ended."""
    q = (select(AuditEntry.action, AuditEntry.detail)
         .where(AuditEntry.actor == ACTOR,
                AuditEntry.action.in_((REPLACEMENT, REPLACEMENT_ENDED)))
         .order_by(AuditEntry.id.desc()).limit(1))
    with store.read() as conn:
        row = conn.execute(q).first()
    if row is None or row.action != REPLACEMENT:
        return current
    d = row.detail
    try:
        r = Replacement(str(d["old"]), str(d["offer"]), float(d["since"]),
                        None if d.get("new") is None else str(d["new"]))
    except (KeyError, TypeError, ValueError):
        log.warning("unreadable %s record ignored: %r", REPLACEMENT, d)
        return current
    log.info("resuming the replacement of %s by %s", r.old, r.new)
    return r


def persist_replacement(store: Store, now: float, r: Replacement | None) -> None:
    what, target = ("replacement_ended", "") if r is None else ("replacement", r.old)
    record(store, now, what, target, {} if r is None else {
        "old": r.old, "offer": r.offer, "since": r.since, "new": r.new})


# -- drains -------------------------------------------------------------------------------------
def resume_draining(store: Store, state: ClusterState, instances: list[Instance]
                    ) -> tuple[set[str], list[Instance]]:
    """Nodes a predecessor drained (emptied, replaced, idle, interrupted, past a removal
    deadline) and still cordoned: draining again, so each is returned once idle instead of
    waiting out a fresh idle timeout as a READY node. The drain record must name the
    instance now on that node: a node id reused by a later instance is not taken for it.
    Returns those nodes and the instances with theirs marked DRAINING."""
    cordoned = {n.id for n in state.nodes if n.cordoned}
    on = {i.node_id: i.id for i in instances
          if i.node_id in cordoned and i.state == CapacityState.READY}
    if not on:
        return set(), instances
    q = (select(AuditEntry.target, AuditEntry.detail)
         .where(AuditEntry.actor == ACTOR, AuditEntry.action.in_(DRAIN_ACTIONS),
                AuditEntry.target.in_(sorted(on))))
    with store.read() as conn:
        rows = conn.execute(q).all()
    again = {r.target for r in rows if isinstance(r.detail, dict)
             and r.detail.get("instance") == on[r.target]}
    return again, [replace(i, state=CapacityState.DRAINING) if i.node_id in again else i
                   for i in instances]


# -- the consolidation guard --------------------------------------------------------------------
def resume_emptying(store: Store, state: AutoscalerState) -> AutoscalerState:
    """The node a predecessor was emptying and the work it moved (the latest `emptied`
    record): else a new leader would rent at once for the moved work (consolidate.py's
    flapping) or empty a second node; `settle_emptying` drops what is past or gone."""
    q = (select(AuditEntry.detail).where(AuditEntry.actor == ACTOR,
                                         AuditEntry.action == EMPTIED)
         .order_by(AuditEntry.id.desc()).limit(1))
    with store.read() as conn:
        row = conn.execute(q).first()
    if row is None:
        return state
    d = row.detail
    try:
        emptying = str(d["instance"])
        moved = {str(k): float(v) for k, v in dict(d["until"]).items()}
    except (KeyError, TypeError, ValueError):
        log.warning("unreadable %s record ignored: %r", EMPTIED, d)
        return state
    log.info("resuming the emptying of %s (%d workload(s) guarded)", emptying, len(moved))
    return replace(state, emptying=state.emptying or emptying,
                   emptied=MappingProxyType({**moved, **state.emptied}))


def persist_emptying(store: Store, now: float, state: AutoscalerState) -> None:
    """The node being emptied and every guarded workload's deadline (server clock): the
    latest record is the whole guard, so a resume reads one row."""
    record(store, now, "emptied", state.emptying or "",
           {"instance": state.emptying, "until": dict(state.emptied)})

