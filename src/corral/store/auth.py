"""Users, queue memberships and API tokens: who may do what.

Roles. A user's own role is `admin` (everything, every queue) or `user`. A user's role in a
queue is their membership's:

    role          read the queue's work   submit   cancel / read logs      manage members
    viewer        yes                     no       no                      no
    member        yes                     yes      their own workloads     no
    queue_admin   yes                     yes      every workload there    yes (that queue)
    admin         every queue             yes      everything              yes (every queue)

Tokens are random (`crl_` + 32 url-safe bytes) and stored only as SHA-256 digests: a leaked
database does not leak working tokens. A salted slow hash buys nothing here, since the tokens
carry 256 bits of entropy and are checked on every request. A token may expire (`expires_at`,
unix seconds) and may carry its own request rate (`rate_per_s`, `burst`; None: the server's).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from sqlalchemy import Connection, delete, insert, or_, select, update

from corral.store.schema import ApiToken, Membership, User

__all__ = [
    "MEMBER_ROLES",
    "USER_ROLES",
    "Credential",
    "Principal",
    "TokenRecord",
    "authenticate",
    "create_token",
    "create_user",
    "delete_user",
    "get_token",
    "get_user",
    "hash_token",
    "issue_token",
    "list_members",
    "list_tokens",
    "list_users",
    "remove_membership",
    "remove_queue_members",
    "revoke_token",
    "revoke_tokens",
    "set_membership",
    "set_memberships",
    "verify",
]

TOKEN_PREFIX = "crl_"
USER_ROLES: Final = ("admin", "user")
MEMBER_ROLES: Final = ("queue_admin", "member", "viewer")
_SUBMITTERS: Final = frozenset({"queue_admin", "member"})


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a user, their role, the queues they belong to and their role in each."""

    name: str
    role: str
    queues: frozenset[str]
    queue_roles: Mapping[str, str] = field(default_factory=dict, compare=False)

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def role_in(self, queue: str) -> str | None:
        """`admin`, `queue_admin`, `member`, `viewer`, or None (not a member)."""
        if self.is_admin:
            return "admin"
        if queue not in self.queues:
            return None
        return self.queue_roles.get(queue, "member")

    def may_use(self, queue: str) -> bool:
        """May read the queue and its work (any role)."""
        return self.is_admin or queue in self.queues

    def may_submit(self, queue: str) -> bool:
        return self.is_admin or self.role_in(queue) in _SUBMITTERS

    def may_manage(self, queue: str) -> bool:
        """May act on every workload of the queue and change its members."""
        return self.role_in(queue) in ("admin", "queue_admin")

    def may_act_on(self, queue: str, owner: str) -> bool:
        """May cancel, and read the logs of, a workload of `queue` submitted by `owner`."""
        return self.may_manage(queue) or (self.role_in(queue) == "member" and owner == self.name)


@dataclass(frozen=True, slots=True)
class TokenRecord:
    """A token as stored (never the token itself)."""

    id: int
    user: str
    name: str
    hint: str
    created_at: float
    expires_at: float | None
    revoked: bool
    rate_per_s: float | None
    burst: int | None

    @classmethod
    def of(cls, row: Any) -> TokenRecord:
        return cls(row.id, row.user, row.name, row.hint, row.created_at, row.expires_at,
                   row.revoked, row.rate_per_s, row.burst)


@dataclass(frozen=True, slots=True)
class Credential:
    """A verified token: who it is, and the token's own limits."""

    principal: Principal
    token: TokenRecord


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


# --- users and memberships ----------------------------------------------------------------------


def create_user(conn: Connection, name: str, role: str,
                queues: Iterable[str] | Mapping[str, str], now: float) -> None:
    """`queues`: names (member role) or {queue: role}."""
    conn.execute(insert(User).values(name=name, role=role, created_at=now))
    set_memberships(conn, name, queues)


def delete_user(conn: Connection, name: str) -> bool:
    """Remove the user, their memberships and their tokens (which stop working at once).
    Their workloads and the audit log keep the name. False when there was no such user."""
    conn.execute(delete(ApiToken).where(ApiToken.user == name))
    conn.execute(delete(Membership).where(Membership.user == name))
    return conn.execute(delete(User).where(User.name == name)).rowcount == 1


