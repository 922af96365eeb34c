"""Node health: engine liveness and GPU health become cordons, drains and uncordons in the store.

Once per control-loop step (between reconcile and scheduling, see `corral.control.loop`):

    backend.inventory()  ─┐   (Ray node dead, Slurm node DOWN, a node no longer reported)
    GPU verdicts         ─┼─> decide (pure) ─> apply: one short transaction, an event per step
    store's nodes + work ─┘

- **cordon**: a node found DEGRADED or UNHEALTHY gets that health in the store, so the scheduler
  places nothing new there (`Node.schedulable`). corral's health cordon lives in the `health`
  column and leaves the operator's `cordoned` flag alone, so an uncordon by health never undoes
  an operator's cordon. Event ``NodeCordoned`` (kind ``node``) with the reason.
GPU verdicts come from a probe in this process (NVML on `corral up`'s own machine) and from the
hosts themselves (`corral agent` reports its checks with its heartbeat, `gpu_reports.py`). Each
check has a severity (`corral.backends.health`): drain checks make the node UNHEALTHY, warn
checks DEGRADED.

- **drain**: work holding GPUs on an UNHEALTHY node gets a stop request (reason
  ``NodeUnhealthy``) and so leaves with the preemption contract (SIGTERM, the grace, then
  SIGKILL: time to checkpoint); when its workers have ended it restarts as a whole gang, from its
  checkpoint, on schedulable nodes (`corral.control.outcome`). DEGRADED nodes keep their work
  (it still runs) and take no new work. Event ``NodeDrained`` per workload.
- **uncordon**: a node healthy again for `recover_after_s` gets HEALTHY back. ``NodeUncordoned``.
- **device cordon**: a check that names one GPU (ECC, an XID, a failed known-answer test) takes
  only that GPU out (`corral.control.device_cordons`): the node keeps taking work on its other
  GPUs, work on the bad one is drained (if the check drains) with the device in the reason, and
  the GPU comes back once healthy for `recover_after_s`. Events ``DeviceCordoned`` and
  ``DeviceUncordoned``; `corral nodes` shows which GPU and why.
- **join**: a node the backend offers that the store does not know (a replacement Ray node) is
  added, in its provider. ``NodeJoined``.

Workers on a node the engine reports lost are already LOST in the backend's poll (reconcile stops
their gang before this runs); the drain is for nodes that still run but should not (a GPU fell off
the bus, ECC errors): after Kubernetes' node lifecycle controller (taint, then evict) and
KAI-Scheduler's treatment of unhealthy nodes as unschedulable.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from sqlalchemy import Connection, insert, select, update

from corral.backends.base import Backend, InventorySource
from corral.backends.errors import BackendError
from corral.backends.health import GpuHealthProbe, NodeVerdict, node_verdict
from corral.control import device_cordons as DC
from corral.control.gpu_reports import ReportedVerdicts
from corral.core.model import Health, Node
from corral.store import Store
from corral.store import pool as P
from corral.store import workloads as W
from corral.store.changes import next_node_seq
from corral.store.schema import Event, NodeRow, Provider

__all__ = [
    "DEVICE_CORDONED",
    "DEVICE_UNCORDONED",
    "NODE_CORDONED",
    "NODE_DRAINED",
    "NODE_JOINED",
    "NODE_UNCORDONED",
    "NODE_UNHEALTHY",
    "Cordon",
    "DeviceCordon",
    "Drain",
    "HealthMonitor",
    "Join",
    "Observation",
    "Uncordon",
    "decide",
    "decide_devices",
    "device_reasons",
    "health_reasons",
    "probe_verdicts",
]

log = logging.getLogger(__name__)

NODE_CORDONED: Final = "NodeCordoned"
NODE_UNCORDONED: Final = "NodeUncordoned"
NODE_DRAINED: Final = "NodeDrained"
NODE_JOINED: Final = "NodeJoined"
NODE_UNHEALTHY: Final = "NodeUnhealthy"  # the stop reason of drained work
DEVICE_CORDONED: Final = "DeviceCordoned"
DEVICE_UNCORDONED: Final = "DeviceUncordoned"
_RANK: Final = {Health.HEALTHY: 0, Health.DEGRADED: 1, Health.UNHEALTHY: 2}

GpuVerdicts = Callable[[float], Mapping[str, NodeVerdict]]


@dataclass(frozen=True, slots=True)
class Observation:
    """What is known now about one node: its health and why."""

    health: Health
    reason: str


@dataclass(frozen=True, slots=True)
class Cordon:
    node_id: str
    health: Health
    reason: str


@dataclass(frozen=True, slots=True)
class Uncordon:
    node_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class Drain:
    workload_id: str
    attempt: int
    version: int
    node_id: str
    reason: str
    device: int | None = None  # drained for this GPU only (the node is fine)


@dataclass(frozen=True, slots=True)
class Join:
    node: Node


@dataclass(frozen=True, slots=True)
class DeviceCordon:
    """Set the node's cordoned GPUs to `devices` (`device_cordons`); `reasons` by device."""

    node_id: str
    devices: tuple[int, ...]
    reasons: tuple[tuple[int, str], ...] = ()
    previous: tuple[int, ...] = ()


