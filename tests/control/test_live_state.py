"""The loop's in-memory state, kept current from the change feed, equals a full reload.

Random histories drive a real loop on the fake backend (submissions, steps, workers finishing
and failing, cancellations, cordons, queue edits, a second loop taking over); after every action
the loop's incremental state is compared with a state read from scratch."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import HealthCheck, given, settings

from corral.control.cancellation import cancel
from corral.control.live_state import LiveState
from corral.store import Store
from corral.store import workloads as W
from corral.store.database import sqlite_url
from corral.testing.histories import ACTIONS, act

from .rig import Rig

pytestmark = pytest.mark.slow  # 14 tests, 19 s (-n 2 whole run, 2026-12-05, load 8-32)


def _fresh(store: Store) -> LiveState:
    live = LiveState()
    with store.read() as c:
        live.reload(c)
    return live


def _same(rig: Rig) -> None:
    with rig.store.read() as c:
        rig.loop.live.refresh(c)
    live, fresh = rig.loop.live, _fresh(rig.store)
    assert live.view() == fresh.view()
    assert list(live.records) == list(fresh.records)  # submission order
    assert (live.stopping, live.launching) == (fresh.stopping, fresh.launching)
    now = rig.clock.now()
    assert live.past_deadline(now) == fresh.past_deadline(now)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(actions=ACTIONS)
def test_incremental_state_equals_a_full_reload(tmp_path_factory, actions) -> None:
    store = Store(sqlite_url(tmp_path_factory.mktemp("live") / "corral.db"))
    store.upgrade()
    try:
        rig = Rig(store)
        rig.step()
        for action in actions:
            act(rig, action)
            _same(rig)
    finally:
        store.close()


def test_a_refresh_reads_each_change_once(store: Store) -> None:
    """On either store: a refresh after writes by another writer sees each exactly once."""
    rig = Rig(store)
    ids = [rig.submit(name=f"w{i}") for i in range(5)]
    rig.step()
    live = rig.loop.live
    with store.read() as c:
        live.refresh(c)  # the step's own launches, written after its last read
    seen = dict(live.records)
    cancel(store, ids[0], rig.clock.now(), "ann")
    with store.read() as c:
        changed = live.refresh(c)
    assert changed == {ids[0]}
    assert live.records[ids[0]].stop_reason == "Cancelled"
    assert {k: v for k, v in live.records.items() if k != ids[0]} == {
        k: v for k, v in seen.items() if k != ids[0]}
    with store.read() as c:
        assert live.refresh(c) == set()  # nothing new: nothing read


def test_a_step_with_nothing_to_do_writes_nothing_but_the_lease(store: Store) -> None:
    rig = Rig(store)
    for i in range(3):
        rig.submit(name=f"w{i}")
    rig.step(3)  # placed, launched, running
    with store.read() as c:
        before = W.last_change(c), len(W.list_events(c))
    rig.step(3)
    with store.read() as c:
        assert (W.last_change(c), len(W.list_events(c))) == before
    assert [r.state for r in rig.loop.live.records.values()] == ["running"] * 3


def test_core_forms_from_shared_specs_equal_the_specs_own() -> None:
    """SpecCache parses equal bodies once and copies one spec's core units per record: the
    result is what `to_core` gives for that record (services' replicas included)."""
    from corral.control.snapshot import SpecCache, replica_index
    from corral.control.submission import stored_form
    from corral.spec import WorkloadSpec
    from corral.store.workloads import WorkloadRecord

    bodies = [
        {"name": "s", "queue": "q", "kind": "service", "replicas": 3, "min_replicas": 1,
         "gpus": 1, "command": ["x"]},
        {"name": "j", "queue": "q", "gpus": 2, "workers": 2, "command": ["x"], "priority": 3},
        {"name": "i", "queue": "q", "kind": "interactive", "gpus": 0.5, "command": ["x"],
         "ttl": 60},
    ]
    cache = SpecCache()
    for n, body in enumerate(bodies * 2):  # each body twice: the second copy shares the parse
        spec = WorkloadSpec.model_validate(body)
        group = f"{spec.name}{n}"
        ids = [group] if spec.kind != "service" else [f"{group}-r{i}" for i in range(3)]
        for uid in ids:
            rec = WorkloadRecord(
                seq=n, id=uid, group_id=group, name=spec.name, queue="q", user=f"u{n}",
                kind=str(spec.kind), spec=stored_form(spec), state="pending", reason_code="",
                reason_message="", attempt=0, restart_count=0, version=1, submitted_at=n + 0.5,
                started_at=None, finished_at=None, not_before=0.0, stop_reason=None,
                stop_message="", exit_code=None)
            own = spec.to_core(group, n + 0.5, f"u{n}")[replica_index(rec)]
            assert cache.core(rec) == dataclasses.replace(own, id=uid)


def test_placements_a_step_wrote_are_not_read_back(store: Store,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The plan's placements reach the loop's state from what apply wrote (`LiveState.placed`),
    and a row that moves on within the same attempt (scheduled -> starting -> running) keeps
    them: the store's placements are read only on a reload. They equal what a reload reads."""
    rig = Rig(store)
    ids = [rig.submit(name=f"w{i}", gpus=1 + i % 2) for i in range(4)]
    rig.step()  # first read: a reload
    read_back: list[list[str]] = []
    real = W.current_assignments

    def spy(conn, workload_ids=None):  # type: ignore[no-untyped-def]
        read_back.append(list(workload_ids or ()))
        return real(conn, workload_ids)

    monkeypatch.setattr("corral.control.live_state.W.current_assignments", spy)
    more = [rig.submit(name=f"m{i}") for i in range(2)]
    rig.step(3)  # placed, launched, running
    assert [rig.state(w) for w in ids + more] == ["running"] * 6
    assert read_back == []
    with store.read() as c:
        live = rig.loop.live
        live.refresh(c)
    assert live.assignments == _fresh(store).assignments
    assert set(live.assignments) == set(ids + more)


def test_a_refresh_with_nothing_new_reads_only_the_feeds_heads_and_the_queues(
        store: Store) -> None:
    """A step refreshes after each stage and most stages write nothing: such a refresh asks the
    feed for its heads (one statement) and reads the queues, which are not in the feed, and no
    workload or node row. A queue edit alone is still seen; a write after it is read again."""
    from sqlalchemy import event

    from corral.core.model import Queue
    from corral.store import pool as P

    rig = Rig(store)
    ids = [rig.submit(name=f"w{i}") for i in range(3)]
    rig.step(2)
    live = rig.loop.live
    with store.read() as c:
        live.refresh(c)
    statements: list[str] = []

    def count(conn, cursor, sql, *args):  # type: ignore[no-untyped-def]
        statements.append(sql)

    event.listen(store.engine, "before_cursor_execute", count)
    try:
        generation = live.generation
        with store.read() as c:
            assert live.refresh(c) == set()
        reads = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
        assert len(reads) == 2, reads
        assert live.generation == generation
        with store.write() as c:
            P.upsert_queue(c, Queue("q", quota_gpus=3))
        with store.read() as c:
            assert live.refresh(c) == set()
        assert live.generation == generation + 1
        assert [q.quota_gpus for q in live.queues] == [3]
    finally:
        event.remove(store.engine, "before_cursor_execute", count)
    cancel(store, ids[1], rig.clock.now(), "ann")
    with store.read() as c:
        assert live.refresh(c) == {ids[1]}
    assert live.view() == _fresh(store).view()


def test_a_queue_edit_between_steps_reaches_the_steps_plan(store: Store) -> None:
    """Queues are outside the feed and the loop reads them only at the step's start and before
    its plan: an edit made between two steps is what the next step plans with."""
    from corral.core.model import Queue
    from corral.store import pool as P

    rig = Rig(store)
    rig.submit(name="w0")
    rig.step()
    generation = rig.loop.live.generation
    with store.write() as c:
        P.upsert_queue(c, Queue("q", quota_gpus=5, weight=2.0))
    rig.step()
    assert [(q.quota_gpus, q.weight) for q in rig.loop.live.queues] == [(5, 2.0)]
    assert rig.loop.live.generation > generation


def test_rows_a_step_wrote_reach_the_state_without_a_read_back(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """On either store: what the loop's own transactions wrote to workloads (placed, launched,
    running, ended, stop requests, pending reasons) reaches its state from what was written
    (`LiveState.wrote`), not from reading the rows back; only rows another writer touched
    (a cancel through another Store, as another process would write) are read. After every
    step the state equals a fresh load from the database."""
    from corral.backends.base import WorkerState

    rig = Rig(store)
    ids = [rig.submit(name=f"w{i}", gpus=1 + i % 3) for i in range(6)]
    rig.step()  # first read: a reload
    read: list[str] = []
    real = W.changed_since

    def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
        rows, last = real(*args, **kwargs)
        read.extend(r.id for r in rows)
        return rows, last

    monkeypatch.setattr("corral.control.live_state.W.changed_since", spy)
    for _ in range(3):  # launched, running, and more placed as room allows
        rig.step()
        _same(rig)
    assert read == []
    assert rig.loop.live.read_back == 0
    running = [w for w in ids if rig.state(w) == "running"]
    assert running
    for key, workers in rig.world.workers.items():  # the first running job ends
        if key[0] == running[0]:
            for w in workers:
                w.state, w.exit_code = WorkerState.SUCCEEDED, 0
            rig.world.touch(key)
    rig.step(2)
    _same(rig)
    assert rig.state(running[0]) == "succeeded"
    assert read == []
    other = Store(store.url)  # another process's writes (an API replica): read from the store
    try:
        cancel(other, ids[-1], rig.clock.now(), "ann")
    finally:
        other.close()
    rig.step()
    _same(rig)
    assert ids[-1] in read
    assert rig.loop.live.read_back == 0
