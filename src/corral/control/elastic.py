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
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
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
from corral.control.lifecycle import State
from corral.control.nomination_hold import nomination_hold_s
from corral.control.settings import ControlSettings
from corral.core.migration import MIGRATED
from corral.core.model import Nomination, WorkerAssignment, Workload
from corral.core.reasons import RULE_CONSOLIDATE
from corral.spec import WorkloadSpec
from corral.spec.elastic import MAX_EXTRA_WORKERS
from corral.store import Store
from corral.store import workloads as W
from corral.store.nominations import load_nominations, replace_nominations
from corral.store.schema import Event
from corral.store.workloads import WorkloadRecord

__all__ = [
    "ELASTIC_WORLD",
    "RESIZED",
    "RESIZE_WAIT",
    "Elastic",
    "World",
    "dry_run_notes",
    "extra_priority",
    "extra_unit",
    "is_extra",
    "launch_env",
    "unit_ids",
]

#: the stop reason of a resize (requeued without spending a restart) and its event
RESIZED: Final = "Resized"
#: the info event on the core gang's row that records each world
ELASTIC_WORLD: Final = "ElasticWorld"
#: why an extra waits although it may fit: the job resized less than resize_interval ago
RESIZE_WAIT: Final = "ElasticResizeInterval"
#: why an extra waits: its core gang is not placed (extras alone would hold GPUs for nothing)
CORE_WAIT: Final = "ElasticWaitsForGang"
#: not_before of a row held until further notice (as corral.control.workflow.HELD)
_HELD: Final = 1e18
#: the lowest priority a user may give (`WorkloadSpec.priority`); extras go below it
_LOWEST_USER_PRIORITY: Final = -1000
_EXTRA: Final = "-e"
_EXTRAS_GROUP: Final = "-extras"

CORRAL_RANK_OFFSET: Final = "CORRAL_RANK_OFFSET"
CORRAL_ELASTIC_RENDEZVOUS: Final = "CORRAL_ELASTIC_RENDEZVOUS"
#: CORRAL_ELASTIC_WORLD_FILE: a JSON file in the checkpoint directory with the latest world,
#: rewritten (atomically) before the members are stopped for a resize, and by an agent on its
#: host at each launch (`corral.backends.elastic_world`): a worker may watch it
WORLD_FILE: Final = ".corral-world.json"

_PLACED: Final = frozenset({"scheduled", "starting", "running"})
#: the stops of corral's moves (consolidation, migration to faster devices): the member is
#: requeued and placed again at once, where the plan nominated it; not a shrink
MOVES: Final = frozenset({RULE_CONSOLIDATE, MIGRATED})
#: a member without a stop, or with one that keeps it in the world
_STAYING: Final = frozenset({None, RESIZED, *MOVES})
#: stops after which a member comes back as its next attempt (outcome.py: attempt + 1)
_COMING_BACK: Final = frozenset({RESIZED, *MOVES})
_LAUNCHED: Final = frozenset({"starting", "running"})

Fence = Callable[[Connection], bool]


class Specs(Protocol):
    """What this module reads of the loop's `corral.control.snapshot.SpecCache` (named here,
    not imported: the snapshot imports this module for `extra_unit`)."""

    def spec(self, record: WorkloadRecord) -> WorkloadSpec: ...

    def unit(self, record: WorkloadRecord) -> Workload: ...


def unit_ids(group_id: str, spec: WorkloadSpec) -> list[str]:
    """The core gang's id (the group's) and its extras' `<group>-e<k>`, k = 1..extras."""
    assert spec.elastic is not None
    return [group_id, *(f"{group_id}{_EXTRA}{k}" for k in range(1, spec.elastic.extras + 1))]


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


def is_extra(record: WorkloadRecord) -> bool:
    """Whether `record` is an extra member of an elastic job (not its core gang)."""
    return record.id != record.group_id and record.spec.get("elastic") is not None


def extra_index(workload_id: str) -> int:
    """k of `<group>-e<k>`."""
    return int(workload_id.rsplit(_EXTRA, 1)[1])


