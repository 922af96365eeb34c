"""depends_on on the control loop (fake backend, manual clock): held with a reason naming the
parent, released by the parent's end, cancelled (in cascade) when it can never be met, checked
at submission; and deciding costs nothing while nothing ends."""

from __future__ import annotations

from typing import Any

import pytest

from corral.control import cancel
from corral.control import workflow as WF
from corral.spec import SpecError, WorkloadSpec
from corral.store import Store
from corral.store import groups as G

from .rig import Rig


@pytest.fixture
def rig(store: Store) -> Rig:
    return Rig(store)


def _after(rig: Rig, parent: str, when: str = "succeeded", **fields: Any) -> str:
    return rig.submit(name=fields.pop("name", "child"),
                      depends_on=[{"id": parent, "when": when}], **fields)


def test_a_dependent_is_held_naming_its_parent_until_it_succeeds(rig: Rig) -> None:
    parent = rig.submit(name="prep")
    child = _after(rig, parent)
    rig.step(3)
    rec = rig.get(child)
    assert (rec.state, rec.reason_code) == ("pending", "WaitingForDependency")
    assert f"waits for {parent} to succeed" in rec.reason_message
    assert [launch.workload_id for launch in rig.backend.launches] == [parent]
    rig.backend.finish(parent)
    rig.step(3)
    assert rig.state(child) == "running"
    assert ("", "pending", "Submitted") in rig.transitions(child)


def test_a_failed_parent_cancels_its_dependents_in_cascade(rig: Rig) -> None:
    parent = rig.submit(name="prep")
    child = _after(rig, parent)
    grandchild = _after(rig, child, name="report")
    rig.step(2)
    rig.backend.fail(parent, exit_code=2)
    rig.step(3)
    for wid, names in ((child, parent), (grandchild, child)):
        rec = rig.get(wid)
        assert (rec.state, rec.reason_code) == ("cancelled", "DependencyNeverMet")
        assert rec.reason_message.startswith(f"depends_on[0]: {names} ended")
        assert "when: succeeded can never be met" in rec.reason_message
    assert len(rig.backend.launches) == 1


@pytest.mark.parametrize(("when", "end", "after"), [
    ("failed", "fail", "running"),
    ("failed", "finish", "cancelled"),
    ("ended", "fail", "running"),
    ("ended", "cancel", "running"),
    ("succeeded", "cancel", "cancelled"),
])
def test_when_states_which_ends_release_the_dependent(rig: Rig, when: str, end: str,
                                                     after: str) -> None:
    parent = rig.submit(name="prep")
    child = _after(rig, parent, when)
    rig.step(2)
    if end == "cancel":
        cancel(rig.store, parent, rig.clock.now(), "ann")
    else:
        getattr(rig.backend, end)(parent, **({"exit_code": 1} if end == "fail" else {}))
    rig.step(4)
    assert rig.state(child) == after


def _spec(**fields: Any) -> WorkloadSpec:
    return WorkloadSpec.model_validate({"name": "c", "queue": "q", "gpus": 1, "cpu": 0.1,
                                        "memory": 64, "command": ["run"], **fields})


def test_submission_refuses_an_unknown_or_hidden_parent_naming_the_field(rig: Rig) -> None:
    spec = _spec(depends_on=[{"id": "no-such-1"}])
    with pytest.raises(SpecError) as err:
        rig.submissions.submit(spec, "ann", rig.clock.now())
    assert err.value.problems[0][0] == "depends_on[0].id"
    parent = rig.submit(name="prep")
    hidden = _spec(depends_on=[{"id": parent}])
    with pytest.raises(SpecError) as err:  # the parent's queue is not the submitter's
        rig.submissions.submit(hidden, "bob", rig.clock.now(), visible=lambda q: q != "q")
    assert "no workload or group" in err.value.problems[0][1]


