"""Elastic jobs on the control plane (corral.control.elastic), fake backend, manual clock.

The pool: 2 nodes x 4 GPUs, queue q (quota 8). A job `elastic: {min_workers: 2, max_workers: 4}`
is its core gang of 2 plus extras e1, e2 of one worker each."""

from __future__ import annotations

import ast
import dataclasses
import itertools
from pathlib import Path
from typing import Any

import pytest
from tests.control.rig import Rig

from corral.backends.base import LaunchSpec
from corral.control import apply_plan
from corral.control import elastic as E
from corral.control.snapshot import SpecCache, load_snapshot
from corral.core.model import Nomination, Queue, WorkerAssignment
from corral.core.plan import Eviction, Plan
from corral.spec import WorkloadSpec
from corral.store import Store
from corral.store import pool as P
from corral.store import workloads as W
from corral.store.workloads import WorkloadRecord

pytestmark = pytest.mark.slow  # 46 tests, 31 s (-n 2 whole run, 2026-12-05, load 8-32)

ELASTIC = {"min_workers": 2, "max_workers": 4, "resize_interval": 30}


@pytest.fixture
def rig(store: Store) -> Rig:
    return Rig(store)


def launches_of(rig: Rig, wid: str) -> list[LaunchSpec]:
    return [s for s in rig.backend.launches if s.workload_id == wid]


def world_size(spec: LaunchSpec) -> int:
    return int(spec.env[E.CORRAL_WORLD_SIZE])


def worlds(rig: Rig, group: str) -> list[tuple[float, int]]:
    with rig.store.read() as c:
        return [(e.at, int(e.data["world_size"])) for e in W.list_events(c, workload_id=group)
                if e.reason == E.ELASTIC_WORLD and e.data.get("started", True)]


def submit_elastic(rig: Rig, **fields: Any) -> str:
    return rig.submit(name="el", elastic=ELASTIC, **fields)


def test_starts_at_min_when_only_min_fits_then_grows_no_sooner_than_the_interval(rig: Rig) -> None:
    blocker = rig.submit(name="blk", gpus=2, workers=3)  # 6 of 8 GPUs
    rig.step(2)
    job = submit_elastic(rig)
    rig.step(3)
    assert rig.state(job) == "running"
    [first] = launches_of(rig, job)
    assert first.workers == 2 and world_size(first) == 2
    assert first.env[E.CORRAL_RANK_OFFSET] == "0"
    extra = rig.get(f"{job}-e1")
    assert extra.state == "pending"

    rig.backend.finish(blocker)  # 6 GPUs free now; the job started ~3 s ago, interval 30 s
    rig.step(10)
    assert len(launches_of(rig, job)) == 1, "grew before resize_interval had passed"
    assert rig.get(f"{job}-e1").reason_code == E.RESIZE_WAIT

    rig.step(30)  # past the interval: both extras placed, the gang restarted with the world of 4
    gang = launches_of(rig, job)
    assert len(gang) == 2 and world_size(gang[-1]) == 4
    # one attempt on (a resize), no restart spent
    assert gang[-1].attempt == gang[0].attempt + 1 and rig.get(job).restart_count == 0
    assert any(s.workload_id == job and s.reason.startswith("resized") for s in rig.backend.stops)
    e1, e2 = launches_of(rig, f"{job}-e1")[-1], launches_of(rig, f"{job}-e2")[-1]
    assert {world_size(e1), world_size(e2)} == {4}
    assert sorted([e1.env[E.CORRAL_RANK_OFFSET], e2.env[E.CORRAL_RANK_OFFSET]]) == ["2", "3"]
    # the gang went back to the devices it had (held for it while it checkpointed)
    assert {a.node_id for a in gang[0].assignments} == {a.node_id for a in gang[1].assignments}
    assert gang[1].env[E.CORRAL_ELASTIC_RENDEZVOUS] == e1.env[E.CORRAL_ELASTIC_RENDEZVOUS]
    assert e1.checkpoint_dir == gang[1].checkpoint_dir  # one directory for the whole world

    rig.step(40)  # settled: no more resizes
    sizes = worlds(rig, job)
    assert [s for _, s in sizes] == [2, 4]
    assert sizes[1][0] - sizes[0][0] >= 30


