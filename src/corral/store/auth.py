"""Users, queue memberships and API tokens.

Tokens are random (`crl_` + 32 url-safe bytes) and stored only as SHA-256 digests: a leaked
database does not leak working tokens. A salted slow hash buys nothing here, since the tokens
carry 256 bits of entropy and are checked on every request.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import Connection, delete, insert, select, update

from corral.store.schema import ApiToken, Membership, User

__all__ = [
    "Principal",
    "authenticate",
    "create_token",
    "create_user",
    "get_user",
    "hash_token",
    "list_users",
    "set_memberships",
]

TOKEN_PREFIX = "crl_"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a user, their role and the queues they belong to."""

    name: str
    role: str
    queues: frozenset[str]

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def may_use(self, queue: str) -> bool:
        return self.is_admin or queue in self.queues


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_user(conn: Connection, name: str, role: str, queues: Iterable[str], now: float) -> None:
    conn.execute(insert(User).values(name=name, role=role, created_at=now))
    set_memberships(conn, name, queues)


def set_memberships(conn: Connection, name: str, queues: Iterable[str]) -> None:
    conn.execute(delete(Membership).where(Membership.user == name))
    rows = [{"user": name, "queue": q} for q in sorted(set(queues))]
    if rows:
        conn.execute(insert(Membership), rows)


def get_user(conn: Connection, name: str) -> Principal | None:
    row = conn.execute(select(User).where(User.name == name)).first()
    if row is None:
        return None
    queues = conn.execute(select(Membership.queue).where(Membership.user == name)).scalars()
    return Principal(row.name, row.role, frozenset(queues))


def list_users(conn: Connection) -> list[Principal]:
    names = conn.execute(select(User.name).order_by(User.name)).scalars().all()
    return [p for n in names if (p := get_user(conn, n)) is not None]


def create_token(conn: Connection, user: str, now: float) -> str:
    """A new token for `user`; the only time the token itself is seen."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    conn.execute(insert(ApiToken).values(
        user=user, token_hash=hash_token(token), hint=token[-6:], created_at=now, revoked=False))
    return token


def revoke_tokens(conn: Connection, user: str) -> None:
    conn.execute(update(ApiToken).where(ApiToken.user == user).values(revoked=True))


def authenticate(conn: Connection, token: str) -> Principal | None:
    row = conn.execute(select(ApiToken.user).where(
        ApiToken.token_hash == hash_token(token), ApiToken.revoked.is_(False))).first()
    return get_user(conn, row.user) if row is not None else None