def extra_priority(priority: int) -> int:
    """An extra's priority: below anything a user can submit (so it never preempts a whole job
    of its queue and is taken first), keeping the order of the jobs' own priorities among
    extras. Example: priority 0 -> -1001 - 1000 = -2001; priority 1000 -> -1001."""
    return priority - (1000 - _LOWEST_USER_PRIORITY) - 1


def extra_unit(core: Workload) -> Workload:
    """An extra member from its job's core unit: one worker, preemptible, below every job."""
    return dataclasses.replace(core, workers=1, priority=extra_priority(core.priority),
                               preemptible=True, min_runtime_s=0.0)


@dataclass(frozen=True)
class World:
    """The members of an elastic job's world, core gang first, then extras by index."""

    generation: int
    members: tuple[str, ...]
    at: float
    #: whether its core gang was placed when it was recorded (a world recorded while the gang
    #: waited is recorded again when the gang starts: the interval counts from the start)
    started: bool = True
    #: the attempt each member is in this world with (a member stopped by this resize: the
    #: attempt it comes back as); () for a world stored before they were recorded
    attempts: tuple[int, ...] = ()

    def attempt_of(self, member: str) -> int | None:
        """The attempt `member` is in this world with; None when not recorded."""
        if member not in self.members or not self.attempts:
            return None
        return self.attempts[self.members.index(member)]

    def rejoined(self, rows: Mapping[str, WorkloadRecord]) -> tuple[str, ...]:
        """Members whose attempt moved past the one they are in this world with: they ended
        (failed, lost) and were placed again between two steps, unseen. Their peers were in
        the old world with them, so a new one is needed although the members are the same."""
        return tuple(m for m, a in zip(self.members, self.attempts, strict=False)
                     if (r := rows.get(m)) is not None and r.attempt > a)

    def size(self, min_workers: int) -> int:
        return min_workers + len(self.members) - 1

    def rank_offset(self, member: str, min_workers: int) -> int:
        """The global rank of `member`'s worker 0: 0 for the core gang, then min_workers + its
        place among the extras (one worker each)."""
        if member not in self.members[1:]:
            return 0
        return min_workers + self.members[1:].index(member)


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


@dataclass(frozen=True)
class Decision:
    """What `decide` asks for one elastic job."""

    world: World | None = None  # a new world to record, or None
    stop: tuple[WorkloadRecord, ...] = ()  # launched members to restart (Resized)
    hold_until: float = 0.0  # pending extras wait until then (resize_interval)
    hold_reason: str = RESIZE_WAIT
    cancel: tuple[WorkloadRecord, ...] = ()  # extras of a job whose core gang ended
    #: members that ended and were placed again unseen (`World.rejoined`): why a world of the
    #: same members is new
    rejoined: tuple[str, ...] = ()
    #: members moved by corral, kept in the world on their way to their new devices
    moving: tuple[str, ...] = ()


def decide(group_id: str, rows: Sequence[WorkloadRecord], known: World | None,
           returning: Iterable[str], spec: WorkloadSpec, now: float) -> Decision:
    """The resize rule for one elastic job (pure; module docstring). `rows`: its active rows;
    `known`: the world last recorded; `returning`: members stopped by a resize, on their way
    back to their devices."""
    assert spec.elastic is not None
    core = next((r for r in rows if r.id == group_id), None)
    extras = sorted((r for r in rows if r.id != group_id), key=lambda r: extra_index(r.id))
    if core is None:  # the core gang ended: the job is over
        return Decision(cancel=tuple(extras))
    # moved by corral (consolidation, migration): not a shrink; it comes back as a member
    moved = {r.id for r in rows if r.stop_reason in MOVES and known and r.id in known.members}
    # on its way back from a resize or a move: counted in, unless something else stops it
    back = moved | {r.id for r in rows if r.id in set(returning) and r.stop_reason in (
        None, RESIZED)}
    if core.id not in back and (core.state not in _PLACED or core.stop_reason is not None):
        # the gang waits (or leaves for another reason): extras wait with it
        if known is None:
            return Decision(world=World(1, (group_id,), now, started=False),
                            hold_until=_HELD, hold_reason=CORE_WAIT)
        return Decision(hold_until=_HELD, hold_reason=CORE_WAIT)
    members = (group_id, *(r.id for r in extras if r.id in back or (
        r.state in _PLACED and r.stop_reason in (None, RESIZED))))
    interval = spec.elastic.resize_interval
    rejoined = () if known is None else known.rejoined({r.id: r for r in rows})
    # a move not yet in the world: its peers restart once, it rejoins them on its new devices
    moving = tuple(r.id for r in rows if r.id in moved and known and known.attempt_of(r.id) in (
        None, r.attempt))
    if known is not None and members == known.members and known.started and not (
            rejoined or moving):
        return Decision(hold_until=known.at + interval)
    stop = () if known is None else tuple(
        r for r in (core, *extras) if r.id in members and r.state in _LAUNCHED
        and r.stop_reason is None)
    world = World((known.generation if known else 0) + 1, members, now,
                  attempts=_attempts(members, rows, stop))
    return Decision(world=world, stop=stop, hold_until=now + interval, rejoined=rejoined,
                    moving=moving)


