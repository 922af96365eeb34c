"""Elastic jobs (`elastic: {min_workers, max_workers}`): a core gang plus extras, one world.

The core is left as it is. An elastic job is submitted as rows the core already knows:

    <group>        the core gang of min_workers: a gang as any other, at the job's priority
    <group>-e1..   max_workers - min_workers extra members, one worker each, preemptible, at a
                   priority below any a user can give (`extra_priority`)

so the core places extras only where they fit after everything else of their queue, and its
reclaim and preemption take them before any whole job (victims go lowest priority first);
their "why pending" is the core's own. This is KAI-Scheduler's elastic PodGroup: `minMember`
pods must run together, the pods beyond it are placed when they fit and are the first
preempted (its `ElasticAllocation` / `minAvailable` docs).

Extras never hold GPUs without their core gang (the core knows no "place this only with
that", so it is kept here):

    submitted          the extras are stored held (`not_before`, reason ElasticWaitsForGang,
                       `initial_holds`): no plan, the first included, sees them
    the gang placed    while its extras are held for it (its first start, or back after it
                       left): it waits one cycle (a `Resized` stop before its launch, its
                       devices nominated; no restart spent) and its extras are released, so
                       the next plan places it with the extras that fit: it starts with them,
                       not at min followed by a resize a cycle later
    the gang leaves    (evicted, failed, lost; not a resize or a move): its launched extras are
                       stopped (`Resized`, their grace) and every extra is held again, in the
                       step that sees it, those on their way back from a resize included
                       (their nominated devices let go); an extra a plan placed meanwhile (the
                       gang's room taken between its wait and its placement) goes back to
                       waiting before any launch

Resizing (this module's `Elastic.step`, each control step after the plan and before launches):

    members = the core gang + the extras placed now (scheduled, starting, running, not stopped
              for another reason) + those stopped by a resize that are on their way back
    members == the world last recorded   -> nothing
    otherwise                            -> a new world (generation + 1) is recorded on the
                                            core's row (an ElasticWorld event); every member
                                            already launched gets a stop with `Resized`, with
                                            its preemption grace to checkpoint, and a
                                            nomination holds its devices; it is requeued
                                            without spending a restart (outcome.py) and
                                            relaunched there with the new world

as TorchElastic's agent does on a membership change (`torchrun --nnodes=MIN:MAX`: stop every
worker, rendezvous again with the new world, resume from the checkpoint). Each launch reads the
latest world (`launch_env`): CORRAL_WORLD_SIZE, CORRAL_RANK_OFFSET (a worker's global rank is
CORRAL_RANK_OFFSET + CORRAL_WORKER_INDEX: 0.. for the core gang, min_workers.. for the extras
in order), CORRAL_ELASTIC_GENERATION and CORRAL_ELASTIC_RENDEZVOUS (a file in the shared
checkpoint directory, for `torch.distributed`'s `file://` init, new per generation).

Churn, the rule: every resize restarts every worker, so

    a growth       waits (extras' `not_before`, reason ElasticResizeInterval) until
                   `resize_interval` has passed since the world last changed, whichever way:
                   at most one growth per interval, and never right after a shrink
    a shrink       only when a member is gone for good: taken by reclaim or preemption (the
                   core takes extras first, and only for an owed queue or a higher priority:
                   bounded by those evictions), or failed or lost and not retried by the
                   job's restart policy, or retried after a backoff (it comes back as growth)
    not a shrink   a member corral moves (consolidation, migration: `MOVES`): it stays in the
                   world, its peers restart once into the next generation, and it rejoins it
                   on the devices it was nominated to, without waiting for the interval
    not a growth   a member that failed and was placed again before the next step (its
                   restart_on retries it, no backoff): the same members, but its peers were in
                   a world with its dead attempt, so they restart into a new generation
                   (`World.attempts`, `World.rejoined`); its restart is counted on its row,
                   bounded by the job's max_restarts

So a world whose extras come and go restarts at most once per interval to grow, plus once per
member it loses. When the core gang ends, whatever of its extras is left is cancelled.

Cost: a step decides only the jobs the change feed showed since the last one (`observe`: a row
of the job changed or ended) and those whose timer came (a hold, or a member's way back,
ends), never every elastic job. The rule itself, pure, is `corral.control.elastic_rule`.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Final, Protocol

from sqlalchemy import Connection, select

from corral.backends import elastic_world as EW
from corral.backends.elastic_world import (
    CORRAL_ELASTIC_GENERATION,
    CORRAL_ELASTIC_MAX,
    CORRAL_ELASTIC_MIN,
    CORRAL_ELASTIC_WORLD_FILE,
    CORRAL_WORLD_SIZE,
)
from corral.control import lifecycle as L
from corral.control.checkpoint_dirs import checkpoint_dir
from corral.control.elastic_rule import (
    CORE_WAIT,
    CORE_WAIT_MESSAGE,
    ELASTIC_WORLD,
    EXTRA,
    GANG_PLACED,
    HELD,
    MOVES,
    PLACED,
    RESIZE_WAIT,
    RESIZED,
    Decision,
    World,
    decide,
    extra_index,
    gang_holds_its_place,
    hold_message,
    is_extra,
    to_hold,
)
from corral.control.lifecycle import State
from corral.control.nomination_hold import nomination_hold_s
from corral.control.settings import ControlSettings
from corral.core.model import Nomination, WorkerAssignment, Workload
from corral.core.reasons import Reason
from corral.spec import WorkloadSpec
from corral.spec.elastic import MAX_EXTRA_WORKERS
from corral.store import Store
from corral.store import workloads as W
from corral.store.nominations import load_nominations, replace_nominations
from corral.store.schema import Event
from corral.store.workloads import WorkloadRecord

__all__ = [
    "CORE_WAIT",
    "ELASTIC_WORLD",
    "GANG_PLACED",
    "MOVES",
    "RESIZED",
    "RESIZE_WAIT",
    "Decision",
    "Elastic",
    "World",
    "decide",
    "dry_run_notes",
    "extra_index",
    "extra_priority",
    "extra_unit",
    "gang_holds_its_place",
    "hold_message",
    "initial_holds",
    "is_extra",
    "launch_env",
    "unit_ids",
]

#: the lowest priority a user may give (`WorkloadSpec.priority`); extras go below it
_LOWEST_USER_PRIORITY: Final = -1000
_EXTRAS_GROUP: Final = "-extras"

CORRAL_RANK_OFFSET: Final = "CORRAL_RANK_OFFSET"
CORRAL_ELASTIC_RENDEZVOUS: Final = "CORRAL_ELASTIC_RENDEZVOUS"
#: CORRAL_ELASTIC_WORLD_FILE: a JSON file in the checkpoint directory with the latest world,
#: rewritten (atomically) before the members are stopped for a resize, and by an agent on its
#: host at each launch (`corral.backends.elastic_world`): a worker may watch it
WORLD_FILE: Final = ".corral-world.json"

Fence = Callable[[Connection], bool]


class Specs(Protocol):
    """What this module reads of the loop's `corral.control.snapshot.SpecCache` (named here,
    not imported: the snapshot imports this module for `extra_unit`)."""

    def spec(self, record: WorkloadRecord) -> WorkloadSpec: ...

    def unit(self, record: WorkloadRecord) -> Workload: ...


def unit_ids(group_id: str, spec: WorkloadSpec) -> list[str]:
    """The core gang's id (the group's) and its extras' `<group>-e<k>`, k = 1..extras."""
    assert spec.elastic is not None
    return [group_id, *(f"{group_id}{EXTRA}{k}" for k in range(1, spec.elastic.extras + 1))]