def borrowing_job(rig: Rig) -> str:
    """q (quota 4) runs an elastic job of 2 to 8 on all 8 GPUs, 4 of them other's (quota 4)."""
    with rig.store.write() as c:
        P.upsert_queue(c, Queue("q", quota_gpus=4))
        P.upsert_queue(c, Queue("other", quota_gpus=4))
    rig.submissions.invalidate()
    job = rig.submit(name="el", elastic={"min_workers": 2, "max_workers": 8,
                                         "resize_interval": 5})
    rig.step(10)  # 4 at once (q's quota), the 4 more it borrows after the interval
    assert world_size(launches_of(rig, job)[-1]) == 8
    return job


def submit_owner(rig: Rig, workers: int = 1) -> str:
    return rig.submissions.submit(WorkloadSpec.model_validate({
        "name": "own", "queue": "other", "gpus": 1, "workers": workers, "cpu": 0.1,
        "memory": 64, "command": ["run"]}), "bob", rig.clock.now())[0].id


def test_reclaim_takes_the_extras_first_and_the_gang_goes_on_at_min(rig: Rig) -> None:
    job = borrowing_job(rig)
    gang_launches = len(launches_of(rig, job))
    owners = [submit_owner(rig) for _ in range(4)]  # other takes back its 4 GPUs
    rig.step(15)
    assert {rig.state(o) for o in owners} == {"running"}
    reclaimed = [s.workload_id for s in rig.backend.stops if s.reason.startswith("reclaimed")]
    assert len(reclaimed) == 4 and all(w.startswith(f"{job}-e") for w in reclaimed)
    assert "Reclaim" not in {r for _, _, r in rig.transitions(job)}
    # the gang was never evicted: it restarted once, with its grace, into the world of 4
    assert len(launches_of(rig, job)) == gang_launches + 1
    assert world_size(launches_of(rig, job)[-1]) == 4
    assert [s for _, s in worlds(rig, job)][-1] == 4


def test_a_gang_reclaiming_takes_the_extras_first(rig: Rig) -> None:
    job = borrowing_job(rig)
    submit_owner(rig, workers=4)
    rig.step(15)
    assert "Reclaim" not in {r for _, _, r in rig.transitions(job)}


def test_the_extras_are_cancelled_when_the_gang_ends(rig: Rig) -> None:
    rig.submit(name="blk", gpus=2, workers=3)
    rig.step(2)
    job = submit_elastic(rig)
    rig.step(3)
    rig.backend.finish(job)
    rig.step(3)
    assert rig.state(job) == "succeeded"
    assert {rig.state(f"{job}-e1"), rig.state(f"{job}-e2")} == {"cancelled"}


def test_extras_wait_for_their_gang(rig: Rig) -> None:
    """A gang that does not fit leaves its extras waiting: they never hold GPUs alone."""
    rig.submit(name="blk", gpus=4, workers=2)  # the whole pool
    rig.step(2)
    job = submit_elastic(rig)
    rig.step(5)
    assert rig.state(job) == "pending"
    assert rig.get(f"{job}-e1").reason_code == E.CORE_WAIT
    assert not launches_of(rig, f"{job}-e1")


def test_dry_run_says_the_sizes(rig: Rig) -> None:
    rig.submit(name="blk", gpus=2, workers=3)
    rig.step(2)
    spec = WorkloadSpec.model_validate({"name": "el", "queue": "q", "gpus": 1, "cpu": 0.1,
                                        "memory": 64, "command": ["run"], "elastic": ELASTIC})
    out = rig.submissions.dry_run(spec, rig.clock.now())
    assert out.outcome == "start"
    assert any("2 to 4 workers; would start now with 2 workers" in n for n in out.notes), out.notes


