"""The autoscaler's sentence for work the pool's nodes can never run, told on the workload
(control/waiting_notes.py): once per change, figures-only changes at most every `repeat_s`,
nothing for work the core's own sentence already tells truly (InsufficientCapacity), and
nothing remembered for work that no longer waits."""

from __future__ import annotations

from tests.control.rig import Rig

from corral.autoscale.pool import Waiting
from corral.control.waiting_notes import NO_OFFER_SERVES, RENTING, WaitingNotes
from corral.core import reasons as R
from corral.core.model import WorkerResources, Workload
from corral.store import Store
from corral.store import workloads as W


def _told(store: Store, wid: str) -> list[tuple[str, str]]:
    with store.read() as c:
        return [(e.reason, e.message) for e in W.list_events(c, workload_id=wid)
                if e.reason in (RENTING, NO_OFFER_SERVES)]


def test_each_change_is_told_once_and_figures_only_changes_are_bounded(store: Store) -> None:
    rig = Rig(store)
    a, b = rig.submit(), rig.submit()
    unit = Workload(a, "q", WorkerResources(gpus=1))
    off_spot = [Waiting(unit, R.CAPACITY_UNAVAILABLE),
                Waiting(Workload(b, "q", WorkerResources(gpus=1)), R.INSUFFICIENT_CAPACITY)]
    notes = WaitingNotes(repeat_s=600.0)
    none = "no offer may serve it: x (aws, 0.30/h): failed 1x, next try at t=60"
    later = "no offer may serve it: x (aws, 0.30/h): failed 2x, next try at t=180"
    planned = "capacity planned now for it: 1 x g6.xlarge on-demand in us-east-1a (aws, 0.80/h)"
    for t, note in [(0, none), (30, none), (60, later), (90, planned), (120, planned)]:
        notes.tell(store, float(t), off_spot, {a: note, b: "capacity planned now for it: y"})
    assert _told(store, a) == [(NO_OFFER_SERVES, none), (RENTING, planned)]
    assert _told(store, b) == []  # InsufficientCapacity: the core's sentence is true
    notes.tell(store, 700.0, off_spot, {a: later})  # back to none, later: told again
    notes.tell(store, 800.0, off_spot, {a: none})  # figures only, within repeat_s: not
    assert _told(store, a)[2:] == [(NO_OFFER_SERVES, later)]
    notes.tell(store, 900.0, [], {})
    assert notes.told == {}  # no longer waiting: forgotten
