"""Load: the store's rows become the core's immutable ClusterState, plus what apply must check.

What the core sees, and why:
- pending rows, except those in restart backoff (they are not eligible yet);
- scheduled, starting and running rows without a stop request, as running on their current
  attempt's assignments (a scheduled workload holds its GPUs although not launched yet);
- rows being stopped are left out: their GPUs are already promised to whatever the plan that
  stopped them placed there, and the launch of that work waits until the GPUs are really free
  (see `corral.control.act`). Showing them would let the next cycle pick them as victims again.

Nominations (`corral.store.nominations`) not expired go in too, for nominees still on their way:
waiting, in backoff, or being stopped (a move's eviction); one whose workload ended, was
cancelled or runs is left out (`with_nominations`).

With a `config` whose `usage_weight` > 0, each queue's time-decayed past use goes in too
(`ClusterState.usage`, see `queue_usage`); without one, or at weight 0, none is read.
"""

from __future__ import annotations

import dataclasses
import json
import operator
from dataclasses import dataclass, field

from sqlalchemy import Connection

from corral.control.device_cordons import device_holds
from corral.control.elastic import RESIZED, extra_unit
from corral.core.config import SchedulerConfig
from corral.core.fairshare import decayed_gpu_seconds, usage_horizon
from corral.core.migration import MIGRATED
from corral.core.model import MILLI_PER_GPU, ClusterState, QueueUsage, Workload, WorkloadState
from corral.core.reasons import RULE_CONSOLIDATE, RULE_PREEMPT, RULE_RECLAIM
from corral.spec import WorkloadSpec
from corral.store import pool as P
from corral.store import queue_use as QU
from corral.store import workloads as W
from corral.store.nominations import load_nominations
from corral.store.workloads import WorkloadRecord

#: the stop reasons of a plan's evictions: a row stopped for one of them comes back to wait
_EVICTION_RULES = frozenset({RULE_PREEMPT, RULE_RECLAIM, RULE_CONSOLIDATE})

__all__ = ["Snapshot", "SpecCache", "UsageCache", "load_snapshot", "queue_usage", "replica_index",
           "with_nominations"]


def replica_index(record: WorkloadRecord) -> int:
    """Which replica of its service a row is (ids are `<group>-r<i>`); 0 for jobs (an array's
    tasks are `<group>-<index>`: each is one job)."""
    if record.id == record.group_id or record.kind != "service":
        return 0
    return int(record.id.rsplit("-r", 1)[1])


class SpecCache:
    """Parsed specs by workload id. Specs never change after submission, and parsing 100,000
    of them with pydantic on every cycle would dominate the cycle.

    Equal stored bodies share one parsed spec (a sweep of a thousand identical jobs is parsed
    once and held once): a restart at 100,000 workloads parses the distinct bodies only."""

    MAX_BODIES = 50_000  # distinct bodies remembered; beyond, the memo starts again

    def __init__(self) -> None:
        self._specs: dict[str, WorkloadSpec] = {}
        self._bodies: dict[str, WorkloadSpec] = {}
        self._units: dict[int, tuple[WorkloadSpec, list[Workload]]] = {}  # by id(spec)
        #: by id(body): records that share one decoded body (`store.workloads.SpecBodies`)
        #: find its spec without encoding it again
        self._shared: dict[int, tuple[dict[str, object], WorkloadSpec]] = {}

    def spec(self, record: WorkloadRecord) -> WorkloadSpec:
        s = self._specs.get(record.id)
        if s is None:
            shared = self._shared.get(id(record.spec))
            if shared is not None and shared[0] is record.spec:
                s = self._specs[record.id] = shared[1]
                return s
            key = json.dumps(record.spec, sort_keys=True, separators=(",", ":"))
            s = self._bodies.get(key)
            if s is None:
                if len(self._bodies) >= self.MAX_BODIES:
                    self._bodies.clear()
                s = self._bodies[key] = WorkloadSpec.from_stored(record.spec)
            if len(self._shared) >= self.MAX_BODIES:
                self._shared.clear()
            self._shared[id(record.spec)] = (record.spec, s)
            self._specs[record.id] = s
        return s

    def unit(self, record: WorkloadRecord) -> Workload:
        """The record's core unit as made from its spec, with a placeholder id, time and user:
        for what the spec decides (sizes, min_runtime), without a copy per record."""
        spec = self.spec(record)
        hit = self._units.get(id(spec))
        if hit is None or hit[0] is not spec:
            if len(self._units) >= self.MAX_BODIES:
                self._units.clear()
            hit = self._units[id(spec)] = (spec, spec.to_core("", 0.0, ""))
        units, i = hit[1], replica_index(record)
        if spec.elastic is not None and record.id != record.group_id:  # an elastic job's extra
            return extra_unit(units[0])
        # a service scaled past the replicas it was submitted with has replicas beyond `units`
        return units[i] if i < len(units) else spec.replica_unit(units[0], i)

    def core(self, record: WorkloadRecord, **running: object) -> Workload:
        """The record as a pending core workload (no assignments), or with the `running`
        fields given (state, started_at, assignments: one copy, not two). A spec's core units
        are made once (with a placeholder id, time and user) and copied with the record's."""
        unit = self.unit(record)
        # a service's replicas spread as one group: the service's id (the units' is a placeholder)
        group = record.group_id if unit.spread_group is not None else None
        return _copy(unit, id=record.id, submitted_at=record.submitted_at, user=record.user,
                     spread_group=group, **running)

    def forget(self, workload_id: str) -> None:
        self._specs.pop(workload_id, None)

    def retain(self, workload_ids: set[str]) -> None:
        """Drop the specs of workloads that are no longer active."""
        for wid in set(self._specs) - workload_ids:
            del self._specs[wid]


