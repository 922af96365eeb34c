"""The resize rule of elastic jobs, pure: a job's world and what a step does about it
(`decide`); its reasons and stop. `corral.control.elastic` applies it each control step and
re-exports what others read (its docstring tells the rule in words)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from corral.core.migration import MIGRATED
from corral.core.reasons import RULE_CONSOLIDATE
from corral.spec import WorkloadSpec
from corral.store.workloads import WorkloadRecord

EXTRA: Final = "-e"

#: the stop reason of a resize (requeued without spending a restart) and its event
RESIZED: Final = "Resized"
#: the info event on the core gang's row that records each world
ELASTIC_WORLD: Final = "ElasticWorld"
#: why an extra waits although it may fit: the job resized less than resize_interval ago
RESIZE_WAIT: Final = "ElasticResizeInterval"
#: why an extra waits: its core gang is not placed (extras alone would hold GPUs for nothing)
CORE_WAIT: Final = "ElasticWaitsForGang"
CORE_WAIT_MESSAGE: Final = "waits for its elastic job's core gang to be placed"
#: an extra released by its core gang's placement, for the plan that places the gang again
GANG_PLACED: Final = "ElasticGangPlaced"
#: not_before of a row held until further notice (as corral.control.workflow.HELD)
HELD: Final = 1e18
PLACED: Final = frozenset({"scheduled", "starting", "running"})
#: the stops of corral's moves (consolidation, migration to faster devices): the member is
#: requeued and placed again at once, where the plan nominated it; not a shrink
MOVES: Final = frozenset({RULE_CONSOLIDATE, MIGRATED})
#: a member without a stop, or with one that keeps it in the world
STAYING: Final = frozenset({None, RESIZED, *MOVES})
#: stops after which a member comes back as its next attempt (outcome.py: attempt + 1)
COMING_BACK: Final = frozenset({RESIZED, *MOVES})
LAUNCHED: Final = frozenset({"starting", "running"})


def gang_holds_its_place(state: str, stop_reason: str | None) -> bool:
    """Whether an elastic job's core gang holds its place: placed (scheduled, starting,
    running) and not asked to stop. Its extras may be placed only while it does; else they are
    held for it (`CORE_WAIT`). The one test of it: the live step (`decide`) and `corral plan`
    (`corral.cli.elastic_plan.settle`) both ask it."""
    return state in PLACED and stop_reason is None


def hold_message(reason: str, resize_interval: float) -> str:
    """Why an extra held by its elastic job waits (`reason`: RESIZE_WAIT or CORE_WAIT)."""
    if reason == RESIZE_WAIT:
        return (f"waits for the elastic job's resize interval ({resize_interval:g}s between "
                "resizes that grow it: each restarts every worker)")
    return CORE_WAIT_MESSAGE


def is_extra(record: WorkloadRecord) -> bool:
    """Whether `record` is an extra member of an elastic job (not its core gang)."""
    return record.id != record.group_id and record.spec.get("elastic") is not None


def extra_index(workload_id: str) -> int:
    """k of `<group>-e<k>`."""
    return int(workload_id.rsplit(EXTRA, 1)[1])


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
    #: a core gang placed while its extras are held for it (at its first start, or back after
    #: it left): it waits one cycle (stopped before its launch, its devices nominated) so that
    #: the plan that places it again places the extras `release` frees with it: the job
    #: starts with every worker that fits, with no restart a cycle after its start
    defer: WorkloadRecord | None = None
    release: tuple[WorkloadRecord, ...] = ()
    #: extras placed while their core gang is not: placed, never launched (sent back to
    #: waiting) or launched (stopped); both held again until the gang is placed
    unplace: tuple[WorkloadRecord, ...] = ()
    alone: tuple[WorkloadRecord, ...] = ()


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
    if core.id not in back and not gang_holds_its_place(core.state, core.stop_reason):
        # the gang waits (or leaves for another reason): extras wait with it, and those placed
        # or running go back to waiting, so that they never hold GPUs alone
        unplace = tuple(r for r in extras if r.state == "scheduled" and r.stop_reason is None)
        alone = tuple(r for r in extras if r.state in LAUNCHED and r.stop_reason is None)
        world = None if known is not None else World(1, (group_id,), now, started=False)
        return Decision(world=world, hold_until=HELD, hold_reason=CORE_WAIT, unplace=unplace,
                        alone=alone)
    # the gang is placed, its extras still held for it (`HELD`): it waits one cycle for them
    waiting = tuple(r for r in extras if r.state == "pending" and r.not_before >= HELD)
    if waiting and core.state == "scheduled" and core.stop_reason is None and core.id not in back:
        return Decision(defer=core, release=waiting)
    members = (group_id, *(r.id for r in extras if r.id in back or (
        r.state in PLACED and r.stop_reason in (None, RESIZED))))
    interval = spec.elastic.resize_interval
    rejoined = () if known is None else known.rejoined({r.id: r for r in rows})
    # a move not yet in the world: its peers restart once, it rejoins them on its new devices
    moving = tuple(r.id for r in rows if r.id in moved and known and known.attempt_of(r.id) in (
        None, r.attempt))
    if known is not None and members == known.members and known.started and not (
            rejoined or moving):
        return Decision(hold_until=known.at + interval)
    stop = () if known is None else tuple(
        r for r in (core, *extras) if r.id in members and r.state in LAUNCHED
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
    return tuple(by_id[m].attempt + (m in stopped or by_id[m].stop_reason in COMING_BACK)
                 for m in members)


def to_hold(rows: Sequence[WorkloadRecord], d: Decision, returning: Mapping[str, float]
             ) -> list[WorkloadRecord]:
    """Pending extras that could be placed before `d.hold_until` (not members on their way
    back: they return to the world they are in), and extras leaving the world (evicted,
    stopping): requeued, they keep `not_before`, so the plan that follows their requeue, before
    the next step, cannot place them back at once (a growth right after the shrink).

    When the core gang waits (`CORE_WAIT`) there is no world to return to: members on their
    way back from a resize are held too, pending or still stopping (their requeue keeps the
    hold), else the next plan places them alone onto their nominated devices."""
    gang_waits = d.hold_reason == CORE_WAIT
    return [r for r in rows if is_extra(r) and (gang_waits or r.id not in returning)
            and (d.world is None or r.id not in d.world.members) and (
                (r.state == "pending" and (r.not_before < d.hold_until or (
                    r.not_before > d.hold_until and (r.reason_code in (RESIZE_WAIT, CORE_WAIT)
                                                     or r.not_before >= HELD))
                    or (gang_waits and r.reason_code != CORE_WAIT)))
                or (r.state in PLACED and (r.stop_reason not in STAYING or (
                    gang_waits and r.stop_reason in COMING_BACK))
                    and r.not_before < d.hold_until))]