def initial_holds(spec: WorkloadSpec, unit_ids: Sequence[str]) -> dict[str, Reason]:
    """The units of a new submission held by their elastic job: every extra, until the step
    that sees its core gang placed releases it (`decide`). Stored held (`not_before`), the
    core never sees an extra before its gang is placed, from the first cycle on."""
    if spec.elastic is None:
        return {}
    return {uid: Reason(CORE_WAIT, CORE_WAIT_MESSAGE) for uid in unit_ids[1:]}


def group_of(unit_id: str, group_id: str) -> str:
    """The group a unit is stored in: the core gang's is the job's (its id); the extras share
    `<group>-extras`, so that the job's group is its core gang alone: `depends_on` the job, its
    group report and its outcome are the gang's, whatever became of extras that never ran
    (cancelled when the gang ends). Ids end in 8 hex digits, so no job's group is another's
    extras group."""
    return group_id if unit_id == group_id else f"{group_id}{_EXTRAS_GROUP}"


def core_id(record: WorkloadRecord) -> str:
    """The id of the core gang of the elastic job `record` belongs to."""
    return record.group_id.removesuffix(_EXTRAS_GROUP)


def extra_priority(priority: int) -> int:
    """An extra's priority: below anything a user can submit (so it never preempts a whole job
    of its queue and is taken first), keeping the order of the jobs' own priorities among
    extras. Example: priority 0 -> -1001 - 1000 = -2001; priority 1000 -> -1001."""
    return priority - (1000 - _LOWEST_USER_PRIORITY) - 1


