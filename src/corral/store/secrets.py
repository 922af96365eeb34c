"""Named secrets: values a spec's `env` refers to by name, encrypted at rest.

    secrets (scope, name) -> sealed value, who set it, when

A secret belongs to one queue (its scope is the queue's name) or to every queue (scope ""). A
workload of queue q may use q's secrets and the global ones; where both hold a name, q's wins
(a team can shadow a platform-wide default, as a Kubernetes namespace's own Secret would).

Values are sealed with Fernet (AES-128-CBC + HMAC-SHA256, from `cryptography`) under the
server's key: `CORRAL_SECRET_KEY` (one key, or several separated by commas: the first seals,
all open, so a key can be rotated without re-entering every secret), else the file `secret-key`
in the data dir (made on first use, mode 0600). A database dump alone therefore does not leak a
value. The key never enters the database; every API replica and the loop need the same key.

Values leave this module only through `resolve` (the launch path) and `open_env` (the sealed
launch records of the agent backend); nothing returns them to an API caller, and nothing here
logs them. Names are not secret: they appear in specs, events and listings.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from sqlalchemy import Connection, Float, String, Text, delete, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, mapped_column

from corral.store import Store
from corral.store.schema import Base

__all__ = [
    "GLOBAL",
    "KEY_ENV",
    "KEY_FILE",
    "MAX_VALUE_BYTES",
    "SecretBox",
    "SecretInfo",
    "SecretMissing",
    "SecretRow",
    "SecretsUnavailable",
    "box_of",
    "delete_secret",
    "list_secrets",
    "missing",
    "open_env",
    "put_secret",
    "resolve",
    "seal_env",
]

GLOBAL: Final = ""  # the scope of a secret every queue may use
KEY_ENV: Final = "CORRAL_SECRET_KEY"
KEY_FILE: Final = "secret-key"
#: a value goes into a process environment; Linux caps one variable at 128 KiB (MAX_ARG_STRLEN)
MAX_VALUE_BYTES: Final = 64 * 1024
_NEW_KEY_HINT: Final = ("make one with: python -c \"from cryptography.fernet import Fernet; "
                        "print(Fernet.generate_key().decode())\"")


class SecretRow(Base):
    __tablename__ = "secrets"

    scope: Mapped[str] = mapped_column(String(63), primary_key=True)
    name: Mapped[str] = mapped_column(String(63), primary_key=True)
    sealed: Mapped[str] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(63))
    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)


class SecretsUnavailable(RuntimeError):
    """No key to seal or open with, or a key that does not open what is stored."""


class SecretMissing(Exception):
    """`name`, asked for by the env variable `env`, is neither the queue's nor global."""

    def __init__(self, env: str, name: str, queue: str) -> None:
        self.env, self.name, self.queue = env, name, queue
        super().__init__(f"env.{env}: {self.fix}")

    @property
    def fix(self) -> str:
        return (f"no secret {self.name!r} for queue {self.queue!r} nor a global one: create "
                f"it with `corral secrets set {self.name} --queue {self.queue}` or fix the name")


@dataclass(frozen=True, slots=True)
class SecretInfo:
    """A secret as listed: never its value."""

    name: str
    queue: str | None  # None: global
    created_by: str
    created_at: float
    updated_at: float


class SecretBox:
    """Seals and opens values under the server's key(s)."""

    def __init__(self, keys: Iterable[bytes | str]) -> None:
        found = [k.strip() for k in keys if k and k.strip()]
        if not found:
            raise SecretsUnavailable(f"no secret key given; {_NEW_KEY_HINT}")
        try:
            self._fernet = MultiFernet([Fernet(k) for k in found])
        except (ValueError, TypeError):
            raise SecretsUnavailable(
                f"{KEY_ENV}: a key is not a Fernet key (32 url-safe base64-encoded bytes); "
                f"{_NEW_KEY_HINT}") from None

    @classmethod
    def load(cls, data_dir: Path | None, environ: Mapping[str, str] | None = None) -> SecretBox:
        """The key from `CORRAL_SECRET_KEY`, else `<data_dir>/secret-key`, made (0600) when
        missing. Raises SecretsUnavailable when neither is there."""
        env = os.environ if environ is None else environ
        if env.get(KEY_ENV):
            return cls(env[KEY_ENV].split(","))
        if data_dir is None:
            raise SecretsUnavailable(f"secrets need a key: set {KEY_ENV} ({_NEW_KEY_HINT})")
        path = data_dir / KEY_FILE
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return cls([path.read_bytes()])
        with os.fdopen(fd, "wb") as f:
            f.write(Fernet.generate_key())
        return cls([path.read_bytes()])

    def seal(self, value: str) -> str:
        return self._fernet.encrypt(value.encode()).decode("ascii")

    def open(self, sealed: str) -> str:
        try:
            return self._fernet.decrypt(sealed.encode("ascii")).decode()
        except InvalidToken:
            raise SecretsUnavailable(
                "a stored secret does not open with this server's key: the key changed; "
                f"put the old key back (first in {KEY_ENV} the new one, then the old) or set "
                "the secret again") from None


