"""Autoscaling services on load: one `corral.serving.ServiceScaler` per service whose spec has
`autoscale`, kept in memory in the process that runs the gateway and the loop, fed every tick.

    autoscaled = autoscaled_services(loop.live.records.values(), loop.live.specs)
    loads = {sid: Load(in_flight, running, arrivals, latencies)}     # the gateway's counters
    scaler.step(now, autoscaled, loads)  # -> scaling.scale(..., "autoscaler", (code, reason))

- The decision goes through the same path as `POST /v1/services/{id}/scale` (`scaling.scale`):
  its bounds ([min_replicas, max_replicas]), its refusal during a rollout, its one transaction;
  the change is an event on the service's id whose message is the policy's reason sentence.
- No decision while a service rolls out a new spec (two specs live): the windows still observe,
  so the first decision after it sees the load of the rollout too.
- Scale from zero: a service scaled to zero has no active row, so the loop's memory no longer
  holds it; the scaler keeps it (`idle`) once the store says it was scaled down, not cancelled
  (one read, when it leaves the loop's memory), and the gateway keeps routing its id so that a
  request waits in its queue, counts as in flight, and the next tick scales it up.
- A restart (or a new leader) finds the services already at zero in the store on its first
  tick (`idle_in_store`: one query), so they stay routed and scalable across `corral up`
  restarts. An idle service is read again every `IDLE_RECHECK_S`: one cancelled at zero
  (`scaling.end_idle`) is then dropped, its route removed, and no request brings it back.

Why in memory: a decision needs the last minute of load, which no row holds; a restart starts
the windows empty (a new scaler does not scale down on less than a stable window of data).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from sqlalchemy import select

from corral.control import lifecycle as L
from corral.control.scaling import (
    ScaleRefused,
    ServiceNotFound,
    load_service,
    replica_bounds,
    rolling_out,
    scale,
)
from corral.control.services import DRAINING, replica_state, service_status
from corral.control.snapshot import SpecCache
from corral.serving import Decision, ScalingConfig, ServiceScaler
from corral.spec import WorkloadSpec
from corral.spec.autoscale import scaling_config
from corral.store import Store
from corral.store import workloads as W
from corral.store.schema import WorkloadRow
from corral.store.workloads import WorkloadRecord

__all__ = ["AUTOSCALER", "IDLE_RECHECK_S", "Autoscaled", "Load", "ServiceAutoscaler",
           "autoscaled_services", "idle_in_store"]

log = logging.getLogger("corral.control.service_autoscale")

#: who a change is made by (the replicas' "scaled from 2 to 5 by autoscaler")
AUTOSCALER: Final = "autoscaler"
#: how often a service idle at zero is read again (cancelled meanwhile: dropped)
IDLE_RECHECK_S: Final = 5.0


@dataclass(frozen=True)
class Load:
    """What the gateway counted for one service: now (in flight: queued + running; running: on
    replicas) and since the last tick (arrivals, the latency of each finished request, s)."""

    in_flight: int = 0
    running: int = 0
    arrivals: int = 0
    latencies: tuple[float, ...] = ()


@dataclass(frozen=True)
class Autoscaled:
    """A service with `autoscale`, as the loop's memory shows it this tick."""

    id: str
    name: str
    config: ScalingConfig
    current: int  # ready + starting
    ready: int
    rolling_out: bool = False
    #: the spec the service runs (its endpoint's auth and limits come from it)
    spec: WorkloadSpec | None = None


def autoscaled_services(records: Iterable[WorkloadRecord], specs: SpecCache
                        ) -> dict[str, Autoscaled]:
    """The services among `records` (the loop's active rows) whose spec has `autoscale`."""
    groups: dict[str, list[WorkloadRecord]] = {}
    for rec in records:
        if rec.kind == "service":
            groups.setdefault(rec.group_id, []).append(rec)
    out = {}
    for sid, rows in groups.items():
        spec = specs.spec(max(rows, key=lambda r: r.seq))  # the newest row: what `scale` reads
        if spec.autoscale is None:
            continue
        status = service_status(sid, rows)
        out[sid] = Autoscaled(sid, spec.name, _config(spec), status.desired, status.ready,
                              rolling_out(status), spec)
    return out


def _config(spec: WorkloadSpec) -> ScalingConfig:
    assert spec.autoscale is not None
    lo, hi = replica_bounds(spec)
    return scaling_config(spec.autoscale, lo, hi, spec.target_utilization)