def test_dry_run_places_no_extra_while_the_gang_waits(rig: Rig) -> None:
    """One GPU free: an extra would fit, the core gang of 2 does not; the live loop holds the
    extras for their gang (ElasticWaitsForGang), so the dry run's placements list none."""
    rig.submit(name="blk", gpus=1, workers=7)
    rig.step(2)
    spec = WorkloadSpec.model_validate({"name": "el", "queue": "q", "gpus": 1, "cpu": 0.1,
                                        "memory": 64, "command": ["run"], "elastic": ELASTIC})
    out = rig.submissions.dry_run(spec, rig.clock.now())
    assert out.outcome == "pending"
    assert out.placements == {}
    assert out.reason is not None
    assert any("would wait: its core gang of 2 does not fit now" in n for n in out.notes)


def last_world(rig: Rig, group: str) -> dict[str, Any]:
    with rig.store.read() as c:
        return [e.data for e in W.list_events(c, workload_id=group)
                if e.reason == E.ELASTIC_WORLD][-1]


def generation(spec: LaunchSpec) -> int:
    return int(spec.env[E.CORRAL_ELASTIC_GENERATION])


RETRY_3 = {"restart_on": [{"exit_code": [3]}], "max_restarts": 1, "restart_backoff": 0}


def test_a_failed_extra_is_started_again_within_the_policy_into_a_new_world(rig: Rig) -> None:
    """e1 exits 3, which its job's restart_on retries: it is placed again in the same step,
    which the members alone do not show; the world is renewed all the same, so its peers
    rendezvous with it again, and the restart is counted on e1 (its max_restarts bounds it)."""
    job = submit_elastic(rig, **RETRY_3)
    rig.step(5)
    assert last_world(rig, job)["world_size"] == 4
    e1 = f"{job}-e1"
    rig.backend.fail(e1, exit_code=3)
    rig.step(5)
    assert (rig.state(e1), rig.get(e1).restart_count) == ("running", 1)
    world = last_world(rig, job)
    assert (world["world_size"], world["generation"], world["rejoined"]) == (4, 2, [e1])
    for member in (job, e1, f"{job}-e2"):  # every member runs in generation 2
        assert generation(launches_of(rig, member)[-1]) == 2, member
    assert rig.get(job).restart_count == 0  # the peers' restart is a resize: none spent
    rig.step(40)
    assert last_world(rig, job)["generation"] == 2  # settled

    rig.backend.fail(e1, exit_code=3)  # its one restart is spent: e1 is gone, the job goes on
    rig.step(5)
    assert (rig.state(e1), rig.get(e1).reason_code) == ("failed", "RestartsExhausted")
    assert (last_world(rig, job)["world_size"], rig.state(job)) == (3, "running")


def test_an_extra_failure_its_policy_does_not_retry_shrinks_the_world(rig: Rig) -> None:
    job = submit_elastic(rig)
    rig.step(5)
    rig.backend.fail(f"{job}-e1", exit_code=3)
    rig.step(5)
    assert rig.get(f"{job}-e1").reason_code == "NotRetried"
    assert (last_world(rig, job)["world_size"], rig.state(job)) == (3, "running")


def test_a_core_gang_restarted_after_a_failure_takes_its_extras_into_a_new_world(
        rig: Rig) -> None:
    """The gang's stop takes its extras with it in the same step (never alone on their GPUs);
    placed again, the gang waits one cycle for them, and all start in generation 2."""
    job = submit_elastic(rig, **RETRY_3)
    rig.step(5)
    rig.backend.fail(job, worker=0, exit_code=3)
    for _ in range(5):
        rig.step()
        assert alone(rig, job, 2) == []
    assert rig.get(job).restart_count == 1
    assert last_world(rig, job)["rejoined"][0] == job
    assert {generation(launches_of(rig, m)[-1]) for m in (job, f"{job}-e1", f"{job}-e2")} == {2}
    assert last_world(rig, job)["world_size"] == 4


