"""Reconcile's bulk writes (`corral.control.reconcile._write`): gangs that started or succeeded
are written in bulk, and when a bulk write misses a row the cycle is written again row by row
with the same outcome; a bulk transition's events are stored a chunk at a time, in order."""

from __future__ import annotations

import pytest

from corral.control import lifecycle as L
from corral.store import Store
from corral.store import workloads as W

from .rig import Rig


def _placement_states(rig: Rig, wid: str) -> list[str]:
    rec = rig.get(wid)
    with rig.store.read() as c:
        return [p.state for p in W.placements_of(c, wid, rec.attempt)]


def _missing_bulk(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every bulk transition reports a row it could not write: reconcile rolls back and
    writes each row alone."""
    monkeypatch.setattr(L, "transition_many", lambda *args, **kwargs: False)


@pytest.mark.parametrize("bulk", [True, False], ids=["bulk", "row-by-row"])
def test_started_gangs_are_running_with_their_message_either_way(
        store: Store, monkeypatch: pytest.MonkeyPatch, bulk: bool) -> None:
    rig = Rig(store)
    ids = [rig.submit(name=f"w{i}") for i in range(3)] + [rig.submit(name="pair", gpus=2)]
    rig.step()  # placed and launched: starting
    assert [rig.state(w) for w in ids] == ["starting"] * 4
    if not bulk:
        _missing_bulk(monkeypatch)
    rig.step()  # the fake reports them running
    for wid in ids:
        rec = rig.get(wid)
        assert (rec.state, rec.reason_code, rec.reason_message) == (
            "running", L.STARTED, "1 worker(s) running")
        assert rec.started_at is not None
        assert _placement_states(rig, wid) == ["running"]
        assert rig.transitions(wid)[-1] == ("starting", "running", L.STARTED)


@pytest.mark.parametrize("bulk", [True, False], ids=["bulk", "row-by-row"])
def test_succeeded_gangs_end_either_way(store: Store, monkeypatch: pytest.MonkeyPatch,
                                        bulk: bool) -> None:
    rig = Rig(store)
    ids = [rig.submit(name=f"w{i}") for i in range(3)]
    rig.step(2)  # running
    for wid in ids:
        rig.backend.finish(wid)
    if not bulk:
        _missing_bulk(monkeypatch)
    rig.step()
    for wid in ids:
        rec = rig.get(wid)
        assert (rec.state, rec.exit_code) == ("succeeded", 0)
        assert _placement_states(rig, wid) == ["ended"]
        assert rig.transitions(wid)[-1][:2] == ("running", "succeeded")


def test_a_bulk_transitions_events_go_a_chunk_at_a_time_in_order(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    rig = Rig(store)
    ids = [rig.submit(name=f"w{i}") for i in range(5)]
    rig.step()
    calls: list[int] = []
    append = W.append_events

    def counted(conn, events):  # type: ignore[no-untyped-def]
        if any(e.get("to_state") == "running" for e in events):  # the starts' transition
            calls.append(len(events))
        append(conn, events)

    monkeypatch.setattr(W, "BULK_CHUNK", 2)
    monkeypatch.setattr(W, "append_events", counted)
    rig.step()  # five gangs start: one bulk transition
    assert calls == [2, 2, 1]
    with store.read() as c:
        started = [e.workload_id for e in W.list_events(c) if e.kind == "transition"
                   and e.to_state == "running"]
    assert started == ids  # one event each, in the order of the moves