def box_of(store: Store) -> SecretBox:
    box = store.secret_box
    if box is None:
        raise SecretsUnavailable(
            f"this server has no secret key: run it through `corral up` (a key in the data dir) "
            f"or set {KEY_ENV}")
    return box


def _scope(queue: str | None) -> str:
    return GLOBAL if queue is None else queue


def put_secret(conn: Connection, box: SecretBox, name: str, value: str, *,
               queue: str | None, by: str, now: float) -> bool:
    """Set (or replace) a secret; True when it is new."""
    key = {"scope": _scope(queue), "name": name}
    sealed = box.seal(value)
    done = conn.execute(update(SecretRow).where(
        SecretRow.scope == key["scope"], SecretRow.name == name).values(
        sealed=sealed, updated_at=now, created_by=by))
    if done.rowcount:
        return False
    row = {**key, "sealed": sealed, "created_by": by, "created_at": now, "updated_at": now}
    insert = (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)
    # a concurrent first set of the same name: the later one wins, as a second set would
    conn.execute(insert(SecretRow).values(row).on_conflict_do_update(
        index_elements=["scope", "name"], set_={"sealed": sealed, "updated_at": now}))
    return True


def delete_secret(conn: Connection, name: str, *, queue: str | None) -> bool:
    done = conn.execute(delete(SecretRow).where(
        SecretRow.scope == _scope(queue), SecretRow.name == name))
    return bool(done.rowcount)


def list_secrets(conn: Connection, queues: Iterable[str] | None, *,
                 include_global: bool = True) -> list[SecretInfo]:
    """The secrets of `queues` (None: every queue) and the global ones, by scope then name."""
    query = select(SecretRow.scope, SecretRow.name, SecretRow.created_by, SecretRow.created_at,
                   SecretRow.updated_at)
    if queues is not None:
        scopes = [*queues, *([GLOBAL] if include_global else [])]
        query = query.where(SecretRow.scope.in_(scopes))
    elif not include_global:
        query = query.where(SecretRow.scope != GLOBAL)
    rows = conn.execute(query.order_by(SecretRow.scope, SecretRow.name))
    return [SecretInfo(r.name, r.scope or None, r.created_by, r.created_at, r.updated_at)
            for r in rows]


def _found(conn: Connection, queue: str, names: Iterable[str]) -> dict[str, str]:
    """name -> sealed value, the queue's own over the global one."""
    wanted = sorted(set(names))
    if not wanted:
        return {}
    rows = conn.execute(select(SecretRow.scope, SecretRow.name, SecretRow.sealed).where(
        SecretRow.name.in_(wanted), or_(SecretRow.scope == queue, SecretRow.scope == GLOBAL)))
    found: dict[str, str] = {}
    for r in sorted(rows, key=lambda r: r.scope != GLOBAL):  # global first, the queue's over it
        found[r.name] = r.sealed
    return found


def missing(conn: Connection, queue: str, refs: Mapping[str, str]) -> list[SecretMissing]:
    """The references (env variable -> secret name) that name no secret `queue` may use."""
    found = _found(conn, queue, refs.values())
    return [SecretMissing(env, name, queue) for env, name in refs.items() if name not in found]


def resolve(conn: Connection, box: SecretBox, queue: str,
            refs: Mapping[str, str]) -> dict[str, str]:
    """env variable -> value for each reference; raises SecretMissing for the first that names
    no secret now (deleted since the submission)."""
    found = _found(conn, queue, refs.values())
    out = {}
    for env, name in refs.items():
        if name not in found:
            raise SecretMissing(env, name, queue)
        out[env] = box.open(found[name])
    return out


def seal_env(box: SecretBox, values: Mapping[str, str]) -> str:
    """Resolved values as one sealed blob (the agent backend's stored launch records)."""
    return box.seal(json.dumps(dict(values), sort_keys=True))


def open_env(box: SecretBox, sealed: str) -> dict[str, Any]:
    opened: dict[str, Any] = json.loads(box.open(sealed))
    return opened