def move(rig: Rig, wid: str, rule: str = "Consolidate") -> str:
    """Apply, as the loop applies a consolidation's plan, a move of running `wid` to a free GPU
    on the node it does not run on (evicted with `rule`, nominated there); that node."""
    now = rig.clock.now()
    with rig.store.read() as c:
        snap = load_snapshot(c, now, SpecCache())
        placed = W.assignments_of(c, [(r.id, r.attempt) for r in snap.records.values()
                                       if r.state == "running"])
    here = placed[(wid, rig.get(wid).attempt)][0].node_id
    other = next(n.id for n in rig.nodes if n.id != here)
    used = {d for a in itertools.chain(*placed.values()) if a.node_id == other for d in a.devices}
    room = (WorkerAssignment(0, other, (min(set(range(4)) - used),), 1000, 0),)
    plan = Plan(now, evictions=(Eviction(wid, "q", rule, "x", "moved"),),
                nominations=(Nomination(wid, room, 100, 64),))
    rig.loop.leadership.ensure(now)
    with rig.store.write() as c:
        apply_plan(c, snap, plan, now, lambda c: rig.loop.leadership.fence(c, now),
                   nomination_s=30.0)
    return other


def test_an_extra_moved_by_consolidation_keeps_its_place_in_the_world(rig: Rig) -> None:
    job = submit_elastic(rig)
    rig.step(5)
    e1 = f"{job}-e1"
    assert [s for _, s in worlds(rig, job)] == [4]
    there = move(rig, e1)
    rig.step(5)  # e1 stops, is requeued and placed on its room; its peers restart once
    assert [s for _, s in worlds(rig, job)] == [4, 4], "shrank and grew for a move"
    back = launches_of(rig, e1)[-1]
    assert {a.node_id for a in back.assignments} == {there} and generation(back) == 2
    assert [generation(s) for s in launches_of(rig, job)] == [1, 2]
    assert rig.state(e1) == "running" and rig.get(e1).restart_count == 0
    rig.step(40)
    assert len(worlds(rig, job)) == 2  # settled


def test_an_extra_taken_does_not_come_back_before_the_interval(rig: Rig) -> None:
    """A shrink starts the interval for the member that left too: requeued after its eviction,
    it keeps the hold, so the plan that runs before the next elastic step cannot place it
    back at once (here its nominated room is free: it would be, 4 -> 3 -> 4 within 5 s)."""
    job = submit_elastic(rig)
    rig.step(5)
    move(rig, f"{job}-e1", rule="Preempt")
    rig.step(5)
    assert [s for _, s in worlds(rig, job)] == [4, 3]
    rig.step(40)
    sizes = worlds(rig, job)
    assert [s for _, s in sizes] == [4, 3, 4]
    assert sizes[2][0] - sizes[1][0] >= ELASTIC["resize_interval"]


# --- the rule alone (pure) ---------------------------------------------------------------------

SPEC = WorkloadSpec.model_validate({"name": "el", "queue": "q", "gpus": 1, "command": ["x"],
                                    "elastic": ELASTIC})


def row(wid: str, state: str, stop: str | None = None) -> WorkloadRecord:
    return WorkloadRecord(seq=1, id=wid, group_id="g", name="el", queue="q", user="u",
                          kind="job", spec={"elastic": ELASTIC}, state=state,
                          reason_code="", reason_message="", not_before=0.0, submitted_at=0.0,
                          attempt=0, restart_count=0, version=1, started_at=None,
                          finished_at=None, stop_reason=stop, stop_message="", exit_code=None)


@pytest.mark.parametrize(("rows", "known", "members", "stopped"), [
    ([row("g", "running"), row("g-e1", "pending")], ("g",), None, []),
    ([row("g", "running"), row("g-e1", "scheduled")], ("g",), ("g", "g-e1"), ["g"]),
    ([row("g", "running"), row("g-e1", "running", stop="Reclaim")], ("g", "g-e1"), ("g",),
     ["g"]),
    ([row("g", "scheduled"), row("g-e1", "scheduled")], None, ("g", "g-e1"), []),
], ids=["pending-extra-no-change", "grow", "shrink-by-reclaim", "first-start"])
def test_decide(rows: list[WorkloadRecord], known: tuple[str, ...] | None,
                members: tuple[str, ...] | None, stopped: list[str]) -> None:
    world = None if known is None else E.World(1, known, 0.0)
    d = E.decide("g", rows, world, (), SPEC, 100.0)
    assert (d.world.members if d.world else None) == members
    assert [r.id for r in d.stop] == stopped


