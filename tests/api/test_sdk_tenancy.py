"""The SDK's tenancy methods and error types against the in-process API (SQLite): users,
tokens, members, audit, whoami, submit with an Idempotency-Key, and the errors a caller can act
on (RateLimited with its Retry-After, TooLarge, Conflict, Unauthorized)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from corral.api.limits import ApiLimits
from corral.sdk import Client, Conflict, Forbidden, RateLimited, TooLarge, Unauthorized
from corral.store import Store
from corral.store.database import sqlite_url

from .harness import Api, build, job


@pytest.fixture
def api(tmp_path) -> Iterator[Api]:
    store = Store(sqlite_url(tmp_path / "corral.db"))
    store.upgrade()
    yield build(store, ApiLimits(rate_per_s=0.001, burst=30))
    store.close()


def _client(api: Api, headers: dict[str, str]) -> Client:
    token = headers["Authorization"].removeprefix("Bearer ")
    return Client("http://testserver", token, transport=api.client._transport)


def test_an_admin_manages_users_tokens_and_members(api: Api) -> None:
    with _client(api, api.admin) as admin:
        made = admin.create_user("bo", queues=["team-b"])
        assert made.user.memberships == {"team-b": "member"}
        assert admin.add_member("team-a", "bo", "viewer").role == "viewer"
        assert {m.user: m.role for m in admin.members("team-a")} == {"ann": "member",
                                                                       "bo": "viewer"}
        extra = admin.create_token(user="bo", name="ci", expires_in_s=60)
        assert [t.name for t in admin.tokens("bo")] == ["", "ci"]
        with Client("http://testserver", extra.token, transport=api.client._transport) as bo:
            assert bo.whoami().memberships == {"team-a": "viewer", "team-b": "member"}
            with pytest.raises(Forbidden):
                bo.submit(job())  # a viewer of team-a
            admin.revoke_token(extra.info.id)
            with pytest.raises(Unauthorized):
                bo.whoami()
        admin.remove_member("team-a", "bo")
        admin.delete_user("bo")
        assert "bo" not in [u.name for u in admin.users()]
        actions = [e.action for e in admin.audit().items]
        assert actions == ["user.create", "member.set", "token.create", "token.revoke",
                           "member.remove", "user.delete"]


def test_submit_with_an_idempotency_key(api: Api) -> None:
    with _client(api, api.ann) as ann:
        first = ann.submit(job(), idempotency_key="k-1")
        assert ann.submit(job(), idempotency_key="k-1").group_id == first.group_id
        with pytest.raises(Conflict):
            ann.submit(job(gpus=2), idempotency_key="k-1")


def test_errors_a_caller_can_act_on(api: Api) -> None:
    with _client(api, api.ann) as ann:
        with pytest.raises(TooLarge) as big:
            ann.submit(job(command=["x" * 1000] * 300))
        assert big.value.problems == [("spec", big.value.message)]
        with pytest.raises(RateLimited) as limited:
            for _ in range(40):
                ann.queues()
        assert limited.value.retry_after >= 1