def extra_unit(core: Workload) -> Workload:
    """An extra member from its job's core unit: one worker, preemptible, below every job."""
    return dataclasses.replace(core, workers=1, priority=extra_priority(core.priority),
                               preemptible=True, min_runtime_s=0.0)


def world_env(world: World, member: str, spec: WorkloadSpec, ckpt: str) -> dict[str, str]:
    """The launch's elastic variables for `member` in `world` (pure)."""
    assert spec.elastic is not None
    low = spec.elastic.min_workers
    return {
        CORRAL_WORLD_SIZE: str(world.size(low)),
        CORRAL_RANK_OFFSET: str(world.rank_offset(member, low)),
        CORRAL_ELASTIC_GENERATION: str(world.generation),
        CORRAL_ELASTIC_RENDEZVOUS: os.path.join(ckpt, f".corral-rendezvous-{world.generation}")
        if ckpt else "",
        CORRAL_ELASTIC_WORLD_FILE: os.path.join(ckpt, WORLD_FILE)
        if ckpt and spec.checkpoint_dir is None else "",
        CORRAL_ELASTIC_MIN: str(low),
        CORRAL_ELASTIC_MAX: str(spec.elastic.max_workers),
    }


def launch_env(rec: WorkloadRecord, spec: WorkloadSpec, ckpt: str, store: Store | None
               ) -> tuple[str, dict[str, str]]:
    """The shared checkpoint directory (the group's: extras write where the gang does) and the
    elastic variables of `rec`'s launch, from the latest recorded world. A member the world
    does not list yet (the step that records it has not run) is added at its end: the next
    step records a world with it and restarts it."""
    core = core_id(rec)
    if rec.id != core and spec.checkpoint_dir is None:
        ckpt = os.path.join(os.path.dirname(ckpt), core)
    world = None
    if store is not None:
        with store.read() as conn:
            world = load_worlds(conn, [core]).get(core)
    if world is None:
        world = World(0, (core,), 0.0)
    if rec.id not in world.members:
        world = dataclasses.replace(world, members=(*world.members, rec.id))
    return ckpt, world_env(world, rec.id, spec, ckpt)


def load_worlds(conn: Connection, group_ids: Sequence[str]) -> dict[str, World]:
    """The latest recorded world of each of `group_ids` that has one (ElasticWorld events on the
    core gang's row; events are indexed by workload)."""
    if not group_ids:
        return {}
    rows = conn.execute(select(Event.workload_id, Event.at, Event.data).where(
        Event.workload_id.in_(list(group_ids)), Event.kind == "info",
        Event.reason == ELASTIC_WORLD).order_by(Event.id))
    out: dict[str, World] = {}
    for wid, at, data in rows:  # in order: the last one stays
        if wid is not None and isinstance(data, dict):
            out[wid] = World(int(data.get("generation", 0)),
                             tuple(str(m) for m in data.get("members", ())), float(at),
                             bool(data.get("started", True)),
                             tuple(int(a) for a in data.get("attempts", ())))
    return out


