"""Reconcile of what changed (`corral.control.reconcile.BackendView`), on the fake backend's
`poll_changes`: the loop's view of the backend stays the backend's full report through random
histories, a cycle with nothing new looks at nothing, and what a delta says (an attempt ended,
one released, one stopped) is acted on as the full report would have it."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from corral.backends.fake import FakeBackend
from corral.store import Store
from corral.store.database import sqlite_url
from corral.testing.histories import ACTIONS, act

from .rig import Rig


class FullPoll(FakeBackend):
    """The same fake without `poll_changes`: the loop reconciles its full report."""

    poll_changes = None  # type: ignore[assignment]


def _view_is_the_report(rig: Rig) -> None:
    """Bring the view up to date with one more delta, then compare it with the world as it is
    (a full poll would advance the world, which is what the delta reports)."""
    backend = rig.loop.backend
    assert isinstance(backend, FakeBackend)
    rig.loop.view._apply(*backend.poll_changes(rig.clock.now()))
    world = {k: [(w.state, w.exit_code) for w in ws] for k, ws in rig.world.workers.items()
             if k not in rig.world.released}
    assert {k: [(s.state, s.exit_code) for s in v] for k, v in rig.loop.view.by_key.items()
            } == world


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(actions=ACTIONS)
def test_the_view_is_the_full_report_after_random_histories(
        tmp_path_factory: pytest.TempPathFactory, actions: list[Any]) -> None:
    store = Store(sqlite_url(tmp_path_factory.mktemp("view") / "corral.db"))
    store.upgrade()
    try:
        rig = Rig(store)
        rig.step()
        for action in actions:
            act(rig, action)
            rig.step()  # the view is the report as of the loop's last poll
            _view_is_the_report(rig)
    finally:
        store.close()


def test_a_cycle_with_nothing_new_looks_at_nothing(store: Store) -> None:
    rig = Rig(store)
    ids = [rig.submit(name=f"w{i}") for i in range(3)]
    rig.step(3)  # placed, launched, running
    assert [rig.state(w) for w in ids] == ["running"] * 3
    report = rig.loop.step()
    assert report.observed == 0  # the backend reported no change
    rig.backend.finish(ids[1])
    report = rig.loop.step()
    assert report.observed == 1  # only the attempt that ended
    assert rig.state(ids[1]) == "succeeded" and rig.state(ids[0]) == "running"
    rig.step()
    assert (ids[1], 0) in rig.world.released and (ids[1], 0) not in rig.loop.view.by_key


def test_the_delta_and_the_full_report_reach_the_same_ends(
        tmp_path_factory: pytest.TempPathFactory) -> None:
    """One history on two stores, one loop per kind of poll: every workload ends the same."""
    ends = []
    for backend_kind in (FakeBackend, FullPoll):
        store = Store(sqlite_url(tmp_path_factory.mktemp("ends") / "corral.db"))
        store.upgrade()
        try:
            rig = Rig(store)
            rig.backend = backend_kind(rig.nodes, world=rig.world, check_capacity=True)
            rig.loop = rig.new_loop(rig.backend)
            ids = []
            for i in range(6):  # apart in time: the order never rests on the random ids
                ids.append(rig.submit(name=f"w{i}", gpus=1 + i % 2, max_restarts=1))
                rig.clock.advance(0.01)
            rig.step(2)
            rig.backend.fail(ids[0])
            rig.backend.finish(ids[1])
            rig.backend.ignore_stop(ids[2])
            rig.backend.lose_node("n1")
            rig.step(3)
            rig.backend.finish(ids[0])
            rig.step(10)
            ends.append([(rig.get(w).name, rig.state(w), rig.get(w).attempt) for w in ids])
        finally:
            store.close()
    assert ends[0] == ends[1]
