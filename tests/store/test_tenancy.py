"""Tenancy in the store on SQLite and PostgreSQL: the 0201 migration over existing rows, member
roles, token expiry and revocation, user deletion, the audit log and idempotency keys."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import inspect, text

from corral.core.model import Queue
from corral.store import Store
from corral.store import audit as AU
from corral.store import auth as A
from corral.store import idempotency as I
from corral.store import pool as P
from corral.store.database import current_revision, head_revision, upgrade

from .conftest import BACKENDS


@pytest.fixture(params=BACKENDS)
def empty_url(request: pytest.FixtureRequest, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'corral.db'}"
    return str(request.getfixturevalue("postgres_database_url"))


@pytest.fixture
def with_users(store: Store) -> Iterator[Store]:
    with store.write() as c:
        for q in ("a", "b"):
            P.upsert_queue(c, Queue(q))
        A.create_user(c, "ann", "user", {"a": "member", "b": "viewer"}, 0.0)
        A.create_user(c, "bob", "user", ["a"], 0.0)
    yield store


def test_migration_keeps_existing_members_and_tokens_working(empty_url: str) -> None:
    """Rows written before 0201 (members without a role, tokens without expiry) upgrade to
    members that can still submit, and tokens that still authenticate."""
    s = Store(empty_url)
    try:
        upgrade(s.engine, "0101")
        with s.write() as c:
            # the columns of 0101 only (today's models would add the new ones)
            c.execute(text("INSERT INTO users (name, role, created_at) VALUES ('old', 'user', 0)"))
            c.execute(text('INSERT INTO memberships ("user", queue) VALUES (\'old\', \'q\')'))
            c.execute(text('INSERT INTO api_tokens ("user", token_hash, hint, created_at, revoked) '
                           "VALUES ('old', :h, 'ld', 0, false)"), {"h": A.hash_token("crl_old")})
        s.upgrade()
        assert current_revision(s.engine) == head_revision()
        assert {"audit_log", "idempotency_keys"} <= set(inspect(s.engine).get_table_names())
        with s.read() as c:
            who = A.authenticate(c, "crl_old", 1e9)
        assert who is not None and who.role_in("q") == "member" and who.may_submit("q")
    finally:
        s.close()


def test_member_roles_decide_what_a_user_may_do(with_users: Store) -> None:
    with with_users.read() as c:
        ann = A.get_user(c, "ann")
    assert ann is not None
    assert (ann.may_submit("a"), ann.may_submit("b"), ann.may_use("b")) == (True, False, True)
    assert ann.may_act_on("a", "ann") and not ann.may_act_on("a", "bob")
    assert not ann.may_act_on("b", "ann")  # a viewer acts on nothing, not even their own
    with with_users.write() as c:
        assert A.set_membership(c, "ann", "a", "queue_admin") == "member"
        ann = A.get_user(c, "ann")
    assert ann is not None and ann.may_act_on("a", "bob") and ann.may_manage("a")
    assert not ann.may_manage("b")


def test_tokens_expire_and_are_revoked_one_by_one(with_users: Store) -> None:
    with with_users.write() as c:
        short, short_token = A.issue_token(c, "ann", 100.0, name="ci", expires_at=200.0)
        _, keep_token = A.issue_token(c, "ann", 100.0, rate_per_s=5.0, burst=10)
    with with_users.read() as c:
        assert A.authenticate(c, short_token, 199.0) is not None
        assert A.authenticate(c, short_token, 200.0) is None  # expired at its expiry
        found = A.verify(c, keep_token, 1e9)
        assert found is not None and (found.token.rate_per_s, found.token.burst) == (5.0, 10)
    with with_users.write() as c:
        assert A.revoke_token(c, short.id)
    with with_users.read() as c:
        assert [t.revoked for t in A.list_tokens(c, "ann")] == [True, False]
        assert A.authenticate(c, keep_token, 150.0) is not None


def test_a_deleted_user_loses_tokens_and_memberships(with_users: Store) -> None:
    with with_users.write() as c:
        token = A.create_token(c, "bob", 0.0)
        assert A.delete_user(c, "bob")
        assert not A.delete_user(c, "bob")
    with with_users.read() as c:
        assert A.authenticate(c, token, 0.0) is None
        assert A.list_members(c, "a") == [("ann", "member")]
        assert A.list_tokens(c, "bob") == []


def test_audit_log_pages_in_order(with_users: Store) -> None:
    with with_users.write() as c:
        for i in range(3):
            AU.record(c, at=float(i), actor="root", action="user.create", target=f"u{i}",
                      detail={"i": i})
        AU.record(c, at=9.0, actor="ann", action="workload.cancel", target="w", queue="a")
    with with_users.read() as c:
        first = AU.list_audit(c, limit=2)
        rest = AU.list_audit(c, after_id=first[-1].id)
        assert [e.target for e in first + rest] == ["u0", "u1", "u2", "w"]
        assert [e.target for e in AU.list_audit(c, actor="ann")] == ["w"]
        assert first[1].detail == {"i": 1}


def test_an_idempotency_key_is_claimed_once(with_users: Store) -> None:
    with with_users.write() as c:
        I.claim(c, "ann", "k1", "h", "g1", 0.0)
        with pytest.raises(I.KeyTaken):
            I.claim(c, "ann", "k1", "h2", "g2", 0.0)
        I.claim(c, "bob", "k1", "h", "g3", 0.0)  # keys are per user
        # the transaction is still usable after the refused claim (a savepoint took it)
        AU.record(c, at=0.0, actor="x", action="y", target="z")
    with with_users.read() as c:
        assert I.find(c, "ann", "k1") == I.Remembered("h", "g1")
        assert I.find(c, "bob", "k1") == I.Remembered("h", "g3")
        assert I.find(c, "ann", "nope") is None