class Elastic:
    """The resizes of the pool's elastic jobs, one `step` per control step (module docstring).

    Holds the latest world of each live elastic job (read from the store on first sight, so a
    new leader goes on from the old one's) and the members stopped by a resize on their way
    back (in memory: a new leader counts them out, which costs at most one more resize)."""

    def __init__(self) -> None:
        self.worlds: dict[str, World] = {}
        #: the elastic jobs with active rows, as the change feed showed them (`observe`)
        self.groups: set[str] = set()
        #: those the change feed showed since the last step: the only ones a step decides,
        #: with those whose `timers` came (cost grows with what changed, not with what runs)
        self.dirty: set[str] = set()
        #: group -> when a decision may change with no row changing (a hold or a member's way
        #: back ends)
        self.timers: dict[str, float] = {}
        self.returning: dict[str, float] = {}  # member id -> until when it is counted in

    def observe(self, changed: Iterable[str], records: Mapping[str, WorkloadRecord]) -> None:
        """Note the elastic jobs among the rows the change feed returned (`LiveState.refresh`;
        all of them after a full read): O(len(changed)), so a step never scans every row. A
        row that ended has left `records`: its job is known by its id (`groups`)."""
        for wid in changed:
            rec = records.get(wid)
            if rec is not None:
                if "elastic" in rec.spec:
                    self.groups.add(core_id(rec))
                    self.dirty.add(core_id(rec))
            elif wid in self.groups:
                self.dirty.add(wid)
            elif EXTRA in wid and (g := wid.rsplit(EXTRA, 1)[0]) in self.groups:
                self.dirty.add(g)

    def step(self, store: Store, records: Mapping[str, WorkloadRecord],
             assignments: Mapping[str, tuple[WorkerAssignment, ...]], specs: Specs,
             settings: ControlSettings, now: float, fence: Fence, generation: int = 0) -> int:
        """Decide the world of each elastic job the change feed showed since the last step, or
        whose timer came; returns how many rows were written (the caller reads the store again
        when not 0). `generation` (the live state's) is not needed: `observe` says what changed."""
        due = [g for g, t in self.timers.items() if t <= now]
        todo, self.dirty = self.dirty | set(due), set()
        if not todo:
            return 0
        for g in due:
            del self.timers[g]
        groups = {g: rows for g in sorted(todo) if (rows := _rows_of(g, records))}
        for g in todo - groups.keys():  # ended: forgotten
            self.groups.discard(g)
            self.worlds.pop(g, None)
            self.timers.pop(g, None)
        # a member is back once placed again without a stop: the world counts it as placed
        self.returning = {m: t for m, t in self.returning.items() if t > now and (
            r := records.get(m)) is not None and not (r.state in PLACED and r.stop_reason is None)}
        unknown = [g for g in groups if g not in self.worlds]
        if unknown:
            with store.read() as conn:
                self.worlds.update(load_worlds(conn, unknown))
        written = 0
        for group_id, rows in groups.items():
            spec = specs.spec(rows[0])
            d = decide(group_id, rows, self.worlds.get(group_id), self.returning, spec, now)
            written += self._apply(store, group_id, rows, d, spec, assignments, specs,
                                   settings, now, fence)
        return written

    def _apply(self, store: Store, group_id: str, rows: Sequence[WorkloadRecord], d: Decision,
               spec: WorkloadSpec, assignments: Mapping[str, tuple[WorkerAssignment, ...]],
               specs: Specs, settings: ControlSettings, now: float, fence: Fence) -> int:
        assert spec.elastic is not None
        held = [] if d.defer is not None else to_hold(rows, d, self.returning)
        # members on their way back when the gang left: no world to return to, so the devices
        # nominated for their relaunch are let go (else idle until the nomination expires)
        gone = [r.id for r in held if r.id in self.returning] if d.hold_reason == CORE_WAIT \
            else []
        if now < d.hold_until < HELD:
            self._timer(group_id, d.hold_until)
        if not (d.world or d.cancel or held or d.defer or d.unplace or d.alone):
            return 0
        grace = settings.stop_grace_s if spec.preemption_grace is None else spec.preemption_grace
        hold_s = nomination_hold_s(grace, settings.interval_s)
        with store.write() as conn:
            if not fence(conn):
                self.dirty.add(group_id)  # decided again once this process leads
                return 0
            n = _cancel(conn, d.cancel, now)
            if d.world is not None:
                _record(conn, group_id, d, self.worlds.get(group_id), spec, now)
                size = d.world.size(spec.elastic.min_workers)
                n += _stop(conn, d.stop, assignments, specs, _resized(d.world, size),
                           {"generation": d.world.generation, "world_size": size}, now,
                           hold_s) + 1
            n += _hold(conn, held, d.hold_until, d.hold_reason, spec)
            n += _drop_nominations(conn, gone, now)
            n += _unplace(conn, d.unplace, now) + _stop_alone(conn, d.alone, now)
            if d.defer is not None:
                n += _stop(conn, [d.defer], assignments, specs, _DEFERRED, {}, now, hold_s)
                n += _release(conn, d.release)
        for m in gone:
            self.returning.pop(m, None)
        if d.world is not None:
            self.worlds[group_id] = d.world
            self.returning.update({r.id: now + hold_s for r in d.stop})
            self.returning.update({m: now + hold_s for m in d.moving})
            if d.stop or d.moving:  # counted in until then: decided again at the latest then
                self._timer(group_id, now + hold_s)
            core = next((r for r in rows if r.id == group_id), None)
            if core is not None:
                write_world_file(core, spec, settings, d.world)
        return n

    def _timer(self, group_id: str, at: float) -> None:
        self.timers[group_id] = min(at, self.timers.get(group_id, at))