def set_memberships(conn: Connection, name: str, queues: Iterable[str] | Mapping[str, str]) -> None:
    roles = dict(queues) if isinstance(queues, Mapping) else dict.fromkeys(queues, "member")
    conn.execute(delete(Membership).where(Membership.user == name))
    rows = [{"user": name, "queue": q, "role": r} for q, r in sorted(roles.items())]
    if rows:
        conn.execute(insert(Membership), rows)


def set_membership(conn: Connection, user: str, queue: str, role: str) -> str | None:
    """Put `user` in `queue` with `role`; the role they had before (None: not a member)."""
    before = conn.execute(select(Membership.role).where(
        Membership.user == user, Membership.queue == queue)).scalar()
    if before is None:
        conn.execute(insert(Membership).values(user=user, queue=queue, role=role))
    else:
        conn.execute(update(Membership).where(
            Membership.user == user, Membership.queue == queue).values(role=role))
    return before


def remove_membership(conn: Connection, user: str, queue: str) -> bool:
    return conn.execute(delete(Membership).where(
        Membership.user == user, Membership.queue == queue)).rowcount == 1


def remove_queue_members(conn: Connection, queue: str) -> None:
    conn.execute(delete(Membership).where(Membership.queue == queue))


def list_members(conn: Connection, queue: str) -> list[tuple[str, str]]:
    """(user, role) of every member of `queue`, by name."""
    q = select(Membership.user, Membership.role).where(Membership.queue == queue)
    return [(u, r) for u, r in conn.execute(q.order_by(Membership.user))]


def get_user(conn: Connection, name: str) -> Principal | None:
    row = conn.execute(select(User.name, User.role).where(User.name == name)).first()
    if row is None:
        return None
    roles = {q: r for q, r in conn.execute(select(Membership.queue, Membership.role).where(
        Membership.user == name))}
    return Principal(row.name, row.role, frozenset(roles), roles)


def list_users(conn: Connection) -> list[Principal]:
    names = conn.execute(select(User.name).order_by(User.name)).scalars().all()
    return [p for n in names if (p := get_user(conn, n)) is not None]


# --- tokens -------------------------------------------------------------------------------------


def issue_token(conn: Connection, user: str, now: float, *, name: str = "",
                expires_at: float | None = None, rate_per_s: float | None = None,
                burst: int | None = None) -> tuple[TokenRecord, str]:
    """A new token for `user`: its record and the token itself (the only time it is seen)."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    values = {"user": user, "token_hash": hash_token(token), "hint": token[-6:],
              "created_at": now, "revoked": False, "name": name, "expires_at": expires_at,
              "rate_per_s": rate_per_s, "burst": burst}
    token_id = conn.execute(insert(ApiToken).values(**values).returning(ApiToken.id)).scalar_one()
    return TokenRecord(int(token_id), user, name, token[-6:], now, expires_at, False, rate_per_s,
                       burst), token


def create_token(conn: Connection, user: str, now: float) -> str:
    """A new token for `user` without expiry or limits of its own; returns the token."""
    return issue_token(conn, user, now)[1]


def list_tokens(conn: Connection, user: str | None = None) -> list[TokenRecord]:
    """Tokens (revoked ones included), oldest first; `user` None means everyone's."""
    q = select(ApiToken).order_by(ApiToken.id)
    if user is not None:
        q = q.where(ApiToken.user == user)
    return [TokenRecord.of(r) for r in conn.execute(q)]


def get_token(conn: Connection, token_id: int) -> TokenRecord | None:
    row = conn.execute(select(ApiToken).where(ApiToken.id == token_id)).first()
    return TokenRecord.of(row) if row is not None else None


def revoke_token(conn: Connection, token_id: int) -> bool:
    return conn.execute(update(ApiToken).where(ApiToken.id == token_id).values(
        revoked=True)).rowcount == 1


def revoke_tokens(conn: Connection, user: str) -> None:
    conn.execute(update(ApiToken).where(ApiToken.user == user).values(revoked=True))


def verify(conn: Connection, token: str, now: float) -> Credential | None:
    """The caller behind `token`, if it is known, not revoked and not expired at `now`."""
    row = conn.execute(select(ApiToken).where(
        ApiToken.token_hash == hash_token(token), ApiToken.revoked.is_(False),
        or_(ApiToken.expires_at.is_(None), ApiToken.expires_at > now))).first()
    if row is None:
        return None
    who = get_user(conn, row.user)
    return Credential(who, TokenRecord.of(row)) if who is not None else None


def authenticate(conn: Connection, token: str, now: float) -> Principal | None:
    found = verify(conn, token, now)
    return found.principal if found is not None else None

