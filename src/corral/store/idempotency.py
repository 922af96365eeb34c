"""Idempotency keys of submissions: (user, key) -> the body's digest and the group it created.

`claim` runs inside the submission's own transaction, so the key exists exactly when the
workloads do: a retry after a lost acknowledgement finds them, and a crash before the commit
leaves neither. Two concurrent requests with one key: the second's insert fails on the primary
key, inside a savepoint, and `KeyTaken` tells the caller to read the first one's result.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, insert, select
from sqlalchemy.exc import IntegrityError

from corral.store.schema import IdempotencyKey

__all__ = ["KeyTaken", "Remembered", "claim", "find"]


class KeyTaken(Exception):
    """Another submission holds this key (it committed first)."""


@dataclass(frozen=True, slots=True)
class Remembered:
    body_hash: str
    group_id: str


def find(conn: Connection, user: str, key: str) -> Remembered | None:
    row = conn.execute(select(IdempotencyKey.body_hash, IdempotencyKey.group_id).where(
        IdempotencyKey.user == user, IdempotencyKey.key == key)).first()
    return Remembered(row.body_hash, row.group_id) if row is not None else None


def claim(conn: Connection, user: str, key: str, body_hash: str, group_id: str,
          now: float) -> None:
    """Record the key for `group_id`; KeyTaken (the transaction still usable) if it is held."""
    try:
        with conn.begin_nested():
            conn.execute(insert(IdempotencyKey).values(
                user=user, key=key, body_hash=body_hash, group_id=group_id, created_at=now))
    except IntegrityError:
        raise KeyTaken(key) from None