def _attempts(members: Sequence[str], rows: Sequence[WorkloadRecord],
              stop: Sequence[WorkloadRecord]) -> tuple[int, ...]:
    """The attempt each member is in a new world with: a member stopped for a resize comes
    back as its next attempt (outcome.py requeues a Resized stop with attempt + 1)."""
    by_id = {r.id: r for r in rows}
    stopped = {r.id for r in stop}
    return tuple(by_id[m].attempt + (m in stopped or by_id[m].stop_reason in _COMING_BACK)
                 for m in members)


class Elastic:
    """The resizes of the pool's elastic jobs, one `step` per control step (module docstring).

    Holds the latest world of each live elastic job (read from the store on first sight, so a
    new leader goes on from the old one's) and the members stopped by a resize on their way
    back (in memory: a new leader counts them out, which costs at most one more resize)."""

    def __init__(self) -> None:
        self.worlds: dict[str, World] = {}
        #: the elastic jobs with active rows, as the change feed showed them (`observe`)
        self.groups: set[str] = set()
        self.returning: dict[str, float] = {}  # member id -> until when it is counted in
        self._generation = -1  # the live state's generation last decided on
        self._wake = float("inf")  # the earliest hold that ends (a decision may change then)

    def observe(self, changed: Iterable[str], records: Mapping[str, WorkloadRecord]) -> None:
        """Note the elastic jobs among the rows the change feed returned (`LiveState.refresh`;
        all of them after a full read): O(len(changed)), so a step never scans every row."""
        for wid in changed:
            rec = records.get(wid)
            if rec is not None and "elastic" in rec.spec:
                self.groups.add(core_id(rec))

    def step(self, store: Store, records: Mapping[str, WorkloadRecord],
             assignments: Mapping[str, tuple[WorkerAssignment, ...]], specs: Specs,
             settings: ControlSettings, now: float, fence: Fence, generation: int) -> int:
        """Decide every elastic job's world; returns how many rows were written (the caller
        reads the store again when not 0). Skipped when nothing changed since the last step."""
        if generation == self._generation and now < self._wake:
            return 0
        self._generation, self._wake = generation, float("inf")
        groups = {g: rows for g in sorted(self.groups) if (rows := _rows_of(g, records))}
        self.groups = set(groups)
        self.worlds = {g: w for g, w in self.worlds.items() if g in groups}
        # a member is back once placed again without a stop: the world counts it as placed
        self.returning = {m: t for m, t in self.returning.items() if t > now and (
            r := records.get(m)) is not None and not (r.state in _PLACED and r.stop_reason is None)}
        unknown = [g for g in groups if g not in self.worlds]
        if unknown:
            with store.read() as conn:
                self.worlds.update(load_worlds(conn, unknown))
        written = 0
        for group_id, rows in sorted(groups.items()):
            spec = specs.spec(rows[0])
            d = decide(group_id, rows, self.worlds.get(group_id), self.returning, spec, now)
            written += self._apply(store, group_id, rows, d, spec, assignments, specs,
                                   settings, now, fence)
        return written

    def _apply(self, store: Store, group_id: str, rows: Sequence[WorkloadRecord], d: Decision,
               spec: WorkloadSpec, assignments: Mapping[str, tuple[WorkerAssignment, ...]],
               specs: Specs, settings: ControlSettings, now: float, fence: Fence) -> int:
        held = _to_hold(rows, d, self.returning)
        if not (d.world or d.cancel or held):
            return 0
        grace = settings.stop_grace_s if spec.preemption_grace is None else spec.preemption_grace
        hold_s = nomination_hold_s(grace, settings.interval_s)
        with store.write() as conn:
            if not fence(conn):
                return 0
            n = _cancel(conn, d.cancel, now)
            if d.world is not None:
                _record(conn, group_id, d, self.worlds.get(group_id), spec, now)
                n += _stop(conn, d.stop, assignments, specs, d.world, spec, now, hold_s) + 1
            n += _hold(conn, held, d.hold_until, d.hold_reason, spec)
        if d.world is not None:
            self.worlds[group_id] = d.world
            self.returning.update({r.id: now + hold_s for r in d.stop})
            self.returning.update({m: now + hold_s for m in d.moving})
            core = next((r for r in rows if r.id == group_id), None)
            if core is not None:
                write_world_file(core, spec, settings, d.world)
        if d.hold_until > now:
            self._wake = min(self._wake, d.hold_until)
        return n


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
         if (r := records.get(f"{group_id}{_EXTRA}{k}")) is not None), None)
    if body is None:
        return []
    ids = [group_id, *(f"{group_id}{_EXTRA}{k}" for k in range(1, _extras(body) + 1))]
    return [r for wid in ids if (r := records.get(wid)) is not None]


