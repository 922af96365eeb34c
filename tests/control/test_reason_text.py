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

import warnings
from collections.abc import Iterator
from dataclasses import replace

import pytest

from corral.api import ApiContext, create_app
from corral.api.views import QueueUse, reason_now
from corral.core import reasons as R
from corral.core.model import Queue
from corral.store import Store
from corral.store import auth as A
from corral.store import pool as P
from corral.store import workloads as W

from .rig import Rig

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # Starlette's TestClient on httpx (see tests/api/harness)
    from fastapi.testclient import TestClient


@pytest.fixture
def rig(store: Store) -> Iterator[Rig]:
    r = Rig(store)
    with store.write() as c:
        P.upsert_queue(c, Queue("q", quota_gpus=6))
        P.upsert_queue(c, Queue("a", quota_gpus=2))
    yield r


def _api(rig: Rig) -> tuple[TestClient, dict[str, str]]:
    with rig.store.write() as c:
        A.create_user(c, "root", "admin", [], 0.0)
        token = A.create_token(c, "root", 0.0)
    ctx = ApiContext(rig.store, rig.submissions, clock=rig.clock, logs=rig.backend,
                     backend_name="fake")
    return (TestClient(create_app(ctx), raise_server_exceptions=False),
            {"Authorization": f"Bearer {token}"})


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
    client, admin = _api(rig)
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


def test_the_view_adds_the_use_of_each_queue_the_sentence_names_and_no_other(rig: Rig) -> None:
    """An ancestor named ("its parent org ...", "queue org (parent of a)") gets its use (its
    children's included, as the scheduler counts it); a sentence naming no queue, or a code
    that is not about quota, is left as stored."""
    rec = rig.get(rig.submit(name="x", queue="a"))
    use = QueueUse(gpus={"a": 3.0, "org": 5.5}, parent={"a": "org", "org": None, "q": None})
    blocked = replace(rec, reason_code=R.RECLAIM_BLOCKED, reason_message=(
        "needs 1 GPU; queue a is owed it (within its quota of 4 GPUs with it; its parent org "
        "is above its quota of 5 GPUs, so only queues under org that are above theirs may give)"))
    assert reason_now(blocked, use) == (f"{blocked.reason_message} (now: a uses 3 GPUs; "
                                        "org uses 5.5 GPUs)")
    over = replace(rec, reason_code=R.OVER_QUOTA, reason_message=(
        "needs 1 GPU; queue org (parent of a) would be above its quota of 5 GPUs with it"))
    assert reason_now(over, use) == f"{over.reason_message} (now: org uses 5.5 GPUs)"
    behind = replace(rec, reason_code=R.NOT_CONSIDERED, reason_message="waiting behind y")
    capacity = replace(rec, reason_code=R.INSUFFICIENT_CAPACITY,
                       reason_message="needs 1 GPU; queue a is named here but not its quota")
    for stored in (behind, capacity, replace(over, state="running")):
        assert reason_now(stored, use) == stored.reason_message
    assert not QueueUse.wanted([capacity, replace(over, state="running")])
    assert QueueUse.wanted([capacity, over])
    with rig.store.read() as c:  # nothing holds GPUs: a queue's use is 0, not absent
        assert QueueUse.load(c).gpus == {}
    assert reason_now(over, replace(use, gpus={})).endswith("(now: org uses 0 GPUs)")