Action = Cordon | Uncordon | Drain | Join | DeviceCordon


@dataclass(frozen=True, slots=True)
class Holding:
    """A live workload attempt that holds GPUs on a node and has no stop request yet."""

    workload_id: str
    attempt: int
    version: int
    node_id: str
    devices: tuple[int, ...] = ()


def observe(inventory: Iterable[Node] | None, verdicts: Mapping[str, NodeVerdict],
            known: Iterable[Node], providers: set[str]) -> dict[str, Observation]:
    """Merge engine liveness and GPU verdicts per node: the worse one wins. Pure.

    A known node of a watched provider that the inventory no longer lists is UNHEALTHY.
    """
    seen: dict[str, Observation] = {}
    if inventory is not None:
        listed = {n.id: n for n in inventory}
        for node in known:
            if node.provider in providers and node.id not in listed:
                seen[node.id] = Observation(Health.UNHEALTHY, "the backend no longer reports it")
        for node in listed.values():
            why = "reported lost by its engine" if node.health == Health.UNHEALTHY else (
                f"the engine reports it {node.health}")
            seen[node.id] = Observation(node.health, why if node.health != Health.HEALTHY
                                        else "alive")
    for node_id, verdict in verdicts.items():
        if not verdict.checked and verdict.health == Health.HEALTHY:
            continue
        current = seen.get(node_id)
        if current is None or _RANK[verdict.health] > _RANK[current.health]:
            seen[node_id] = Observation(verdict.health, f"GPU health: {verdict.reason}")
    return seen


def decide(known: Sequence[Node], observed: Mapping[str, Observation],
           holding: Sequence[Holding], *, healthy_since: Mapping[str, float] | None = None,
           now: float = 0.0, recover_after_s: float = 0.0,
           new_nodes: Sequence[Node] = ()) -> list[Action]:
    """The actions that bring the store in line with what was observed. Pure and idempotent:
    applied, then decided again on the same input, it returns [] (drained work has a stop
    request and so is no longer `holding`).

    healthy_since: when each node was first seen healthy again (for `recover_after_s`).
    Example: n1 known HEALTHY, observed UNHEALTHY ("xid 79"), job j running there ->
    [Cordon(n1, UNHEALTHY, "GPU health: gpu 0: xid 79 ..."), Drain(j, ..., n1, ...)].
    """
    actions: list[Action] = [Join(n) for n in new_nodes]
    for node in known:
        obs = observed.get(node.id)
        if obs is None:
            continue
        if obs.health != Health.HEALTHY and obs.health != node.health:
            actions.append(Cordon(node.id, obs.health, obs.reason))
        elif obs.health == Health.HEALTHY and node.health != Health.HEALTHY:
            since = (healthy_since or {}).get(node.id, now)
            if now - since >= recover_after_s:
                actions.append(Uncordon(node.id, obs.reason))
    sick = {n.id: o.reason for n in known if (o := observed.get(n.id)) is not None
            and o.health == Health.UNHEALTHY}
    drained: set[str] = set()
    for h in sorted(holding, key=lambda h: (h.workload_id, h.node_id)):
        if h.node_id in sick and h.workload_id not in drained:
            drained.add(h.workload_id)
            actions.append(Drain(h.workload_id, h.attempt, h.version, h.node_id, sick[h.node_id]))
    return actions


Sick = Mapping[int, tuple[Health, str]]