def _extras(body: dict[str, object]) -> int:
    e = body.get("elastic")
    return int(e["max_workers"]) - int(e["min_workers"]) if isinstance(e, dict) else 0


def _to_hold(rows: Sequence[WorkloadRecord], d: Decision, returning: Mapping[str, float]
             ) -> list[WorkloadRecord]:
    """Pending extras that could be placed before `d.hold_until` (not members on their way
    back: they return to the world they are in), and extras leaving the world (evicted,
    stopping): requeued, they keep `not_before`, so the plan that follows their requeue, before
    the next step, cannot place them back at once (a growth right after the shrink)."""
    return [r for r in rows if is_extra(r) and r.id not in returning
            and (d.world is None or r.id not in d.world.members) and (
                (r.state == "pending" and (r.not_before < d.hold_until or (
                    r.not_before > d.hold_until and r.reason_code in (RESIZE_WAIT, CORE_WAIT))))
                or (r.state in _PLACED and r.stop_reason not in _STAYING
                    and r.not_before < d.hold_until))]


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


def _stop(conn: Connection, stops: Sequence[WorkloadRecord],
          assignments: Mapping[str, tuple[WorkerAssignment, ...]], specs: Specs,
          world: World, spec: WorkloadSpec, now: float, hold_s: float) -> int:
    """Ask each launched member to stop with `Resized` (its grace to checkpoint) and hold its
    devices for its relaunch with the new world."""
    assert spec.elastic is not None
    size = world.size(spec.elastic.min_workers)
    message = (f"resized to {size} workers (generation {world.generation}): stopped with its "
               "grace to checkpoint, relaunched on the same devices with the new "
               "CORRAL_WORLD_SIZE")
    held: list[Nomination] = []
    n = 0
    for rec in stops:
        if not W.update_versioned(conn, rec.id, rec.version, stop_reason=RESIZED,
                                  stop_message=message):
            continue  # changed since read: the next step decides again
        W.append_event(conn, at=now, kind="info", reason=RESIZED, workload_id=rec.id,
                       attempt=rec.attempt, message=message,
                       data={"generation": world.generation, "world_size": size})
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


def _hold(conn: Connection, rows: Sequence[WorkloadRecord], until: float, reason: str,
          spec: WorkloadSpec) -> int:
    """Set the pending extras' `not_before` (the core does not see them until then) and say
    why they wait; a hold that ends now or earlier releases them (RESIZE_WAIT kept as the
    reason until the core gives its own)."""
    assert spec.elastic is not None
    message = (f"waits for the elastic job's resize interval ({spec.elastic.resize_interval:g}s "
               "between resizes that grow it: each restarts every worker)"
               if reason == RESIZE_WAIT else "waits for its elastic job's core gang to be placed")
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
