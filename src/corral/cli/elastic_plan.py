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
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from corral.control import elastic
from corral.core import ClusterState, Plan, Workload, WorkloadState
from corral.spec import SpecError
from corral.spec.load import WorkloadEntry

__all__ = ["ElasticWorld", "elastic_units", "elastic_worlds", "unit_names"]

#: the reason a pending extra of a running job is left out of the cycle (the control plane's)
RESIZE_WAIT = elastic.RESIZE_WAIT

Running = Callable[[Workload, int], Workload]


def unit_names(e: WorkloadEntry) -> list[str]:
    """The ids `e` is planned as: its name, or its core gang's and its extras'."""
    return [e.name] if e.elastic is None else elastic.unit_ids(e.name, e)


def elastic_units(e: WorkloadEntry, i: int, now: float, running: Running | None
                  ) -> list[Workload]:
    """The units of elastic entry `e` (`workloads[i]`) for the cycle at `now`. `running(unit,
    first)`: the unit running on `placed_on` from entry `first` (None: nothing runs yet)."""
    assert e.elastic is not None
    [core] = e.to_core(e.name, now - e.submitted_ago)
    ids = elastic.unit_ids(e.name, e)
    units = [core, *(dataclasses.replace(elastic.extra_unit(core), id=u) for u in ids[1:])]
    if running is None or e.running is None:
        return units
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
    if e.running.started_ago >= e.elastic.resize_interval:  # else held, as the plane holds them
        out += units[1 + extras:]
    return out


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
    alone: tuple[str, ...]  # extras placed while the core gang waits

    def as_dict(self) -> dict[str, Any]:
        return {"min_workers": self.min_workers, "max_workers": self.max_workers,
                "world_before": self.before, "world_after": self.after,
                "extras_placed": list(self.placed), "evicted": list(self.evicted),
                "extras_held_until": self.held_until,
                "extras_waiting": {k: code for k, code in self.waiting},
                "extras_placed_without_core_gang": list(self.alone)}

    def sentence(self) -> str:
        bounds = f"{self.min_workers} to {self.max_workers} allowed"
        was = f", was {self.before}" if self.before else ""
        if self.name in self.evicted:
            parts = [f"elastic {self.name}: its core gang is evicted ({bounds}{was}): every "
                     "member stops, and the job restarts or fails as its restart_on says"]
        elif self.after == 0:
            parts = [f"elastic {self.name}: its core gang of {self.min_workers} waits ({bounds})"]
        else:
            parts = [f"elastic {self.name}: world of {self.after} workers after this cycle "
                     f"({bounds}{was})"]
            if self.before and self.after != self.before:
                parts.append("a resize: every worker restarts from its checkpoint with "
                             f"CORRAL_WORLD_SIZE={self.after}")
        if self.held_until is not None:
            parts.append(f"its other extras wait for resize_interval until t={self.held_until:g}")
        if self.alone:
            parts.append(f"extras {', '.join(self.alone)} are placed while the core gang "
                         "waits")
        return "; ".join(parts)


def elastic_worlds(entries: Sequence[WorkloadEntry], state: ClusterState, plan: Plan
                   ) -> list[ElasticWorld]:
    """The world of each elastic entry after `plan` (of `state`, at `plan.now`)."""
    running = {w.id for w in state.workloads if w.state == WorkloadState.RUNNING}
    seen = {w.id for w in state.workloads}
    placed = {p.workload_id for p in plan.placements}
    evicted = {e.workload_id: e.rule for e in plan.evictions}
    return [_world(e, running, seen, placed, evicted, plan)
            for e in entries if e.elastic is not None]


def _world(e: WorkloadEntry, running: set[str], seen: set[str], placed: set[str],
           evicted: dict[str, str], plan: Plan) -> ElasticWorld:
    assert e.elastic is not None
    core, *extras = elastic.unit_ids(e.name, e)
    low = e.elastic.min_workers
    # a member evicted and placed again in one plan stays only when corral moves it
    # (consolidation, migration: elastic.MOVES); taken by reclaim or preemption it is stopped,
    # and comes back, if at all, as its restart_on says
    stays = {u for u in (core, *extras) if (u in running or u in placed) and (
        u not in evicted or (u in placed and evicted[u] in elastic.MOVES))}
    before = low + sum(x in running for x in extras) if core in running else 0
    after = low + sum(x in stays for x in extras) if core in stays else 0
    held = [x for x in extras if x not in seen]
    held_until = None
    if held and e.running is not None:
        held_until = plan.now - e.running.started_ago + e.elastic.resize_interval
    return ElasticWorld(
        e.name, low, e.elastic.max_workers, before, after,
        tuple(x for x in extras if x in placed), tuple(u for u in (core, *extras) if u in evicted),
        held_until, tuple((x, plan.pending[x].code) for x in extras if x in plan.pending),
        tuple(x for x in extras if x in placed) if core not in stays else ())