def write_world_file(core: WorkloadRecord, spec: WorkloadSpec, settings: ControlSettings,
                     world: World) -> None:
    """Write `world` to the job's CORRAL_ELASTIC_WORLD_FILE (a temporary file, then a rename:
    a reader never sees half of it), where this machine sees the checkpoint directory; where
    it does not (storage mounted only on the workers), the variables alone tell the size.

    Only in a directory corral made under its own checkpoint root, and only once it exists
    (the backend makes it, owned by the worker's user): never in a directory a spec names
    (`checkpoint_dir: /etc` must not get a file written by the server), never creating one
    (it would belong to the server's user, and the workers could not write their checkpoints)."""
    assert spec.elastic is not None
    directory = checkpoint_dir(core, spec, settings)
    if spec.checkpoint_dir is not None:
        return
    EW.write_world_file(os.path.join(directory, WORLD_FILE), EW.world_body(
        world.generation, world.size(spec.elastic.min_workers), spec.elastic.min_workers,
        spec.elastic.max_workers, world.members))


def _rows_of(group_id: str, records: Mapping[str, WorkloadRecord]) -> list[WorkloadRecord]:
    """The active rows of an elastic job: its core gang and extras, by id."""
    core = records.get(group_id)
    body = core.spec if core is not None else next(
        (r.spec for k in range(1, MAX_EXTRA_WORKERS + 1)
         if (r := records.get(f"{group_id}{EXTRA}{k}")) is not None), None)
    if body is None:
        return []
    ids = [group_id, *(f"{group_id}{EXTRA}{k}" for k in range(1, _extras(body) + 1))]
    return [r for wid in ids if (r := records.get(wid)) is not None]


def _extras(body: dict[str, object]) -> int:
    e = body.get("elastic")
    return int(e["max_workers"]) - int(e["min_workers"]) if isinstance(e, dict) else 0


def _record(conn: Connection, group_id: str, d: Decision, old: World | None,
            spec: WorkloadSpec, now: float) -> None:
    assert spec.elastic is not None and d.world is not None
    world, low = d.world, spec.elastic.min_workers
    size = world.size(low)
    was = f" (was {old.size(low)})" if old is not None else ""
    why = f"; {', '.join(d.rejoined)} ended and came back" if d.rejoined else ""
    W.append_event(conn, at=now, kind="info", reason=ELASTIC_WORLD, workload_id=group_id,
                   message=f"world of {size} workers{was}, generation {world.generation}; "
                   f"{low} to {spec.elastic.max_workers} allowed{why}",
                   data={"generation": world.generation, "members": list(world.members),
                         "world_size": size, "min": low, "max": spec.elastic.max_workers,
                         "started": world.started, "attempts": list(world.attempts),
                         "rejoined": list(d.rejoined)})


def _resized(world: World, size: int) -> str:
    return (f"resized to {size} workers (generation "
            f"{world.generation}): stopped with its grace to checkpoint, relaunched on the same "
            "devices with the new CORRAL_WORLD_SIZE")


#: the stop of a core gang held back one cycle (`Decision.defer`): never launched, it ends at
#: once (`act.stop_requested`) and is requeued onto its nominated devices without a restart
_DEFERRED: Final = ("placed before its extras, which wait for it: held back one cycle on its "
                    "devices, so that it starts with the extras that fit beside it")


def _stop(conn: Connection, stops: Sequence[WorkloadRecord],
          assignments: Mapping[str, tuple[WorkerAssignment, ...]], specs: Specs, message: str,
          data: dict[str, int], now: float, hold_s: float) -> int:
    """Ask each member to stop with `Resized` (launched: its grace to checkpoint) and hold its
    devices for its relaunch; `data`: the event's (the new world's generation and size)."""
    held: list[Nomination] = []
    n = 0
    for rec in stops:
        if not W.update_versioned(conn, rec.id, rec.version, stop_reason=RESIZED,
                                  stop_message=message):
            continue  # changed since read: the next step decides again
        W.append_event(conn, at=now, kind="info", reason=RESIZED, workload_id=rec.id,
                       attempt=rec.attempt, message=message, data=data)
        n += 1
        where = assignments.get(rec.id, ())
        if where:
            r = specs.unit(rec).resources
            held.append(Nomination(rec.id, tuple(where), r.cpu_milli, r.memory_mib))
    if held:
        mine = {h.workload_id for h in held}
        kept = [x for x in load_nominations(conn, now) if x.workload_id not in mine]
        replace_nominations(conn, [*kept, *held], now, hold_s)
    return n


