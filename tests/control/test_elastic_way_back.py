"""An elastic job's members on their way back from a resize when the core gang leaves (issue 13).

A resize stops every launched member (`Resized`) and counts it in while it comes back to its
devices (`Elastic.returning`). If the core gang leaves meanwhile (fails and waits for its
restart backoff, is evicted), the world is over: an extra on its way back is held for the gang
like every other extra, so that no plan places it alone. Before the fix it was left out of the
hold (`to_hold` skipped members on their way back), the next plan placed it onto its nominated
devices, and the step after sent it back to waiting: a placement without its gang and an
attempt spent, each time. Held, it lets go of the devices nominated for its relaunch (they
would stay reserved for nobody until the nomination expires).

Fake backend, manual clock, step by step as the control plane applies its plans; the pool of
tests/control/rig.py (2 nodes x 4 GPUs)."""

from __future__ import annotations

import pytest
from tests.control.rig import Rig
from tests.control.test_elastic import ELASTIC, alone, last_world

from corral.control import elastic as E
from corral.store import Store
from corral.store import workloads as W
from corral.store.nominations import load_nominations

RETRY_LATER = {"restart_on": [{"exit_code": [3]}], "max_restarts": 1, "restart_backoff": 20}


@pytest.fixture
def rig(store: Store) -> Rig:
    return Rig(store)


def placements(rig: Rig, wid: str, since: float) -> list[float]:
    """When `wid` was placed (a transition to scheduled) at or after `since`."""
    with rig.store.read() as c:
        return [e.at for e in W.list_events(c, workload_id=wid)
                if e.kind == "transition" and e.to_state == "scheduled" and e.at >= since]


def nominated(rig: Rig) -> set[str]:
    with rig.store.read() as c:
        return {n.workload_id for n in load_nominations(c, rig.clock.now())}


def test_an_extra_on_its_way_back_when_the_gang_leaves_is_held_for_it(rig: Rig) -> None:
    job = rig.submit(name="el", elastic=ELASTIC, **RETRY_LATER)
    rig.step(5)
    e1, e2 = f"{job}-e1", f"{job}-e2"
    assert last_world(rig, job)["world_size"] == 4
    rig.backend.ignore_stop(e1)  # e1 takes its grace (5 s) to checkpoint: on its way back longer
    rig.backend.fail(e2, exit_code=1)  # not retried: the world shrinks, g and e1 stop (Resized)
    for _ in range(3):
        rig.step()
    assert rig.state(job) == "running" and rig.get(e1).stop_reason == E.RESIZED
    assert e1 in rig.loop.elastic.returning
    left = rig.clock.now()
    rig.backend.fail(job, worker=0, exit_code=3)  # retried after 20 s: the gang waits
    gang_waited = 0
    for _ in range(30):
        rig.step()
        assert alone(rig, job, 2) == []
        gang = rig.get(job)
        if gang.state == "pending" and gang.not_before > rig.clock.now():  # its backoff
            gang_waited += 1
            e1_row = rig.get(e1)
            if e1_row.state == "pending":
                assert (e1_row.reason_code, e1_row.not_before) == (E.CORE_WAIT, E.HELD)
                # no world to return to: the device nominated for its relaunch is let go
                assert e1 not in nominated(rig) and e1 not in rig.loop.elastic.returning
    assert gang_waited >= 15  # the backoff: the gang was away, e1 had time to come back alone
    back = placements(rig, job, left)
    assert back, "the gang never came back"
    early = [t for t in placements(rig, e1, left) if t < back[0]]
    assert early == [], f"e1 placed without its core gang at {early}"
    assert rig.state(job) == "running" and rig.state(e1) == "running"
    assert (last_world(rig, job)["world_size"], rig.get(job).restart_count) == (3, 1)
