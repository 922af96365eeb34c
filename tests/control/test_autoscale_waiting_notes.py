"""The autoscaler's sentence for work the pool's nodes can never run, told on the workload
(control/waiting_notes.py): once per change, figures-only changes at most every `repeat_s`,
nothing for work the core's own sentence already tells truly (InsufficientCapacity), and
nothing remembered for work that no longer waits."""

from __future__ import annotations

from tests.control.rig import Rig

from corral.autoscale.pool import Waiting
from corral.autoscale.sentences import WaitKind, WaitNote
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
        notes.tell(store, float(t), off_spot, {a: _note(note), b: _note("capacity planned now "
                                                                       "for it: y")})
    assert _told(store, a) == [(NO_OFFER_SERVES, none), (RENTING, planned)]
    assert _told(store, b) == []  # InsufficientCapacity: the core's sentence is true
    notes.tell(store, 700.0, off_spot, {a: _note(later)})  # back to none, later: told again
    notes.tell(store, 800.0, off_spot, {a: _note(none)})  # figures only, within repeat_s: not
    assert _told(store, a)[2:] == [(NO_OFFER_SERVES, later)]
    notes.tell(store, 900.0, [], {})
    assert notes.told == {}  # no longer waiting: forgotten


def _note(sentence: str) -> WaitNote:
    """As the autoscaler's decisions make them (`sentences.no_offer`, `renting`)."""
    kind = WaitKind.NO_OFFER_SERVES if sentence.startswith("no offer") else WaitKind.RENTING
    return WaitNote(kind, sentence)


def test_the_event_reason_is_the_decisions_kind_not_its_wording(store: Store) -> None:
    """The reason comes from the note's kind: a sentence that does not start "no offer" (or
    one that does) is told under the kind the decision gave it, word for word."""
    rig = Rig(store)
    a, b, c = rig.submit(), rig.submit(), rig.submit()
    waiting = [Waiting(Workload(w, "q", WorkerResources(gpus=1)), R.CAPACITY_UNAVAILABLE)
               for w in (a, b, c)]
    said = {a: WaitNote(WaitKind.NO_OFFER_SERVES, "nothing rents spot here"),
            b: WaitNote(WaitKind.RENTING, "no offer was cheaper: renting g6.xlarge"),
            c: WaitNote(WaitKind.NOT_RENTING, "room is held for it (nominated)")}
    told = WaitingNotes().tell(store, 0.0, waiting, said)
    assert sorted(told) == sorted([(a, NO_OFFER_SERVES, "nothing rents spot here"),
                                   (b, RENTING, "no offer was cheaper: renting g6.xlarge"),
                                   (c, "NotRenting", "room is held for it (nominated)")])