def test_extras_rank_below_every_job() -> None:
    assert E.extra_priority(1000) < -1000
    assert E.extra_priority(0) < E.extra_priority(5)
    assert E.World(3, ("g", "g-e2", "g-e5"), 0.0).rank_offset("g-e5", 2) == 3


def test_a_new_leader_goes_on_from_the_stored_world(rig: Rig) -> None:
    job = submit_elastic(rig)
    rig.step(5)
    assert [s for _, s in worlds(rig, job)] == [4]
    rig.clock.advance(20)  # the old leader's lease runs out
    rig.loop = rig.new_loop(rig.backend, holder="second")
    rig.step(10)
    assert [s for _, s in worlds(rig, job)] == [4]  # nothing restarted
    assert len(launches_of(rig, job)) == 1


def test_a_dependent_of_an_elastic_job_follows_its_gang(rig: Rig) -> None:
    """The job's group is its core gang: extras that never ran (cancelled when the gang ended)
    do not make `depends_on: succeeded` unmeetable."""
    rig.submit(name="blk", gpus=2, workers=3)
    rig.step(2)
    job = submit_elastic(rig)
    rig.step(3)
    after = rig.submit(name="eval", gpus=0, depends_on=[{"id": job}])
    rig.backend.finish(job)
    rig.step(5)
    assert rig.state(f"{job}-e1") == "cancelled"
    assert rig.state(after) in ("running", "succeeded")
    assert rig.get(f"{job}-e1").group_id == f"{job}-extras"


def test_a_member_on_its_way_back_that_is_taken_leaves_the_world() -> None:
    rows = [row("g", "running"), row("g-e1", "running", stop="Reclaim")]
    d = E.decide("g", rows, E.World(2, ("g", "g-e1"), 0.0), {"g-e1"}, SPEC, 100.0)
    assert d.world is not None and d.world.members == ("g",)


# --- its place among the control modules --------------------------------------------------------

CONTROL = Path(E.__file__).parent