def decide_devices(known: Sequence[Node], sick: Mapping[str, Sick], holding: Sequence[Holding],
                   *, healthy_since: Mapping[str, Mapping[int, float]] | None = None,
                   now: float = 0.0, recover_after_s: float = 0.0,
                   drained: Iterable[str] = ()) -> list[Action]:
    """Per-GPU cordons and drains. Pure and idempotent, as `decide`.

    sick: per node with a GPU verdict this step, its sick devices (`split_verdict`); a node
    without a verdict keeps its cordons. drained: workloads `decide` already drains.
    Example: n1 (8 GPUs) sick {3: (UNHEALTHY, "gpu 3: xid 48")}, job j on n1 devices (3,) ->
    [DeviceCordon(n1, (3,), ...), Drain(j, ..., n1, "gpu 3: xid 48", device=3)].
    """
    actions: list[Action] = []
    done = set(drained)
    for node in known:
        if node.id not in sick:
            continue
        bad, current = sick[node.id], DC.cordoned_devices(node)
        want = DC.desired(current, bad, (healthy_since or {}).get(node.id, {}), now,
                          recover_after_s)
        if want != current:
            actions.append(DeviceCordon(node.id, want, tuple((d, r) for d, (_, r) in
                                                             sorted(bad.items())), current))
        for h in sorted(holding, key=lambda h: h.workload_id):
            hit = [d for d in h.devices if h.node_id == node.id and d in bad
                   and bad[d][0] == Health.UNHEALTHY]
            if hit and h.workload_id not in done:
                done.add(h.workload_id)
                actions.append(Drain(h.workload_id, h.attempt, h.version, node.id,
                                     bad[hit[0]][1], device=hit[0]))
    return actions


def probe_verdicts(probes: Mapping[str, GpuHealthProbe],
                   expected: Mapping[str, int | None] | None = None) -> GpuVerdicts:
    """GPU verdicts from one probe per node (node id -> probe; `expected`: GPUs per node)."""
    def verdicts(now: float) -> dict[str, NodeVerdict]:
        out = {}
        for node_id, probe in probes.items():
            want = (expected or {}).get(node_id)
            out[node_id] = node_verdict(probe.check(now), expected_devices=want,
                                        unavailable_reason="" if probe.available
                                        else probe.unavailable_reason)
        return out
    return verdicts


@dataclass
class HealthMonitor:
    """Applies `decide` every `interval_s` of the loop's clock. See the module docstring.

    backend: its `inventory()` gives engine liveness (when it is an InventorySource).
    gpu_verdicts: GPU health per node (`probe_verdicts`), or None; the verdicts agents report
    for their own hosts are read from the store as well (`reported`). `corral up` gives the NVML
    probe of this machine's GPUs when they are the local backend's inventory, and no backend
    (`corral.cli.server`). join_new_nodes: add nodes the
    backend offers that the store does not know. recover_after_s: how long a node must stay
    healthy before it is uncordoned (against flapping).
    """

    store: Store
    backend: Backend | None = None
    gpu_verdicts: GpuVerdicts | None = None
    interval_s: float = 0.0
    recover_after_s: float = 0.0
    join_new_nodes: bool = True
    last_run: float | None = None
    healthy_since: dict[str, float] = field(default_factory=dict)
    #: what hosts reported of their own GPUs (`corral.control.gpu_reports`)
    reported: ReportedVerdicts = field(default_factory=ReportedVerdicts)
    #: per node, when each of its GPUs was first seen healthy again (device cordons)
    device_healthy_since: dict[str, dict[int, float]] = field(default_factory=dict)

    def step(self, now: float) -> list[Action]:
        """Observe and act once (no-op before `interval_s` has passed). Never raises for an
        engine that cannot be reached: that is not a node failure, and the next step retries."""
        if self.last_run is not None and now - self.last_run < self.interval_s:
            return []
        self.last_run = now
        inventory = self._inventory()
        probed = self.gpu_verdicts(now) if self.gpu_verdicts is not None else {}
        with self.store.read() as conn:
            verdicts = {**self.reported.read(conn), **probed}  # this process's probe wins
            known = P.list_nodes(conn)
            every_id = {n.id for n in P.list_nodes(conn, include_inactive=True)}
            holding = _holding(conn)
        providers = {n.provider for n in inventory or ()}
        verdicts, sick = _split(verdicts, known)
        observed = observe(inventory, verdicts, known, providers)
        self._track_recovery(observed, now)
        self._track_devices(sick, known, now)
        # A node the pool file deactivated stays out; only nodes never seen join.
        new = [n for n in inventory or () if n.id not in every_id
               and n.health == Health.HEALTHY] if self.join_new_nodes else []
        actions = decide(known, observed, holding, healthy_since=self.healthy_since, now=now,
                         recover_after_s=self.recover_after_s, new_nodes=new)
        actions += decide_devices(
            known, sick, holding, healthy_since=self.device_healthy_since, now=now,
            recover_after_s=self.recover_after_s,
            drained=[a.workload_id for a in actions if isinstance(a, Drain)])
        if actions:
            with self.store.write() as conn:
                for action in actions:
                    _apply(conn, action, now)
        return actions

    def _inventory(self) -> list[Node] | None:
        if not isinstance(self.backend, InventorySource):
            return None
        try:
            return self.backend.inventory()
        except BackendError as e:
            log.warning("node inventory unavailable: %s", e)
            return None

    def _track_devices(self, sick: Mapping[str, Sick], known: Sequence[Node], now: float
                       ) -> None:
        for node in known:
            if node.id not in sick:
                continue
            since = self.device_healthy_since.setdefault(node.id, {})
            for d in range(node.gpu_count):
                if d in sick[node.id]:
                    since.pop(d, None)
                else:
                    since.setdefault(d, now)

    def _track_recovery(self, observed: Mapping[str, Observation], now: float) -> None:
        for node_id, obs in observed.items():
            if obs.health == Health.HEALTHY:
                self.healthy_since.setdefault(node_id, now)
            else:
                self.healthy_since.pop(node_id, None)