def _drop_nominations(conn: Connection, members: Sequence[str], now: float) -> int:
    """Let go of the devices nominated for `members`' relaunch (others' nominations kept with
    their own ends); only for members on their way back, so rare and few."""
    if not members:
        return 0
    gone = set(members)
    stored = load_nominations(conn, now)
    kept = [x for x in stored if x.workload_id not in gone]
    if len(kept) == len(stored):
        return 0
    replace_nominations(conn, kept, now, 0.0)
    return len(stored) - len(kept)


def _unplace(conn: Connection, extras: Sequence[WorkloadRecord], now: float) -> int:
    """Extras a plan placed while their core gang is not: back to waiting before any launch
    (a new attempt: the placement written for this one is left behind), held for the gang."""
    return sum(L.transition(conn, r, State.PENDING, reason=CORE_WAIT, now=now,
                            message=f"{CORE_WAIT_MESSAGE}: placed without it, never launched",
                            not_before=HELD, attempt=r.attempt + 1)
               for r in extras)


def _stop_alone(conn: Connection, extras: Sequence[WorkloadRecord], now: float) -> int:
    """Launched extras whose core gang left (evicted, failed, lost): stopped with `Resized`
    (their grace, no restart spent) and held, so that they do not hold GPUs alone; the next
    step gives the requeued row its reason (CORE_WAIT)."""
    message = "its elastic job's core gang is not running: stopped until the gang is placed again"
    n = 0
    for r in extras:
        if W.update_versioned(conn, r.id, r.version, stop_reason=RESIZED, stop_message=message,
                              not_before=HELD):
            W.append_event(conn, at=now, kind="info", reason=RESIZED, workload_id=r.id,
                           attempt=r.attempt, message=message)
            n += 1
    return n


def _release(conn: Connection, extras: Sequence[WorkloadRecord]) -> int:
    """Extras held for their core gang, released for the plan that places it again."""
    return sum(W.update_versioned(conn, r.id, r.version, not_before=0.0, reason_code=GANG_PLACED,
                                  reason_message="its core gang is placed: placed with it where "
                                  "it fits, at the next scheduling cycle")
               for r in extras)


def _hold(conn: Connection, rows: Sequence[WorkloadRecord], until: float, reason: str,
          spec: WorkloadSpec) -> int:
    """Set the pending extras' `not_before` (the core does not see them until then) and say
    why they wait; a hold that ends now or earlier releases them (RESIZE_WAIT kept as the
    reason until the core gives its own)."""
    assert spec.elastic is not None
    message = hold_message(reason, spec.elastic.resize_interval)
    return sum(W.update_versioned(conn, r.id, r.version, not_before=until,
                                  reason_code=reason, reason_message=message)
               for r in rows)


def _cancel(conn: Connection, extras: Sequence[WorkloadRecord], now: float) -> int:
    """End what is left of a finished job's extras: pending ones at once, launched ones by a
    stop request (cancelled once their workers ended)."""
    n = 0
    message = "its elastic job's core gang ended"
    for rec in extras:
        if rec.stop_reason is not None:
            continue
        if rec.state in ("pending", "preempted"):
            n += L.transition(conn, rec, State.CANCELLED, reason=L.CANCELLED, message=message,
                              now=now)
        else:
            n += W.update_versioned(conn, rec.id, rec.version, stop_reason=L.CANCELLED,
                                    stop_message=message)
    return n


def dry_run_notes(spec: WorkloadSpec, group_id: str, placed: Iterable[str]) -> list[str]:
    """What an elastic job would do, for the dry run: the sizes, and how many it would start
    with now (`placed`: the unit ids the dry run's plan placed; `group_id`: its core gang's)."""
    if spec.elastic is None:
        return []
    e = spec.elastic
    ids = set(placed)
    extras = len(ids - {group_id})
    now = f"would start now with {e.min_workers + extras} workers" if group_id in ids else \
        f"would wait: its core gang of {e.min_workers} does not fit now"
    return [f"elastic: {e.min_workers} to {e.max_workers} workers; {now}. It grows when GPUs "
            f"are free (at most once per {e.resize_interval:g}s), its extras are taken first "
            "by reclaim and preemption, and each resize restarts every worker from its "
            "checkpoint with the new CORRAL_WORLD_SIZE"]
