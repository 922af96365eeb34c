"""The repository layer on both databases: migrations, workloads, events, auth, lease, pool."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect, select
from sqlalchemy.exc import IntegrityError

from corral.core.model import Node, Queue
from corral.store import Store
from corral.store import auth as A
from corral.store import lease as LS
from corral.store import pool as P
from corral.store import workloads as W
from corral.store.changes import RowWrite
from corral.store.database import current_revision, head_revision, normalize_url
from corral.store.schema import ApiToken


def _row(wid: str, queue: str = "q", state: str = "pending", user: str = "u") -> dict:
    return {"id": wid, "group_id": wid, "name": wid, "queue": queue, "user": user,
            "kind": "job", "spec": {"name": wid}, "state": state, "submitted_at": 1.0}


def test_migrations_are_idempotent_and_reach_head(store: Store) -> None:
    store.upgrade()  # a second start runs them again: nothing happens
    assert current_revision(store.engine) == head_revision()
    tables = set(inspect(store.engine).get_table_names())
    assert {"providers", "nodes", "queues", "workloads", "placements", "events", "users",
            "api_tokens", "leases", "memberships"} <= tables


@pytest.mark.parametrize(("given", "expected"), [
    ("postgres://u@h/db", "postgresql+psycopg://u@h/db"),
    ("postgresql://u@h/db", "postgresql+psycopg://u@h/db"),
    ("sqlite:///x.db", "sqlite:///x.db"),
], ids=["postgres-scheme", "postgresql-scheme", "sqlite-url"])
def test_urls_are_normalized(given: str, expected: str) -> None:
    assert normalize_url(given) == expected


def test_versioned_update_refuses_a_stale_version(store: Store) -> None:
    with store.write() as c:
        W.insert_workloads(c, [_row("a")])
    with store.write() as c:
        assert W.update_versioned(c, "a", 1, state="scheduled")
        assert not W.update_versioned(c, "a", 1, state="cancelled")
    with store.read() as c:
        rec = W.get_workload(c, "a")
    assert rec is not None and (rec.state, rec.version) == ("scheduled", 2)


@pytest.mark.parametrize(("filters", "expected"), [
    ({}, ["e", "d", "c", "b", "a"]),
    ({"queues": ["q2"]}, ["d", "b"]),
    ({"states": ["running"]}, ["e"]),
    ({"user": "bob"}, ["c"]),
    ({"limit": 2}, ["e", "d"]),
], ids=["all-newest-first", "by-queue", "by-state", "by-user", "limited"])
def test_list_filters(store: Store, filters: dict, expected: list[str]) -> None:
    with store.write() as c:
        W.insert_workloads(c, [_row("a"), _row("b", "q2"), _row("c", user="bob"),
                               _row("d", "q2"), _row("e", state="running")])
    with store.read() as c:
        assert [r.id for r in W.list_workloads(c, **filters)] == expected


def test_pages_cover_everything_once(store: Store) -> None:
    with store.write() as c:
        W.insert_workloads(c, [_row(f"w{i:02d}") for i in range(25)])
    seen, cursor = [], None
    with store.read() as c:
        while True:
            page = W.list_workloads(c, before_seq=cursor, limit=10)
            seen += [r.id for r in page]
            if len(page) < 10:
                break
            cursor = page[-1].seq
    assert sorted(seen) == [f"w{i:02d}" for i in range(25)] and len(seen) == 25


def test_events_are_appended_in_order(store: Store) -> None:
    with store.write() as c:
        for reason in ("Submitted", "Scheduled", "Launched"):
            W.append_event(c, at=1.0, kind="transition", reason=reason, workload_id="a")
        W.append_event(c, at=1.0, kind="node", reason="Cordoned", subject="n1")
    with store.read() as c:
        assert [e.reason for e in W.list_events(c, workload_id="a")] == [
            "Submitted", "Scheduled", "Launched"]
        assert len(W.list_events(c)) == 4


def test_tokens_are_stored_hashed_and_authenticate(store: Store) -> None:
    with store.write() as c:
        P.upsert_queue(c, Queue("q"))
        A.create_user(c, "ann", "user", ["q"], 0.0)
        token = A.create_token(c, "ann", 0.0)
    with store.read() as c:
        stored = c.execute(select(ApiToken.token_hash)).scalars().all()
        assert token not in stored and A.hash_token(token) in stored
        who = A.authenticate(c, token, 0.0)
        assert who is not None and who.name == "ann" and who.queues == {"q"}
        assert A.authenticate(c, token + "x", 0.0) is None
    with store.write() as c:
        A.revoke_tokens(c, "ann")
    with store.read() as c:
        assert A.authenticate(c, token, 0.0) is None


def test_lease_has_one_holder_and_fences_a_deposed_one(store: Store) -> None:
    with store.write() as c:
        first = LS.acquire(c, "s", "a", now=0.0, ttl=10.0)
    with store.write() as c:
        assert LS.acquire(c, "s", "b", now=5.0, ttl=10.0) is None  # a holds it
    with store.write() as c:
        second = LS.acquire(c, "s", "b", now=11.0, ttl=10.0)  # expired: b takes it
    assert first is not None and second is not None and second.epoch == first.epoch + 1
    with store.write() as c:
        assert not LS.fence(c, "s", "a", first.epoch, now=12.0)
        assert LS.fence(c, "s", "b", second.epoch, now=12.0)


def test_pool_sync_keeps_cordons_and_deactivates_removed_nodes(store: Store) -> None:
    def node(i: int) -> Node:
        return Node(f"n{i}", "p", "H100", 8, 81920, 1000, 1000)

    with store.write() as c:
        P.sync_nodes(c, [{"name": "p"}], [node(1), node(2)])
        assert P.set_cordoned(c, "n1", True)
    with store.write() as c:
        P.sync_nodes(c, [{"name": "p"}], [node(1)])  # a restart with n2 gone from the file
    with store.read() as c:
        nodes = P.list_nodes(c)
    assert [(n.id, n.cordoned) for n in nodes] == [("n1", True)]


def test_bulk_inserts_return_each_rows_seq_in_order(store: Store) -> None:
    # seqs come back matched to their rows (SQLite: one executemany, then read back), after
    # earlier rows, and a batch with a taken id writes nothing
    with store.write() as c:
        first = W.insert_workloads(c, [_row("z0")])
        seqs = W.insert_workloads(c, [_row(f"w{i}") for i in (3, 1, 2)])
    assert len(seqs) == 3 and first[0] < seqs[0] < seqs[1] < seqs[2]
    with store.read() as c:
        assert {r.id: r.seq for r in W.get_workloads(c, ["w3", "w1", "w2"])} == dict(
            zip(["w3", "w1", "w2"], seqs, strict=True))
    with pytest.raises(IntegrityError), store.write() as c:
        W.insert_workloads(c, [_row("new"), _row("w1")])
    with store.read() as c:
        assert W.get_workload(c, "new") is None


class _Heard:
    """A subscriber (held weakly by the store: keep this object alive)."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def wrote(self, writes: list[RowWrite]) -> None:
        self.calls.append([w.id for w in writes])


def test_committed_inserts_reach_subscribers_and_rolled_back_ones_do_not(store: Store) -> None:
    """A transaction that only inserts workloads (a submission) calls the subscribers, with no
    noted writes (the rows are read from the feed): the control loop is woken by it (issue 16);
    one that rolls back calls nobody; one that writes nothing to workloads calls nobody."""
    heard = _Heard()
    store.subscribe(heard.wrote)
    with store.write() as c:
        W.insert_workloads(c, [_row("a")])
    assert heard.calls == [[]]
    with pytest.raises(RuntimeError), store.write() as c:
        W.insert_workloads(c, [_row("b")])
        raise RuntimeError("rolled back")
    with store.write() as c:
        assert LS.acquire(c, "loop", "me", 0.0, 15.0) is not None
    assert heard.calls == [[]]
    with store.write() as c:
        assert W.update_versioned(c, "a", 1, state="scheduled")
    assert heard.calls == [[], ["a"]]