_FIELDS = tuple(f.name for f in dataclasses.fields(Workload))
_VALUES = operator.attrgetter(*_FIELDS)
_INDEX = {name: i for i, name in enumerate(_FIELDS)}


def _copy(unit: Workload, **changes: object) -> Workload:
    """`dataclasses.replace(unit, **changes)` at half its cost (a restart makes 100,000 of
    these): the fields read in one C call, no per-field checks (Workload has no init=False
    field and no __post_init__)."""
    values = list(_VALUES(unit))
    for name, value in changes.items():
        values[_INDEX[name]] = value
    return Workload(*values)


@dataclass(frozen=True)
class Snapshot:
    state: ClusterState
    records: dict[str, WorkloadRecord]  # every active row, by id (apply re-checks versions)
    backoff: set[str] = field(default_factory=set)  # pending rows not yet eligible


class UsageCache:
    """Each queue's decayed use (`queue_usage`), read from the store at most every `refresh_s`.

    The read sums every recent attempt (seconds per cycle on a store with hundreds of thousands
    of them); decayed use moves slowly, so a minute-old value serves: over 60 s a one-week
    half-life decays a value by under 0.01%, and at most 60 s of new use is not yet counted."""

    def __init__(self, refresh_s: float = 60.0) -> None:
        self.refresh_s = refresh_s
        self._read: tuple[float, float, tuple[QueueUsage, ...]] | None = None  # at, half-life

    def get(self, conn: Connection, now: float, half_life_s: float) -> tuple[QueueUsage, ...]:
        last = self._read
        if (last is None or last[1] != half_life_s or not 0 <= now - last[0] < self.refresh_s):
            last = self._read = (now, half_life_s, queue_usage(conn, now, half_life_s))
        return last[2]


def load_snapshot(
    conn: Connection, now: float, specs: SpecCache, config: SchedulerConfig | None = None,
    usage: UsageCache | None = None,
) -> Snapshot:
    """The state the core decides on at `now`. Pass the scheduler's `config` so that its
    time-decayed fair share (`usage_weight` > 0) sees each queue's past use (through `usage`
    where given, which the control loop keeps between cycles)."""
    nodes = tuple(P.list_nodes(conn))
    queues = tuple(P.list_queues(conn))
    records = {r.id: r for r in W.load_active(conn)}
    specs.retain(set(records))
    holding = [r for r in records.values() if r.state != "pending" and r.stop_reason is None]
    placed = W.assignments_of(conn, [(r.id, r.attempt) for r in holding])
    workloads: list[Workload] = []
    backoff: set[str] = set()
    for r in records.values():
        if r.state == "pending":
            if r.not_before > now:
                backoff.add(r.id)
            else:
                workloads.append(specs.core(r))
        elif r.stop_reason is None:
            workloads.append(dataclasses.replace(
                specs.core(r), state=WorkloadState.RUNNING,
                started_at=r.started_at if r.started_at is not None else now,
                assignments=placed[(r.id, r.attempt)]))
    past: tuple[QueueUsage, ...] = ()
    if config is not None and config.usage_weight > 0:
        half_life = config.usage_half_life_s
        past = (usage.get(conn, now, half_life) if usage is not None
                else queue_usage(conn, now, half_life))
    state = ClusterState(nodes=nodes, queues=queues, workloads=tuple(workloads), usage=past)
    snap = Snapshot(state, records, backoff)
    return with_nominations(conn, snap, now)


def with_nominations(conn: Connection, snap: Snapshot, now: float) -> Snapshot:
    """`snap` with the stored nominations not expired at `now` whose nominee is still on its
    way to the room: an active row that waits, or that a plan's eviction or a migration
    (`corral.control.migration`) is stopping (not one that holds GPUs, nor one being
    cancelled). GPUs the health monitor cordoned are held the
    same way, for stand-ins that never arrive (`corral.control.device_cordons`)."""
    kept = tuple(n for n in load_nominations(conn, now)
                 if (r := snap.records.get(n.workload_id)) is not None
                 and (r.state == "pending" or r.stop_reason in _EVICTION_RULES
                      or r.stop_reason in (MIGRATED, RESIZED)))
    kept += device_holds(snap.state.nodes, snap.state.workloads)
    if not kept and not snap.state.nominations:
        return snap
    return dataclasses.replace(snap, state=dataclasses.replace(snap.state, nominations=kept))


def queue_usage(conn: Connection, now: float, half_life_s: float) -> tuple[QueueUsage, ...]:
    """Each queue's decayed GPU-seconds at `now`: `fairshare.decayed_gpu_seconds` of every
    attempt's span (from the ledger's metering rows: launch to end, or to `now` while running),
    summed per queue, in name order; queues with none are left out.

    Cut-off: attempts that ended more than `fairshare.USAGE_HORIZON_HALF_LIVES` (10) half-lives
    before `now` are not read: together they weigh at most 2^-10 (< 0.1%) of what holding as
    many GPUs for ever weighs, so the rows returned and summed here grow with recent history,
    not with all time (the database still scans the table's rows: see `gpu_spans`).
    Usage exists where the loop runs with `corral.control.accounting` (as `corral up` does);
    without it no attempt is metered and every queue's past use reads as none."""
    used: dict[str, float] = {}
    for span in QU.gpu_spans(conn, ended_since=usage_horizon(now, half_life_s)):
        used[span.queue] = used.get(span.queue, 0.0) + decayed_gpu_seconds(
            span.milli / MILLI_PER_GPU, span.start, span.end, now, half_life_s)
    return tuple(QueueUsage(q, v) for q, v in sorted(used.items()) if v > 0)
