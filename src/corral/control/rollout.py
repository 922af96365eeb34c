"""Rolling updates of a service: a new spec surges new replicas; old ones are drained as new
ones become ready; if the new ones are not all ready in time, the update is rolled back.

    update(store, "chat-1a2b3c4d", new_spec, now, "ann")     # starts it (the API's PUT)
    step(store, live.records.values(), now, deadline_s)       # every loop tick moves it on

A rollout is not a stored object: it is the state of the service's live replicas (ready or
starting, `corral.control.services`) running two specs. The *new* spec is the newest live
replica's; `update` creates as many new replicas as the service desires, so:

    new     live replicas with the new spec            (D of them)
    old     live replicas with any other spec
    keep    D - serving new   old replicas kept serving: never fewer ready replicas than D
                              while the new ones start (Kubernetes' maxUnavailable 0, maxSurge
                              100%); the others are drained, highest index first, reason Replaced
    done    every new replica serving: every old one drained

A new replica counts once it is *serving* (`services.serving`): its readiness probe passed, or,
without one, its port accepted a TCP connection; a process that merely runs does not count.

Rollback: a new replica not ready `deadline_s` after the update (its submission) means the new
spec does not serve (it crashes, or never passes its probe): every new replica is drained,
reason RolledBack, and old-spec replicas are added back up to D, so the service runs its
previous spec at its previous size. The decision (`decide`) is pure; `step` writes it.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final

from corral.control import lifecycle as L
from corral.control.scaling import (
    ScaleRefused,
    add_replicas,
    drain,
    load_service,
    replica_bounds,
    rolling_out,
)
from corral.control.services import READY, STARTING, ServiceStatus, replica_state, serving
from corral.control.snapshot import replica_index
from corral.spec import WorkloadSpec
from corral.store import Store
from corral.store.workloads import WorkloadRecord

__all__ = ["ROLLOUT_DEADLINE_S", "Decision", "decide", "step", "update"]

#: how long the new spec's replicas have to all become ready before the update is rolled back
ROLLOUT_DEADLINE_S: Final = 600.0


@dataclass(frozen=True)
class Decision:
    service: str
    drain: tuple[WorkloadRecord, ...] = ()
    reason: str = L.REPLACED
    message: str = ""
    #: rollback: old-spec replicas to add back, and that spec
    restore: int = 0
    restore_spec: dict[str, Any] = field(default_factory=dict)


def _key(rec: WorkloadRecord) -> str:
    return json.dumps(rec.spec, sort_keys=True)


def decide(records: Iterable[WorkloadRecord], now: float, deadline_s: float) -> list[Decision]:
    """What every service under update should do now (nothing for the others)."""
    by_service: dict[str, list[WorkloadRecord]] = defaultdict(list)
    for rec in records:
        if rec.kind == "service" and replica_state(rec) in (READY, STARTING):
            by_service[rec.group_id].append(rec)
    out = []
    for sid, live in sorted(by_service.items()):
        live.sort(key=replica_index)
        target = _key(live[-1])
        new = [r for r in live if _key(r) == target]
        old = [r for r in live if _key(r) != target]
        if old:
            out.append(_decide_one(sid, new, old, now, deadline_s))
    return [d for d in out if d.drain or d.restore]


def _decide_one(sid: str, new: list[WorkloadRecord], old: list[WorkloadRecord], now: float,
                deadline_s: float) -> Decision:
    ready_new = sum(serving(r) for r in new)
    started = min(r.submitted_at for r in new)
    if ready_new < len(new) and now - started >= deadline_s:
        return Decision(sid, tuple(new), L.ROLLED_BACK,
                        f"rolled back: {ready_new} of {len(new)} replicas of the new spec ready "
                        f"after {deadline_s:g}s; the service runs its previous spec",
                        restore=max(0, len(new) - len(old)), restore_spec=old[-1].spec)
    keep = len(new) - ready_new
    # drain the ones not serving first, then the highest index
    order = sorted(old, key=lambda r: (replica_state(r) == READY, replica_index(r)))
    surplus = order[:max(0, len(old) - keep)]
    message = (f"replaced by the new spec: {ready_new} of {len(new)} new replicas ready"
               if surplus else "")
    return Decision(sid, tuple(surplus), L.REPLACED, message)


def step(store: Store, records: Iterable[WorkloadRecord], now: float,
         deadline_s: float = ROLLOUT_DEADLINE_S) -> int:
    """Carry out `decide`; returns how many replicas were drained or added. A row that moved
    meanwhile is left to the next tick (decided again from fresh rows)."""
    done = 0
    for d in decide(records, now, deadline_s):
        with store.write() as conn:
            done += sum(drain(conn, rec, now, d.message, d.reason) for rec in d.drain)
            if d.restore:
                status, _ = load_service(conn, d.service)
                add_replicas(conn, status, d.restore, now, d.message, spec=d.restore_spec)
                done += d.restore
    return done


def update(store: Store, service_id: str, spec: WorkloadSpec, body: dict[str, Any],
           now: float, by: str) -> ServiceStatus:
    """Start rolling `service_id` out to `spec` (`body`: its stored form): as many new replicas
    as it desires now (within the new spec's bounds). Raises ScaleRefused naming the field."""
    with store.write() as conn:
        status, current = load_service(conn, service_id)
        _check(status, current, spec)
        live = status.live()
        if live and body == live[-1][1].spec:
            raise ScaleRefused("spec", "the spec is the one the service runs; change it to "
                               "update (or `corral scale` to change the replica count)")
        lo, hi = replica_bounds(spec)
        count = min(max(status.desired, lo, 1), hi)
        add_replicas(conn, status, count, now, f"update by {by}: {count} replica(s) of the new "
                     "spec; the old ones are drained as these become ready", spec=body)
        return load_service(conn, service_id)[0]


def _check(status: ServiceStatus, current: WorkloadSpec, spec: WorkloadSpec) -> None:
    if status.cancelled:
        raise ScaleRefused("service", f"service {status.id} was cancelled; submit it again",
                           conflict=True)
    if rolling_out(status):
        raise ScaleRefused("spec", f"service {status.id} is already rolling out a new spec; "
                           "wait until it has finished or rolled back", conflict=True)
    for name in ("kind", "name", "queue"):
        if getattr(spec, name) != getattr(current, name):
            raise ScaleRefused(name, f"an update keeps the service's {name} "
                               f"({getattr(current, name)!s}); submit a new service to change it")