def _split(verdicts: Mapping[str, NodeVerdict], known: Sequence[Node]
           ) -> tuple[dict[str, NodeVerdict], dict[str, Sick]]:
    """Each node's verdict without its device checks, and its sick devices (`split_verdict`)."""
    count = {n.id: n.gpu_count for n in known}
    nodes: dict[str, NodeVerdict] = {}
    sick: dict[str, Sick] = {}
    for node_id, verdict in verdicts.items():
        nodes[node_id], sick[node_id] = DC.split_verdict(verdict, count.get(node_id, 0))
    return nodes, sick


def device_reasons(conn: Connection, nodes: Iterable[Node]) -> dict[str, str]:
    """Why these nodes have GPUs cordoned: the latest DeviceCordoned event of each node whose
    label lists cordoned GPUs, for `corral nodes` (a node with none is left out)."""
    out: dict[str, str] = {}
    for node in nodes:
        if not DC.cordoned_devices(node):
            continue
        row = conn.execute(select(Event.message).where(
            Event.kind == "node", Event.reason == DEVICE_CORDONED, Event.subject == node.id,
        ).order_by(Event.id.desc()).limit(1)).first()
        if row is not None:
            out[node.id] = row.message
    return out


def health_reasons(conn: Connection, node_ids: Sequence[str]) -> dict[str, str]:
    """Why each of these nodes was cordoned: its latest NodeCordoned event's message (the
    failed checks), for `corral nodes`; a node never cordoned by health is left out."""
    out: dict[str, str] = {}
    for node_id in node_ids:
        row = conn.execute(select(Event.message).where(
            Event.kind == "node", Event.reason == NODE_CORDONED, Event.subject == node_id,
        ).order_by(Event.id.desc()).limit(1)).first()
        if row is not None:
            out[node_id] = row.message
    return out


def _holding(conn: Connection) -> list[Holding]:
    live = {r.id: r for r in W.load_active(conn)
            if r.state in W.HOLDING_STATES and r.stop_reason is None}
    return [Holding(h.workload_id, live[h.workload_id].attempt, live[h.workload_id].version,
                    h.node_id, tuple(h.devices))
            for h in W.holding_placements(conn) if h.workload_id in live]