class ServiceAutoscaler:
    """The scalers of every autoscaled service, and the services idle at zero replicas."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.scalers: dict[str, ServiceScaler] = {}
        #: services scaled to zero: out of the loop's memory, still routed and scaled
        self.idle: dict[str, Autoscaled] = {}
        self._scanned = False
        self._rechecked_at = 0.0
        #: (service id, replica id) drained by the last step's decisions: the gateway stops
        #: sending them requests now, before the next loop step sends them SIGTERM
        self.drained: list[tuple[str, str]] = []

    def services(self, active: Mapping[str, Autoscaled], now: float = 0.0
                 ) -> dict[str, Autoscaled]:
        """The services to route and scale this tick: the active ones and those idle at zero.
        A known service that left the loop's memory is kept only if it was scaled to zero; the
        first call also takes those the store holds at zero (a restart)."""
        if now - self._rechecked_at >= IDLE_RECHECK_S:  # cancelled at zero meanwhile?
            self._rechecked_at = now
            self.idle.clear()  # each read again just below
        candidates = set(self.scalers) - set(active) - set(self.idle)
        if not self._scanned:
            self._scanned = True
            candidates |= idle_in_store(self.store) - set(active)
        for sid in candidates:
            kept = self._scaled_to_zero(sid)
            if kept is None:
                self.scalers.pop(sid, None)  # cancelled, or gone: forget its windows
            else:
                self.idle[sid] = kept
        for sid in set(self.idle) & set(active):
            del self.idle[sid]  # scaled up again: the loop's memory holds it
        return {**self.idle, **active}

    def step(self, now: float, services: Mapping[str, Autoscaled],
             loads: Mapping[str, Load]) -> list[tuple[str, Decision]]:
        """Observe each service's load, decide, and apply the changes; returns the decisions
        applied (service id, decision)."""
        applied = []
        self.drained = []
        for sid, svc in services.items():
            scaler = self.scalers.get(sid)
            if scaler is None or scaler.config != svc.config:  # new, or its spec changed
                scaler = self.scalers[sid] = ServiceScaler(svc.config)
            load = loads.get(sid, Load())
            scaler.observe(now, in_flight=load.in_flight, arrivals=load.arrivals,
                           latencies=load.latencies,
                           running=min(load.running, load.in_flight))
            if svc.rolling_out:  # an update decides the replicas until it ends
                continue
            d = scaler.decide(now, current=svc.current, ready=svc.ready)
            if d.desired != svc.current and self._apply(sid, d, now):
                applied.append((sid, d))
        return applied

    def _apply(self, sid: str, d: Decision, now: float) -> bool:
        try:
            after = scale(self.store, sid, d.desired, now, AUTOSCALER, (d.code, d.reason))
            self.drained += [(sid, r.id) for _, r in after.replicas
                             if replica_state(r) == DRAINING]
        except (ScaleRefused, ServiceNotFound) as e:  # a rollout or a cancel began meanwhile
            log.info("autoscaler: %s not scaled to %d: %s", sid, d.desired, e)
            if isinstance(e, ServiceNotFound) or e.field == "service":  # cancelled: forget it
                self.idle.pop(sid, None)
                self.scalers.pop(sid, None)
            return False
        except RuntimeError as e:  # its replicas kept changing: the next tick decides again
            log.warning("autoscaler: %s", e)
            return False
        return True

    def _scaled_to_zero(self, sid: str) -> Autoscaled | None:
        """The service as an idle one (0 replicas) if it has autoscale and is not cancelled."""
        try:
            with self.store.read() as conn:
                status, spec = load_service(conn, sid)
        except ServiceNotFound:
            return None
        if spec.autoscale is None or status.cancelled or status.desired > 0:
            return None
        return Autoscaled(sid, spec.name, _config(spec), 0, 0, spec=spec)


def idle_in_store(store: Store) -> set[str]:
    """Services with no active replica whose replicas include one scaled down: the candidates
    for services idle at zero (`_scaled_to_zero` tells which are: not cancelled, autoscaled).
    One query, run once per process (its first tick)."""
    active = select(WorkloadRow.group_id).where(WorkloadRow.state.in_(W.ACTIVE_STATES))
    q = (select(WorkloadRow.group_id).where(
        WorkloadRow.kind == "service", WorkloadRow.state == "cancelled",
        WorkloadRow.reason_code == L.SCALED_DOWN, WorkloadRow.group_id.not_in(active))
        .distinct())
    with store.read() as conn:
        return {row[0] for row in conn.execute(q)}