def control_imports(module: str) -> set[str]:
    """The corral.control modules `module` imports, anywhere in its file (ast)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse((CONTROL / f"{module}.py").read_text())):
        if isinstance(node, ast.ImportFrom) and node.module == "corral.control":
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("corral.control."):
            out.add(node.module.split(".")[2])  # type: ignore[union-attr]
        elif isinstance(node, ast.Import):
            out |= {a.name.split(".")[2] for a in node.names
                    if a.name.startswith("corral.control.")}
    return {m for m in out if (CONTROL / f"{m}.py").exists()}


def test_elastic_imports_at_the_top_and_nothing_it_imports_imports_it_back() -> None:
    """apply -> snapshot -> elastic and act -> elastic: elastic reads what it needs of them
    from modules below (checkpoint_dirs, nomination_hold), so no import hides in a function."""
    tree = ast.parse((CONTROL / "elastic.py").read_text())
    top = {id(n) for n in tree.body}
    hidden = [n.lineno for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom)
              and id(n) not in top]
    assert hidden == [], f"imports inside functions at lines {hidden}"
    seen, todo = set(), list(control_imports("elastic"))
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo += control_imports(m)
    assert "elastic" not in seen, "an import circle through corral.control.elastic"


def test_a_move_by_corral_is_not_a_shrink() -> None:
    """Consolidation moves e1 (a one-worker extra is the first it moves): the world keeps it,
    its peers restart once into the next generation, and it comes back to that generation on
    its new devices. Before: a shrink, then a growth resize_interval later, two restarts."""
    rows = [row("g", "running"), row("g-e1", "running", stop="Consolidate")]
    old = E.World(1, ("g", "g-e1"), 0.0, attempts=(0, 0))
    d = E.decide("g", rows, old, (), SPEC, 100.0)
    assert d.world is not None and d.world.members == ("g", "g-e1")
    assert ([r.id for r in d.stop], d.moving, d.world.attempts) == (["g"], ("g-e1",), (1, 1))
    # the next steps: on its way (still stopping, then requeued), then placed again: no resize
    requeued = dataclasses.replace(rows[1], state="pending", stop_reason=None, attempt=1)
    for e1 in (rows[1], requeued, dataclasses.replace(requeued, state="scheduled")):
        g = dataclasses.replace(rows[0], state="scheduled", attempt=1)
        assert E.decide("g", [g, e1], d.world, d.moving, SPEC, 101.0).world is None, e1.state


def test_every_resize_within_the_interval_is_forced() -> None:
    """The rule over many steps (pure, each decision applied as the control step applies it):
    an extra that comes and goes every second never restarts the world more often than one
    growth per resize_interval, plus one shrink for each time it was taken."""
    known, taken, resizes = None, 0, []
    e1 = row("g-e1", "pending")
    for t in range(0, 120):
        if t % 2 == 0:  # the core places it whenever it may (its hold ends)
            e1 = dataclasses.replace(e1, state="scheduled" if e1.not_before <= t else "pending",
                                     stop_reason=None)
        elif e1.state == "scheduled":  # and an owner takes it back the next second
            e1, taken = dataclasses.replace(e1, stop_reason="Reclaim"), taken + 1
        d = E.decide("g", [row("g", "running"), e1], known, (), SPEC, float(t))
        if d.world is not None:
            known = d.world
            resizes.append((t, d.world.size(2)))
        if e1.stop_reason == "Reclaim":
            e1 = dataclasses.replace(e1, state="pending", stop_reason=None)
        if e1.state == "pending":
            e1 = dataclasses.replace(e1, not_before=d.hold_until)
    grows = [t for (_, m), (t, n) in itertools.pairwise(resizes) if n > m]
    assert all(b - a >= ELASTIC["resize_interval"] for a, b in itertools.pairwise(grows))
    assert len(resizes) - 1 <= len(grows) + taken
    assert 3 <= len(grows) <= 120 // ELASTIC["resize_interval"] + 1


# --- extras never hold GPUs without their core gang (issue 13) ---------------------------------

PLACED = ("scheduled", "starting", "running")


def alone(rig: Rig, job: str, extras: int) -> list[str]:
    """Extras placed or running, and not asked to stop, while their core gang is not placed (or
    is stopping): in the store, or alive on the backend."""
    core = rig.get(job)
    if core.state in PLACED and core.stop_reason is None:
        return []
    live = {wid for wid, _ in rig.backend.live_attempts()}
    rows = [rig.get(f"{job}-e{k}") for k in range(1, extras + 1)]
    return [r.id for r in rows if r.stop_reason is None and (r.state in PLACED or r.id in live)]


def test_extras_that_fit_while_the_gang_does_not_never_run_alone(rig: Rig) -> None:
    """Issue 13, found with this very case: a blocker of 2 x 3 GPUs leaves one GPU on each
    node; the core gang of 3 does not fit, extras of one GPU do. Step by step as the loop
    applies its plans, from the cycle the job is submitted in: no extra is ever placed or
    launched while the gang is not; they wait with ElasticWaitsForGang. Once the blocker
    ends the gang starts, and the job grows to 5 as before."""
    blocker = rig.submit(name="blk", gpus=3, workers=2)
    rig.step(2)
    job = rig.submit(name="el", elastic={"min_workers": 3, "max_workers": 5,
                                         "resize_interval": 10})
    extras = [f"{job}-e1", f"{job}-e2"]
    assert {rig.get(x).reason_code for x in extras} == {E.CORE_WAIT}  # held from submission
    for _ in range(6):
        rig.step()
        assert alone(rig, job, 2) == [], f"extras placed without their core gang at t={rig.clock.now()}"
    assert rig.state(job) == "pending"
    assert [(rig.state(x), rig.get(x).reason_code) for x in extras] == [("pending", E.CORE_WAIT)] * 2
    assert not any(s.workload_id in extras for s in rig.backend.launches)
    assert not [t for x in extras for t in rig.transitions(x) if t[1] != "pending"], "placed"

    rig.backend.finish(blocker)
    for _ in range(40):
        rig.step()
        assert alone(rig, job, 2) == []
    assert rig.state(job) == "running"
    assert {rig.state(x) for x in extras} == {"running"}
    assert last_world(rig, job)["world_size"] == 5


def test_an_evicted_gang_takes_its_extras_with_it_and_they_come_back_with_it(rig: Rig) -> None:
    """The core gang preempted (requeued, pending): its running extras are asked to stop in the
    step that sees it, held with ElasticWaitsForGang (true: the gang waits); placed again, the
    gang waits one cycle for them and the world is whole again."""
    job = submit_elastic(rig)
    rig.step(5)
    extras = [f"{job}-e1", f"{job}-e2"]
    assert last_world(rig, job)["world_size"] == 4
    move(rig, job, rule="Preempt")  # applied as the loop applies a plan's eviction
    rig.loop.step()
    assert {rig.get(x).stop_reason for x in extras} == {E.RESIZED}  # the same step
    blocked = False
    for _ in range(8):
        rig.step()
        assert alone(rig, job, 2) == []
        if rig.state(job) == "pending":
            blocked = True
            assert {(rig.state(x), rig.get(x).reason_code) for x in extras} <= {
                ("pending", E.CORE_WAIT), ("pending", E.GANG_PLACED), ("preempted", E.RESIZED)}
    assert blocked or rig.get(job).attempt > 1
    assert rig.state(job) == "running" and {rig.state(x) for x in extras} == {"running"}
    world = last_world(rig, job)
    assert world["world_size"] == 4 and world["generation"] >= 2


@pytest.mark.parametrize("core", ["pending", "running-stopping"])
def test_decide_sends_extras_placed_without_their_gang_back(core: str) -> None:
    gang = row("g", "pending") if core == "pending" else row("g", "running", stop="Preempt")
    rows = [gang, row("g-e1", "scheduled"), row("g-e2", "running")]
    d = E.decide("g", rows, E.World(1, ("g", "g-e2"), 0.0), (), SPEC, 100.0)
    assert ([r.id for r in d.unplace], [r.id for r in d.alone]) == (["g-e1"], ["g-e2"])
    assert (d.hold_reason, d.world) == (E.CORE_WAIT, None)


def test_decide_holds_back_a_gang_placed_while_its_extras_wait_for_it() -> None:
    held = dataclasses.replace(row("g-e1", "pending"), not_before=1e18, reason_code=E.CORE_WAIT)
    d = E.decide("g", [row("g", "scheduled"), held], None, (), SPEC, 100.0)
    assert (d.defer.id if d.defer else None, [r.id for r in d.release]) == ("g", ["g-e1"])
    # placed again a cycle later, the extra released: no second wait, one world of both
    released = dataclasses.replace(held, state="scheduled", not_before=0.0)
    d = E.decide("g", [row("g", "scheduled"), released], None, (), SPEC, 101.0)
    assert d.defer is None and d.world is not None and d.world.members == ("g", "g-e1")


def test_a_step_decides_only_the_elastic_jobs_the_change_feed_showed(
        rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    """Cost grows with what changed: once two jobs' worlds are settled, work of other jobs
    coming and going makes the elastic step decide nothing; a change to one job's row decides
    that job alone."""
    jobs = [rig.submit(name="el", elastic={"min_workers": 1, "max_workers": 2,
                                           "resize_interval": 5}) for _ in range(2)]
    rig.step(10)
    decided: list[str] = []
    real = E.decide

    def counting(group_id: str, *args: Any) -> E.Decision:
        decided.append(group_id)
        return real(group_id, *args)

    monkeypatch.setattr(E, "decide", counting)
    other = rig.submit(name="other", gpus=1)
    rig.step(3)
    rig.backend.finish(other)
    rig.step(3)
    assert rig.state(other) == "succeeded" and decided == []
    rig.backend.fail(f"{jobs[0]}-e1", exit_code=3)  # not retried: its world shrinks
    rig.step(2)
    assert set(decided) == {jobs[0]}