def _apply(conn: Connection, action: Action, now: float) -> None:
    if isinstance(action, Cordon):
        conn.execute(update(NodeRow).where(NodeRow.id == action.node_id)
                     .values(health=str(action.health), change_seq=next_node_seq(conn)))
        W.append_event(conn, at=now, kind="node", reason=NODE_CORDONED, subject=action.node_id,
                       message=f"{action.health}: {action.reason}; no new work is placed here",
                       data={"health": str(action.health)})
    elif isinstance(action, Uncordon):
        conn.execute(update(NodeRow).where(NodeRow.id == action.node_id)
                     .values(health=str(Health.HEALTHY), change_seq=next_node_seq(conn)))
        W.append_event(conn, at=now, kind="node", reason=NODE_UNCORDONED, subject=action.node_id,
                       message=f"healthy again ({action.reason}); it takes new work")
    elif isinstance(action, Drain):
        _drain(conn, action, now)
    elif isinstance(action, DeviceCordon):
        _device_cordon(conn, action, now)
    else:
        _join(conn, action.node, now)


def _device_cordon(conn: Connection, c: DeviceCordon, now: float) -> None:
    row = conn.execute(select(NodeRow.labels).where(NodeRow.id == c.node_id)).first()
    if row is None:
        return
    labels = {k: v for k, v in dict(row.labels or {}).items() if k != DC.LABEL}
    if c.devices:
        labels[DC.LABEL] = DC.encode(c.devices)
    conn.execute(update(NodeRow).where(NodeRow.id == c.node_id)
                 .values(labels=labels, change_seq=next_node_seq(conn)))
    reasons = dict(c.reasons)
    if set(c.devices) - set(c.previous) or (c.devices and reasons):
        listed = " | ".join(reasons.get(d, f"gpu {d}: not yet healthy long enough")
                            for d in c.devices)
        W.append_event(conn, at=now, kind="node", reason=DEVICE_CORDONED, subject=c.node_id,
                       message=f"{listed}; no new work is placed on gpu "
                       f"{DC.encode(c.devices)}, the node's other GPUs keep working",
                       data={"devices": list(c.devices), "reasons": {str(d): r for d, r in
                                                                     reasons.items()}})
    back = sorted(set(c.previous) - set(c.devices))
    if back:
        W.append_event(conn, at=now, kind="node", reason=DEVICE_UNCORDONED, subject=c.node_id,
                       message=f"gpu {DC.encode(back)} healthy again; it takes new work",
                       data={"devices": back})


def _drain(conn: Connection, d: Drain, now: float) -> None:
    where = f"gpu {d.device} of node {d.node_id}" if d.device is not None else f"node {d.node_id}"
    message = (f"{where} is unhealthy ({d.reason}); stopping the gang to restart it "
               "from its checkpoint on healthy nodes")
    if W.update_versioned(conn, d.workload_id, d.version, stop_reason=NODE_UNHEALTHY,
                          stop_message=message):
        W.append_event(conn, at=now, kind="node", reason=NODE_DRAINED, subject=d.node_id,
                       workload_id=d.workload_id, attempt=d.attempt, message=message)


def _join(conn: Connection, node: Node, now: float) -> None:
    if conn.execute(select(Provider.name).where(Provider.name == node.provider)).first() is None:
        conn.execute(insert(Provider).values(name=node.provider, capacity_kind=str(
            node.capacity_kind), region=node.region, spec={"name": node.provider}))
    known = conn.execute(select(NodeRow.id).where(NodeRow.id == node.id)).first()
    values = {"provider": node.provider, "gpu_model": node.gpu_model,
              "gpu_count": node.gpu_count, "gpu_memory_mib": node.gpu_memory_mib,
              "cpu_milli": node.cpu_milli, "memory_mib": node.memory_mib,
              "price_per_gpu_hour": node.price_per_gpu_hour,
              "capacity_kind": str(node.capacity_kind), "region": node.region,
              "zone": node.zone, "rack": node.rack, "nvlink_domain": node.nvlink_domain,
              "health": str(node.health), "labels": dict(node.labels), "active": True,
              "change_seq": next_node_seq(conn)}
    if known is None:
        conn.execute(insert(NodeRow).values(id=node.id, cordoned=node.cordoned, **values))
    else:
        conn.execute(update(NodeRow).where(NodeRow.id == node.id).values(**values))
    W.append_event(conn, at=now, kind="node", reason=NODE_JOINED, subject=node.id,
                   message=f"{node.gpu_count} x {node.gpu_model} offered by {node.provider}")
