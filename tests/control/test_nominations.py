"""Nominations in the control plane: a move is applied as its eviction only, the room it was
placed in is stored for it (bounded in time), the next cycles hold it, and the moved workload
is placed there once its stop completes (`corral.core.nominations`, `corral.store.nominations`).
"""

from __future__ import annotations

import pytest

from corral.control import apply_plan, cancel
from corral.control.apply import nomination_hold_s
from corral.control.snapshot import SpecCache, load_snapshot
from corral.core.model import Nomination, WorkerAssignment
from corral.core.plan import Eviction, Placement, Plan
from corral.store import Store
from corral.store import workloads as W
from corral.store.nominations import load_nominations

from .rig import Rig


@pytest.fixture
def rig(store: Store) -> Rig:
    return Rig(store)


def _move(rig: Rig, wid: str) -> tuple[WorkerAssignment, ...]:
    """Apply, as a plan would, a move of running `wid` to the node it does not run on."""
    now = rig.clock.now()
    with rig.store.read() as c:
        snap = load_snapshot(c, now, SpecCache())
    here = rig.get(wid)
    with rig.store.read() as c:
        (where,) = W.assignments_of(c, [(wid, here.attempt)]).values()
    other = next(n.id for n in rig.nodes if n.id != where[0].node_id)
    room = (WorkerAssignment(0, other, (2, 3), 1000, where[0].gpu_memory_mib_per_device),)
    plan = Plan(now, placements=(Placement(wid, "q", room),),
                evictions=(Eviction(wid, "q", "Consolidate", "other", "moved"),),
                nominations=(Nomination(wid, room, 100, 64),))
    rig.loop.leadership.ensure(now)
    with rig.store.write() as c:
        applied = apply_plan(c, snap, plan, now, lambda c: rig.loop.leadership.fence(c, now),
                             nomination_s=30.0)
    assert applied.stopping == [wid] and applied.scheduled == [] and applied.nominations == 1
    return room


def test_a_moved_workload_is_placed_on_its_nominated_room_once_it_stopped(rig: Rig) -> None:
    x = rig.submit(name="x", gpus=2)
    rig.step(2)
    assert rig.state(x) == "running"
    room = _move(rig, x)
    with rig.store.read() as c:
        stored = load_nominations(c, rig.clock.now())
        snap = load_snapshot(c, rig.clock.now(), SpecCache())
    assert [(n.workload_id, n.assignments, n.until) for n in stored] == [
        (x, room, rig.clock.now() + 30.0)]
    assert snap.state.nominations == stored  # x is being stopped: still on its way
    # work that arrives while x stops does not take x's room (one free GPU pair per node)
    others = [rig.submit(name=f"o{i}", gpus=2) for i in range(2)]
    for _ in range(20):
        rig.step()
        if rig.get(x).attempt == 1 and rig.state(x) != "pending":
            break
    got = rig.get(x)
    assert got.state in ("scheduled", "starting", "running") and got.attempt == 1
    with rig.store.read() as c:
        assert W.assignments_of(c, [(x, 1)])[(x, 1)] == room
        assert load_nominations(c, rig.clock.now()) == ()  # placed: nothing held any more
        for o in others:
            rec = W.get_workload(c, o)
            assert rec is not None
            if rec.state != "pending":
                (held,) = W.assignments_of(c, [(o, rec.attempt)]).values()
                assert not any(a.node_id == room[0].node_id and set(a.devices) & {2, 3}
                               for a in held)


def test_a_nomination_is_forgotten_when_its_workload_is_cancelled_or_it_expires(
        rig: Rig) -> None:
    x = rig.submit(name="x", gpus=2)
    rig.step(2)
    _move(rig, x)
    now = rig.clock.now()
    with rig.store.read() as c:
        assert len(load_snapshot(c, now, SpecCache()).state.nominations) == 1
        assert load_snapshot(c, now + 31.0, SpecCache()).state.nominations == ()  # expired
    cancel(rig.store, x, now, "ann")
    with rig.store.read() as c:
        assert load_snapshot(c, now, SpecCache()).state.nominations == ()


def test_the_hold_is_the_stop_grace_plus_a_margin() -> None:
    assert nomination_hold_s(30.0, 1.0) == 60.0
    assert nomination_hold_s(5.0, 20.0) == 65.0