def test_a_parent_that_already_ended_decides_at_submission(rig: Rig) -> None:
    done, broken = rig.submit(name="done"), rig.submit(name="broken")
    rig.step(2)
    rig.backend.finish(done)
    rig.backend.fail(broken, exit_code=3)
    rig.step(2)
    with pytest.raises(SpecError) as err:
        rig.submissions.submit(_spec(depends_on=[{"id": done}, {"id": broken}]), "ann",
                               rig.clock.now())
    assert err.value.problems == [("depends_on[1].id", f"{broken} ended 1 failed: when: "
                                   "succeeded can never be met")]
    child = _after(rig, done)
    assert rig.get(child).reason_code == "Submitted"  # met already: not held
    rig.step(2)
    assert rig.state(child) == "running"


def test_held_work_costs_no_read_while_nothing_ends(rig: Rig, monkeypatch: pytest.MonkeyPatch
                                                    ) -> None:
    reads: list[set[str]] = []
    real = G.states_of
    monkeypatch.setattr(G, "states_of", lambda conn, keys: reads.append(set(keys)) or real(
        conn, keys))
    parent = rig.submit(name="prep")
    children = [_after(rig, parent, name=f"c{i}") for i in range(50)]
    rig.step()
    reads.clear()  # the first sight of each held row is decided once
    rig.step(5)
    assert reads == []
    rig.backend.finish(parent)
    rig.step(2)
    assert reads == [{parent}]  # one read, of the parent that ended, for all 50
    assert not [c for c in children if rig.get(c).reason_code == "WaitingForDependency"]


def test_a_new_leader_releases_what_ended_while_none_led(rig: Rig) -> None:
    parent = rig.submit(name="prep")
    child = _after(rig, parent)
    rig.step(2)
    rig.backend.finish(parent)
    rig.loop.leadership.resign()
    revived = rig.new_loop(rig.backend, holder="next")
    for _ in range(4):
        revived.step()
        rig.clock.advance(20)  # past the old lease
    assert rig.state(parent) == "succeeded" and rig.state(child) == "running"


def test_the_dry_run_says_what_it_waits_for(rig: Rig) -> None:
    parent = rig.submit(name="prep")
    result = rig.submissions.dry_run(_spec(depends_on=[{"id": parent}]), rig.clock.now())
    assert result.outcome == "pending"
    assert result.reason is not None and result.reason.code == WF.WAITING_FOR_DEPENDENCY
    assert any(f"depends_on: {parent} must succeed (not met yet" in n for n in result.notes)
    assert any(n.startswith("restart_on: restarted after node failure") for n in result.notes)


@pytest.mark.parametrize(("when", "states", "expected"), [
    ("succeeded", {"running": 1}, "wait"),
    ("succeeded", {"succeeded": 3}, "met"),
    ("succeeded", {"succeeded": 1, "failed": 1, "running": 5}, "never"),  # early, for sweeps
    ("succeeded", {"cancelled": 1}, "never"),
    ("failed", {"failed": 1, "running": 1}, "wait"),
    ("failed", {"failed": 1, "succeeded": 9}, "met"),
    ("failed", {"succeeded": 2}, "never"),
    ("ended", {"preempted": 1}, "wait"),
    ("ended", {"cancelled": 1, "succeeded": 1}, "met"),
    ("ended", {}, "never"),
])
def test_verdict(when: str, states: dict[str, int], expected: str) -> None:
    assert WF.verdict(when, states) == expected


def test_a_bulk_release_that_misses_a_row_is_written_row_by_row(
        rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    from corral.store import workloads as W

    parent = rig.submit(name="prep")
    children = [_after(rig, parent, name=f"c{i}") for i in range(3)]
    rig.step(2)
    real = W.update_many_versioned
    missed: list[int] = []

    def short(conn: Any, rows: Any, **kw: Any) -> int | None:
        if rows and rows[0].get("reason_code") == "Released" and not missed:
            missed.append(len(rows))
            real(conn, rows, **kw)
            return len(rows) - 1  # as if one row had changed under the bulk write
        return real(conn, rows, **kw)

    monkeypatch.setattr(W, "update_many_versioned", short)
    rig.backend.finish(parent)
    rig.step(3)
    assert missed == [3]  # the bulk write was rolled back, then each row written alone
    assert {rig.state(c) for c in children} == {"running"}
    with rig.store.read() as c:
        released = [e for e in W.list_events(c) if e.reason == "Released"]
    assert sorted(e.workload_id for e in released) == sorted(children)  # once each
