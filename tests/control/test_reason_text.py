"""A stored pending reason stays true as long as it is stored (issue 16).

The control plane writes a pending reason only where its code or sentence changed, so a
sentence that quoted its queue's current use ("queue a uses 8 of its quota of 2 GPUs") was
rewritten at every start and end in that queue (~42,000 rows a place step at 10,000 nodes),
and was untrue between the writes. The sentence now names what holds while the code does (the
queue, its quota); the API adds the use at read time (`corral.api.views.reason_now`).

Here a real loop on a fake backend, stepped as the control plane runs it, on SQLite and
PostgreSQL: queue a (quota 2 of 8 GPUs) borrows the whole pool with 1-GPU jobs and waits with a
4-GPU one (OverQuota). Its jobs end one on each node, so its use moves 8 -> 7 -> 6 while the
4-GPU job still fits nowhere: the stored sentence stays byte-identical; the API shows the use
of each moment; a new quota changes the sentence.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace

import pytest
from sqlalchemy import select

from corral.api.views import QUEUE_CODES, QueueUse, _chain, reason_now
from corral.control.cancellation import cancel
from corral.core import reasons as R
from corral.core.model import Queue
from corral.core.plan import Reservation
from corral.store import Store
from corral.store import pool as P
from corral.store import workloads as W
from corral.store.reservations import load_reservations
from corral.store.schema import WorkloadRow
from corral.store.workloads import WorkloadRecord

from .rig import Rig, admin_api


@pytest.fixture
def rig(store: Store) -> Iterator[Rig]:
    r = Rig(store)
    with store.write() as c:
        P.upsert_queue(c, Queue("q", quota_gpus=6))
        P.upsert_queue(c, Queue("a", quota_gpus=2))
    yield r


def _node_of(rig: Rig, wid: str) -> str:
    with rig.store.read() as c:
        (where,) = W.assignments_of(c, [(wid, rig.get(wid).attempt)]).values()
    return where[0].node_id


def test_an_over_quota_sentence_stays_byte_identical_while_only_the_use_moves(rig: Rig) -> None:
    small = [rig.submit(name=f"s{i}", queue="a", gpus=1) for i in range(8)]
    rig.step(2)
    assert {rig.state(w) for w in small} == {"running"}
    big = rig.submit(name="big", queue="a", gpus=4)
    rig.step()
    first = rig.get(big)
    assert first.reason_code == R.OVER_QUOTA, first.reason_message
    assert "queue a would be above its quota of 2 GPUs with it" in first.reason_message
    client, admin = admin_api(rig)
    seen = [client.get(f"/v1/workloads/{big}", headers=admin).json()["reason_message"]]
    by_node: dict[str, list[str]] = {}
    for w in small:
        by_node.setdefault(_node_of(rig, w), []).append(w)
    for node in sorted(by_node):  # one ends on each node: 1 GPU free on each, 4 on none
        rig.backend.finish(by_node[node][0])
        rig.step(2)
        now = rig.get(big)
        assert now.state == "pending" and now.reason_code == R.OVER_QUOTA
        assert now.reason_message == first.reason_message  # byte-identical while use moves
        seen.append(client.get(f"/v1/workloads/{big}", headers=admin).json()["reason_message"])
    # the view: the stored sentence, with the queue's use at each read
    assert seen == [f"{first.reason_message} (now: a uses {n} GPUs)" for n in (8, 7, 6)]
    why = client.get(f"/v1/workloads/{big}/why", headers=admin).json()
    listed = client.get("/v1/workloads", params={"state": "pending"}, headers=admin).json()
    assert why["message"] == seen[-1] == listed["items"][0]["reason_message"]
    # the situation it names changes: a new quota, a new sentence (a use still not quoted)
    with rig.store.write() as c:
        P.upsert_queue(c, Queue("a", quota_gpus=3))
    rig.step()
    moved = rig.get(big)
    assert moved.reason_code == R.OVER_QUOTA
    assert moved.reason_message == first.reason_message.replace("quota of 2 GPUs",
                                                                "quota of 3 GPUs")


def _stored(rec: WorkloadRecord, reason: R.Reason, state: str = "pending") -> WorkloadRecord:
    """`rec` as the control plane stores `reason` (`apply._write_reasons`)."""
    return replace(rec, state=state, reason_code=reason.code, reason_message=reason.message,
                   reason_refs=R.stored_refs(reason))


def _by_words(r: WorkloadRecord, use: QueueUse) -> str:
    """What the view added before the queues were stored with the sentence: each queue of the
    chain whose name the sentence holds ("queue a ", "parent a "). Kept here to check the
    structured read gives byte-identical views."""
    named = [q for q in _chain(r.queue, use.parent)
             if f"queue {q} " in r.reason_message or f"parent {q} " in r.reason_message]
    if not named or r.reason_code not in QUEUE_CODES or r.state != "pending":
        return r.reason_message
    now = "; ".join(f"{q} uses {round(use.gpus.get(q, 0.0), 3):g} GPUs" for q in named)
    return f"{r.reason_message} (now: {now})"


def test_the_view_adds_the_use_of_each_queue_the_sentence_names_and_no_other(rig: Rig) -> None:
    """An ancestor named ("its parent org ...", "queue org (parent of a)") gets its use (its
    children's included, as the scheduler counts it); a sentence naming no queue, or a code
    that is not about quota, is left as stored. The queues are read from what is stored with
    the sentence (`reason_refs`), and the view is what reading its words gave."""
    rec = rig.get(rig.submit(name="x", queue="a"))
    use = QueueUse(gpus={"a": 3.0, "org": 5.5}, parent={"a": "org", "org": None, "q": None})
    blocked = _stored(rec, R.Reason(R.RECLAIM_BLOCKED, (
        "needs 1 GPU; queue a is owed it (within its quota of 4 GPUs with it; its parent org "
        "is above its quota of 5 GPUs, so only queues under org that are above theirs may give)"),
        (("queue", "a"), (R.QUEUES_NAMED, ("a", "org")))))
    assert reason_now(blocked, use) == (f"{blocked.reason_message} (now: a uses 3 GPUs; "
                                        "org uses 5.5 GPUs)")
    over = _stored(rec, R.Reason(R.OVER_QUOTA, (
        "needs 1 GPU; queue org (parent of a) would be above its quota of 5 GPUs with it"),
        (("queue", "org"), (R.QUEUES_NAMED, ("org",)))))
    assert reason_now(over, use) == f"{over.reason_message} (now: org uses 5.5 GPUs)"
    limit = _stored(rec, R.Reason(R.QUEUE_LIMIT, "queue a would go above its limit of 4 GPUs "
                                  "with the 1 this needs", (("queue", "a"),)))
    assert reason_now(limit, use) == f"{limit.reason_message} (now: a uses 3 GPUs)"
    behind = _stored(rec, R.Reason(R.NOT_CONSIDERED, "waiting behind y"))
    capacity = _stored(rec, R.Reason(R.INSUFFICIENT_CAPACITY,
                                     "needs 1 GPU; queue a is named here but not its quota"))
    for stored in (behind, capacity, replace(over, state="running")):
        assert reason_now(stored, use) == stored.reason_message
    for r in (blocked, over, limit, behind, capacity, replace(over, state="running")):
        assert reason_now(r, use) == _by_words(r, use), r.reason_message
    assert not QueueUse.wanted([capacity, replace(over, state="running")])
    assert QueueUse.wanted([capacity, over])
    with rig.store.read() as c:  # nothing holds GPUs: a queue's use is 0, not absent
        assert QueueUse.load(c).gpus == {}
    assert reason_now(over, replace(use, gpus={})).endswith("(now: org uses 0 GPUs)")


def test_a_sentence_behind_reservations_stays_while_they_are_made_and_pass_on(
        rig: Rig) -> None:
    """Eight 1-GPU jobs fill both nodes; gangs g1, g2, g3 (2 x 4 GPUs) wait, the oldest
    holding the one reservation once it waited `reserve_after_s`. g3's stored sentence does
    not say whether reservations are held or by whom, so its row is not written again when g1
    reserves, nor when g1 is cancelled and g2 takes the reservation; the API names the
    holder of each moment."""
    small = [rig.submit(name=f"s{i}", gpus=1) for i in range(8)]
    rig.step(2)
    assert {rig.state(w) for w in small} == {"running"}
    g1, g2, g3 = (rig.submit(name=f"g{i}", gpus=4, workers=2) for i in (1, 2, 3))
    rig.step(2)
    assert _held(rig) == ()
    first, written = rig.get(g3), _written_at(rig, g3)
    client, admin = admin_api(rig)
    assert client.get(f"/v1/workloads/{g3}", headers=admin).json()["reason_message"] == (
        f"{first.reason_message} (now: q uses 8 GPUs)")  # none held: nothing about them
    assert json.loads(first.reason_refs) == {"queues": ["q"], "reserved": True}
    rig.step(4, dt=100.0)  # past reserve_after_s (300 s): g1, the oldest, reserves
    assert [r.workload_id for r in _held(rig)] == [g1]
    until = next(r.until for r in _held(rig))
    assert client.get(f"/v1/workloads/{g3}", headers=admin).json()["reason_message"] == (
        f"{first.reason_message} (now: q uses 8 GPUs; it waits behind nodes reserved for "
        f"{g1} until t={until:.0f})")
    holder = client.get(f"/v1/workloads/{g1}", headers=admin).json()["reason_message"]
    assert "it waits behind" not in holder  # its own reservation is not in its way
    use = QueueUse({}, {"q": None}, ((g1, until),))
    budget = replace(first, reason_code=R.BUDGET_EXCEEDED, reason_message="no credits")
    assert reason_now(budget, use) == "no credits"  # another writer's code: refs not its own
    assert reason_now(first, use).endswith(f"reserved for {g1} until t={until:.0f})")
    cancel(rig.store, g1, rig.clock.now(), "ann")
    rig.step(2)
    assert [r.workload_id for r in _held(rig)] == [g2]
    assert rig.get(g3).reason_message == first.reason_message
    assert _written_at(rig, g3) == written  # the row itself was not written again
    until = next(r.until for r in _held(rig))
    assert client.get(f"/v1/workloads/{g3}", headers=admin).json()["reason_message"] == (
        f"{first.reason_message} (now: q uses 8 GPUs; it waits behind nodes reserved for "
        f"{g2} until t={until:.0f})")


def _held(rig: Rig) -> tuple[Reservation, ...]:
    with rig.store.read() as c:
        return load_reservations(c)


def _written_at(rig: Rig, wid: str) -> int:
    """The change feed's number of the row's last write."""
    with rig.store.read() as c:
        return int(c.execute(select(WorkloadRow.change_seq)
                             .where(WorkloadRow.id == wid)).scalar_one())
