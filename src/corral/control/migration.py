"""Migration on heterogeneity in the live control plane: a running job moved to faster devices.

The rule is the core's (`corral.core.migration`, the simulator's too): a running job that is
preemptible and checkpoints (its spec sets `checkpoint_dir`), on model a, moves to model b when

    saved = steps_left / rate(a) - steps_left / rate(b)  exceeds  2 x restart_s

(gain = saved - restart_s; largest gain first, at most `max_per_step` per step, none for a job
moved less than `min_interval_s` ago; off unless the pool file's `scheduler.migration.enabled`).

Where the numbers come from:
- steps_left and the rate here: the job's latest progress report of its current attempt (the
  CORRAL_PROGRESS_FILE contract: `steps`, `total_steps`, `steps_per_s`); a job that reports no
  `total_steps` is never moved (its remaining work is unknown);
- the rate there: the rate here x T(b) / T(a), T the spec's `throughput` map, else the per
  (kind, model) estimates learned from progress reports (`corral.control.progress`).

How a move is made, after the step's plan (waiting work had the free devices first):
1. free whole devices per model (not held by running work, a nomination or a cordon, and not
   on a node the step's plan reserved for a blocked gang) feed `choose`: a move never takes
   room promised to waiting work (like Slurm's backfill, which never starts a job on nodes a
   higher-priority job's reservation holds);
2. the core places the job alone, pinned to the target model, on the cluster as it is (no
   eviction, no reservation): the exact devices it would get;
3. one write: the job is asked to stop with `Migrated` (the preemption contract: SIGTERM, its
   grace to checkpoint) and a nomination holds those devices for it (`corral.core.nominations`,
   like a move the core plans), so nobody else takes them while it stops; `outcome` requeues it
   without spending a restart (like `NodeReplaced`), and the next plan places it on the held
   devices first.

When each job was last moved is read from the store (its latest `Migrated` event, written in
the same transaction as the stop), not kept in memory: a new or restarted leader honours
`min_interval_s` for the moves its predecessor made.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, func, select

from corral.control import retry
from corral.control.apply import nomination_hold_s
from corral.control.live_state import LiveState
from corral.control.progress import PROGRESS_REPORTED, LearnedThroughput
from corral.control.settings import ControlSettings
from corral.control.snapshot import SpecCache, with_nominations
from corral.core import schedule
from corral.core.config import SchedulerConfig
from corral.core.migration import (
    MIGRATED,
    MigrationCandidate,
    MigrationMove,
    MigrationRule,
    choose,
)
from corral.core.model import ClusterState, Nomination, Workload, WorkloadKind, WorkloadState
from corral.core.plan import Reservation
from corral.store import Store
from corral.store import workloads as W
from corral.store.nominations import load_nominations, replace_nominations
from corral.store.schema import Event

__all__ = ["Migrator", "free_devices", "last_moves", "without_reserved"]


@dataclass
class Migrator:
    """The control loop's side of migration; `step` runs after the step's plan, before acting."""

    rule: MigrationRule
    learned: LearnedThroughput = field(default_factory=LearnedThroughput)

    def step(self, store: Store, live: LiveState, specs: SpecCache, settings: ControlSettings,
             now: float, fence: Callable[[Connection], bool],
             reservations: Sequence[Reservation] = ()) -> list[MigrationMove]:
        """Stop the jobs worth moving now (at most `rule.max_per_step`); returns the moves.
        `reservations`: the step's plan's, whose nodes no move may take."""
        if not self.rule.enabled:
            return []
        snap = live.snapshot(now)
        with store.read() as conn:
            snap = with_nominations(conn, snap, now)
            state = without_reserved(snap.state, reservations)
            free = free_devices(state)
            if not free:
                return []  # a busy pool (the usual case): nothing to read further
            movable = self._movable(state, snap.records, specs, free)
            if not movable:
                return []
            self.learned.refresh(conn)
            progress = _latest_progress(conn, {wid: snap.records[wid].attempt
                                               for wid in movable})
            moved_at = last_moves(conn, list(movable), now - self.rule.min_interval_s)
        candidates = [c for wid, (w, model) in movable.items() if (c := self._candidate(
            w, model, progress.get(wid), specs.spec(snap.records[wid]), moved_at.get(wid)))
            is not None]
        made: list[MigrationMove] = []
        for move in choose(candidates, free, self.rule, now):
            job = movable[move.workload_id][0]
            where = _placement(state, job, move.target, settings.scheduler, now)
            if where is None:
                continue  # the free devices do not fit it whole (CPU, RAM, topology)
            grace = specs.spec(snap.records[job.id]).preemption_grace or settings.stop_grace_s
            hold = nomination_hold_s(grace, settings.interval_s)
            with store.write() as conn:
                if not fence(conn) or not _stop(conn, snap.records[job.id], job, move, where,
                                                now, hold):
                    continue
            made.append(move)
            # the next move of this step must not be placed on the devices just held: the job
            # leaves the running work (the core drops a nomination whose nominee runs)
            state = dataclasses.replace(
                state, workloads=tuple(w for w in state.workloads if w.id != job.id),
                nominations=(*state.nominations, Nomination(
                    job.id, tuple(where), job.resources.cpu_milli, job.resources.memory_mib)))
        return made

    def _movable(self, state: ClusterState, records: Mapping[str, W.WorkloadRecord],
                 specs: SpecCache, free: Mapping[str, int]) -> dict[str, tuple[Workload, str]]:
        """Running jobs that may move, with the model they run on: preemptible, checkpointing,
        whole devices on one model, another model free (that they allow), allowed to be
        requeued by their retry policy (a move is requeued as a node's leaving is)."""
        cause = retry.Cause(retry.cause_of_stop(MIGRATED))
        models = {n.id: n.gpu_model for n in state.nodes}
        out = {}
        for w in state.workloads:
            if (w.state != WorkloadState.RUNNING or w.kind != WorkloadKind.JOB
                    or not w.preemptible or w.resources.gpus < 1 or not w.assignments):
                continue
            here = {models.get(a.node_id) for a in w.assignments}
            if len(here) != 1 or None in here:
                continue  # spread over models (or a node left): no single rate here
            model = str(next(iter(here)))
            if not any(m != model and (not w.gpu_models or m in w.gpu_models) for m in free):
                continue  # nowhere else to go now
            rec = records.get(w.id)
            if rec is None or rec.state != "running":
                continue
            spec = specs.spec(rec)
            if spec.checkpoint_dir and retry.allows(spec, cause):
                out[w.id] = (w, model)
        return out

    def _candidate(self, w: Workload, model: str, progress: dict[str, Any] | None,
                   spec: Any, moved_at: float | None) -> MigrationCandidate | None:
        if progress is None or not progress.get("total_steps"):
            return None  # remaining work unknown
        relative = dict(spec.throughput) or dict(self.learned.estimates.throughput_of(spec.name))
        rate_here = float(progress.get("steps_per_s") or 0.0)
        if model not in relative or rate_here <= 0:
            return None
        allowed = set(w.gpu_models) or set(relative)
        rates = {m: rate_here * t / relative[model] for m, t in relative.items()
                 if m in allowed or m == model}
        left = max(float(progress["total_steps"]) - float(progress.get("steps") or 0), 0.0)
        return MigrationCandidate(w.id, model, w.workers * w.resources.gpus, left, rates,
                                  moved_at)


def free_devices(state: ClusterState) -> dict[str, int]:
    """Whole devices free per model: on schedulable nodes, used by no running work, held by no
    nomination (moved work on its way, cordoned GPUs' stand-ins)."""
    used: set[tuple[str, int]] = set()
    for w in state.workloads:
        used.update((a.node_id, d) for a in w.assignments for d in a.devices)
    for n in state.nominations:
        used.update((a.node_id, d) for a in n.assignments for d in a.devices)
    free: dict[str, int] = {}
    for node in state.nodes:
        if node.schedulable:
            count = sum(1 for d in range(node.gpu_count) if (node.id, d) not in used)
            if count:
                free[node.gpu_model] = free.get(node.gpu_model, 0) + count
    return free


def without_reserved(state: ClusterState, reservations: Sequence[Reservation]) -> ClusterState:
    """`state` with the nodes reserved for blocked work taken out of what moves may use (as
    cordoned: free_devices skips them, and the core places nothing there)."""
    reserved = {n for r in reservations for n in r.node_ids}
    if not reserved:
        return state
    return dataclasses.replace(state, nodes=tuple(
        dataclasses.replace(n, cordoned=True) if n.id in reserved else n for n in state.nodes))


def _placement(state: ClusterState, job: Workload, model: str, config: SchedulerConfig,
               now: float) -> tuple[Any, ...] | None:
    """Where the core places `job` alone on `model`, the cluster otherwise as it is."""
    others = tuple(w for w in state.workloads if w.id != job.id and w.state == WorkloadState.RUNNING)
    waiting = dataclasses.replace(job, state=WorkloadState.PENDING, started_at=None,
                                  assignments=(), gpu_models=(model,))
    alone = ClusterState(state.nodes, state.queues, (*others, waiting), state.usage,
                         state.nominations)
    # where it fits now: nothing stopped, moved or reserved for it
    place_only = dataclasses.replace(config, max_reservations=0, consolidate=False,
                                     reclaim=False, preempt=False)
    plan = schedule(alone, now, place_only, seed=0)
    return next((p.assignments for p in plan.placements if p.workload_id == job.id), None)


def _stop(conn: Connection, rec: W.WorkloadRecord, job: Workload, move: MigrationMove,
          where: Sequence[Any], now: float, hold_s: float) -> bool:
    """Ask the job to stop with `Migrated` and hold `where` for it, in one transaction."""
    message = (f"moving from {move.source} to {move.target}: about {move.gain_s / 3600:.2g} h "
               "sooner net of the restart; requeued to resume there from its checkpoint")
    if not W.update_versioned(conn, rec.id, rec.version, stop_reason=MIGRATED,
                              stop_message=message):
        return False  # it changed since the snapshot: the next step decides again
    W.append_event(conn, at=now, kind="info", reason=MIGRATED, workload_id=rec.id,
                   attempt=rec.attempt, message=message,
                   data={"from": move.source, "to": move.target, "gain_s": round(move.gain_s)})
    r = job.resources
    kept = [n for n in load_nominations(conn, now) if n.workload_id != rec.id]
    replace_nominations(conn, [*kept, Nomination(rec.id, tuple(where), r.cpu_milli,
                                                 r.memory_mib)], now, hold_s)
    return True


def last_moves(conn: Connection, workload_ids: Sequence[str], since: float) -> dict[str, float]:
    """When each of `workload_ids` was last moved, for those moved after `since`: their latest
    `Migrated` event (events are indexed by workload; older moves bind nothing)."""
    rows = conn.execute(select(Event.workload_id, func.max(Event.at)).where(
        Event.workload_id.in_(list(workload_ids)), Event.kind == "info",
        Event.reason == MIGRATED, Event.at > since).group_by(Event.workload_id))
    return {wid: float(at) for wid, at in rows if wid is not None}


def _latest_progress(conn: Connection, attempts: Mapping[str, int]) -> dict[str, dict[str, Any]]:
    """The last progress report of each workload's current attempt (any worker's): one row
    per workload, however many reports a long run left."""
    latest = (select(func.max(Event.id)).where(
        Event.kind == "info", Event.reason == PROGRESS_REPORTED,
        Event.workload_id.in_(list(attempts))).group_by(Event.workload_id, Event.attempt))
    rows = conn.execute(select(Event.workload_id, Event.attempt, Event.data).where(
        Event.id.in_(latest)))
    out: dict[str, dict[str, Any]] = {}
    for wid, attempt, data in rows:
        if wid is not None and attempts.get(wid) == attempt and isinstance(data, dict):
            out[wid] = data
    return out
