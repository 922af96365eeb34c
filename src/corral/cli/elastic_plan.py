"""Elastic jobs in `corral plan` (the what-if): their units, and their world after the cycle.

An elastic job is planned as the control plane stores it (`corral.control.elastic`, through its
own `unit_ids` and `extra_unit`, as its dry run does): the core gang `NAME` of min_workers at the
job's priority, and one-worker extras `NAME-e1`.. below every job, so the core places extras
only where they fit after everything else and takes them first. Never one gang of min or max.

With `running:`, `placed_on` lists the world's workers: the core gang's min_workers first, then
one entry per running extra, in order. Pending extras of a running job wait, as the control
plane holds them (`not_before`), until `resize_interval` has passed since the world last changed;
a resize restarts every worker, so `running.started_ago` is when the world last changed.

    elastic: {min_workers: 2, max_workers: 5, resize_interval: 10m}
    running: {started_ago: 2m, placed_on: [a, b, c]}   -> el (2 workers) and el-e1 run;
                                                          el-e2, el-e3 wait until 8 min from now

Without `running:`, the job is as just submitted: its extras are held for its core gang
(`elastic.initial_holds`), and the plan says what the live loop comes to (`settle`): the gang
placed, its extras are released and placed with it where they fit (the live loop holds the gang
back one cycle for them: it starts with them); the gang waiting, its extras wait with it
(ElasticWaitsForGang), none placed alone, and the gang's own reason is shown. Held extras are
listed among the pending with their reason, as `corral ls` shows them. Whether a gang holds its
place is asked of `elastic.gang_holds_its_place`, the live step's own test.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from corral.control import elastic
from corral.core import ClusterState, Plan, Workload, WorkloadState
from corral.core.reasons import Reason
from corral.spec import SpecError
from corral.spec.load import WorkloadEntry

__all__ = ["ElasticWorld", "elastic_units", "elastic_worlds", "settle", "unit_names", "with_holds"]

#: the reasons a pending extra is left out of the cycle (the control plane's)
RESIZE_WAIT = elastic.RESIZE_WAIT
CORE_WAIT = elastic.CORE_WAIT

Running = Callable[[Workload, int], Workload]


def unit_names(e: WorkloadEntry) -> list[str]:
    """The ids `e` is planned as: its name, or its core gang's and its extras'."""
    return [e.name] if e.elastic is None else elastic.unit_ids(e.name, e)


def elastic_units(e: WorkloadEntry, i: int, now: float, running: Running | None
                  ) -> tuple[list[Workload], dict[str, Reason]]:
    """The units of elastic entry `e` (`workloads[i]`) for the cycle at `now`, and those held
    out of it with why (as the control plane stores them). `running(unit, first)`: the unit
    running on `placed_on` from entry `first` (None: nothing runs yet)."""
    assert e.elastic is not None
    [core] = e.to_core(e.name, now - e.submitted_ago)
    ids = elastic.unit_ids(e.name, e)
    units = [core, *(dataclasses.replace(elastic.extra_unit(core), id=u) for u in ids[1:])]
    if running is None or e.running is None:  # just submitted: extras held for the gang
        return units, elastic.initial_holds(e, ids)
    low, high = e.elastic.min_workers, e.elastic.max_workers
    size = len(e.running.placed_on)
    if not low <= size <= high:
        raise SpecError([(f"workloads[{i}].running.placed_on",
                          f"lists {size} workers; the elastic job's world has {low} to {high} "
                          "(elastic.min_workers to elastic.max_workers): its core gang's "
                          "workers first, then one entry per running extra")])
    extras = size - low
    out = [running(units[0], 0), *(running(u, low + k) for k, u in
                                   enumerate(units[1:1 + extras]))]
    interval = e.elastic.resize_interval
    waiting = units[1 + extras:]
    holds = {} if e.running.started_ago >= interval else {  # as the plane holds them
        u.id: Reason(RESIZE_WAIT, elastic.hold_message(RESIZE_WAIT, interval)) for u in waiting}
    return out + waiting, holds


def settle(state: ClusterState, entries: Sequence[WorkloadEntry], holds: Mapping[str, Reason],
           plan_of: Callable[[ClusterState], Plan]) -> tuple[Plan, dict[str, Reason]]:
    """The plan the live loop comes to for `state`, and the extras it holds then, with why.

    Held extras are left out of the cycle, as `not_before` leaves them out of the live one. An
    elastic job whose core gang the plan places (`elastic.gang_holds_its_place`) has the
    extras held for it released and the cycle is planned again: the live loop holds the gang
    back one cycle so that it starts with them. One whose gang does not hold its place has
    every extra not running held for it (ElasticWaitsForGang); if the plan had placed some, the
    cycle is planned again without them (the live step would send them back before launch).
    Each pass frees or holds extras for good, so a few passes settle; at most one per job."""
    jobs = {e.name: elastic.unit_ids(e.name, e)[1:] for e in entries if e.elastic is not None}
    running = {w.id for w in state.workloads if w.state == WorkloadState.RUNNING}
    held = dict(holds)
    passes = len(jobs) + 1
    plan = plan_of(_without(state, held))
    for k in range(passes):
        # the last pass only holds, so the plan returned never places an extra alone
        if not _hold_or_free(jobs, running, plan, held, free=k < passes - 1):
            break
        plan = plan_of(_without(state, held))
    return plan, {**held, **_new_world_holds(entries, running, plan, held)}


def _without(state: ClusterState, held: Mapping[str, Reason]) -> ClusterState:
    return dataclasses.replace(state, workloads=tuple(
        w for w in state.workloads if w.id not in held))


def _hold_or_free(jobs: Mapping[str, Sequence[str]], running: set[str], plan: Plan,
                  held: dict[str, Reason], free: bool) -> bool:
    """After `plan`, free the extras held for each core gang it places and hold those of each
    gang that does not hold its place (`held`, in place); whether the cycle must be planned
    again (an extra freed, or one it placed alone now held)."""
    placed = {p.workload_id for p in plan.placements}
    evicted = {ev.workload_id: ev.rule for ev in plan.evictions}
    again = False
    for gang, extras in jobs.items():
        if gang in placed:  # placed, or moved (placed again where the plan nominated it)
            where, stop = "scheduled", None
        else:
            where, stop = ("running", evicted.get(gang)) if gang in running else ("pending", None)
        if elastic.gang_holds_its_place(where, stop):
            freed = [x for x in extras if free and x in held and held[x].code == CORE_WAIT]
            for x in freed:
                del held[x]
            again |= bool(freed)
            continue
        for x in extras:
            if x not in running and x not in held:
                held[x] = Reason(CORE_WAIT, elastic.hold_message(CORE_WAIT, 0.0))
                again |= x in placed
    return again


def _new_world_holds(entries: Sequence[WorkloadEntry], running: set[str], plan: Plan,
                     held: Mapping[str, Reason]) -> dict[str, Reason]:
    """The extras a job's new world leaves waiting, held for its resize_interval: a world
    that starts or changes in this plan is a resize, and the live step (`elastic.decide`)
    holds the others until the interval has passed (their reason there: ElasticResizeInterval,
    not the cycle's)."""
    placed = {p.workload_id for p in plan.placements}
    evicted = {ev.workload_id: ev.rule for ev in plan.evictions}
    out: dict[str, Reason] = {}
    for e in entries:
        if e.elastic is None:
            continue
        units = elastic.unit_ids(e.name, e)
        if _new_world(units, running, placed, evicted):
            out.update({x: Reason(RESIZE_WAIT, elastic.hold_message(
                RESIZE_WAIT, e.elastic.resize_interval)) for x in units[1:]
                if x in plan.pending and x not in held})
    return out


def _stays(units: Sequence[str], running: set[str], placed: set[str], evicted: dict[str, str]
           ) -> set[str]:
    """The units of one job in its world after the plan. A member evicted and placed again in
    one plan stays only when corral moves it (consolidation, migration: elastic.MOVES); taken
    by reclaim or preemption it is stopped, and comes back, if at all, as its restart_on says."""
    return {u for u in units if (u in running or u in placed) and (
        u not in evicted or (u in placed and evicted[u] in elastic.MOVES))}


def _new_world(units: Sequence[str], running: set[str], placed: set[str],
               evicted: dict[str, str]) -> bool:
    """Whether the plan starts or changes the world of the job of `units` (core gang first)."""
    after = _stays(units, running, placed, evicted)
    before = {u for u in units if u in running}
    return units[0] in after and after != before


def with_holds(plan: Plan, held: Mapping[str, Reason]) -> Plan:
    """`plan` with the held extras among its pending, with their reasons (`corral ls` and
    `corral why` show them so in the live store)."""
    return dataclasses.replace(plan, pending={**plan.pending, **held})


@dataclass(frozen=True)
class ElasticWorld:
    """An elastic job's world before and after the planned cycle."""

    name: str
    min_workers: int
    max_workers: int
    before: int  # workers running now (0: not running)
    after: int  # workers in its world once the plan is applied (0: its core gang waits)
    placed: tuple[str, ...]  # extras the plan places
    evicted: tuple[str, ...]  # members the plan evicts
    held_until: float | None  # pending extras wait for resize_interval until then
    waiting: tuple[tuple[str, str], ...]  # (extra, reason code) of extras the plan leaves
    held: tuple[str, ...]  # extras held for the core gang (ElasticWaitsForGang)
    gang_waits: tuple[str, str] | None  # the waiting core gang's (reason code, message)

    def as_dict(self) -> dict[str, Any]:
        return {"min_workers": self.min_workers, "max_workers": self.max_workers,
                "world_before": self.before, "world_after": self.after,
                "extras_placed": list(self.placed), "evicted": list(self.evicted),
                "extras_held_until": self.held_until,
                "extras_waiting": {k: code for k, code in self.waiting},
                "extras_held_for_core_gang": list(self.held),
                "core_gang_waits": None if self.gang_waits is None else {
                    "code": self.gang_waits[0], "message": self.gang_waits[1]}}

    def sentence(self) -> str:
        bounds = f"{self.min_workers} to {self.max_workers} allowed"
        was = f", was {self.before}" if self.before else ""
        if self.name in self.evicted:
            parts = [f"elastic {self.name}: its core gang is evicted ({bounds}{was}): every "
                     "member stops, and the job restarts or fails as its restart_on says"]
        elif self.after == 0:
            why = "" if self.gang_waits is None else f": {self.gang_waits[0]}"
            parts = [f"elastic {self.name}: its core gang of {self.min_workers} waits{why} "
                     f"({bounds})"]
        else:
            parts = [f"elastic {self.name}: world of {self.after} workers after this cycle "
                     f"({bounds}{was})"]
            if self.before and self.after != self.before:
                parts.append("a resize: every worker restarts from its checkpoint with "
                             f"CORRAL_WORLD_SIZE={self.after}")
        if self.held_until is not None:
            parts.append(f"its other extras wait for resize_interval until t={self.held_until:g}")
        if self.held:
            parts.append(f"extras {', '.join(self.held)} wait for it ({CORE_WAIT}): none is "
                         "placed before the core gang")
        return "; ".join(parts)


def elastic_worlds(entries: Sequence[WorkloadEntry], state: ClusterState, plan: Plan,
                   held: Mapping[str, Reason] | None = None) -> list[ElasticWorld]:
    """The world of each elastic entry after `plan` (of `state`, at `plan.now`; `held`: the
    extras left out of it, with why, as `settle` returns them)."""
    running = {w.id for w in state.workloads if w.state == WorkloadState.RUNNING}
    placed = {p.workload_id for p in plan.placements}
    evicted = {e.workload_id: e.rule for e in plan.evictions}
    return [_world(e, running, held or {}, placed, evicted, plan)
            for e in entries if e.elastic is not None]


def _world(e: WorkloadEntry, running: set[str], held: Mapping[str, Reason], placed: set[str],
           evicted: dict[str, str], plan: Plan) -> ElasticWorld:
    assert e.elastic is not None
    core, *extras = elastic.unit_ids(e.name, e)
    low = e.elastic.min_workers
    stays = _stays((core, *extras), running, placed, evicted)
    before = low + sum(x in running for x in extras) if core in running else 0
    after = low + sum(x in stays for x in extras) if core in stays else 0
    held_until = None
    if any(held.get(x, _NONE).code == RESIZE_WAIT for x in extras):  # from the world's change
        held_until = plan.now + e.elastic.resize_interval if _new_world(
            (core, *extras), running, placed, evicted) or e.running is None else (
            plan.now - e.running.started_ago + e.elastic.resize_interval)
    pending = {**plan.pending, **held}
    gang = plan.pending.get(core)
    return ElasticWorld(
        e.name, low, e.elastic.max_workers, before, after,
        tuple(x for x in extras if x in placed), tuple(u for u in (core, *extras) if u in evicted),
        held_until, tuple((x, pending[x].code) for x in extras if x in pending),
        tuple(x for x in extras if held.get(x, _NONE).code == CORE_WAIT),
        None if gang is None else (gang.code, gang.message))


_NONE = Reason("", "")
