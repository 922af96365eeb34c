"""A service's bearer token held in a secret (`auth: {token_secret: NAME}`): which secret it may
name, and the digest the gateway checks tokens against.

    submission     the service's queue must be allowed to use NAME (the queue's own secret or
                   a global one), else refused naming `auth.token_secret` (`problems`)
    every step     the route feed asks `TokenDigests` for the SHA-256 of NAME's current value
                   (read at most every `ttl_s`, so `corral secrets set NAME` takes effect
                   within seconds without a redeploy); the gateway only ever sees the digest
    gone           a secret removed since, or a server without the key: no token is accepted
                   (the service fails closed, never public) and a warning names the secret

Kubernetes' Ingress basic-auth (`nginx.ingress.kubernetes.io/auth-secret`) and Knative's
per-service secrets work the same way: the route refers to a Secret by name, the proxy reads it.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable
from typing import Final

from sqlalchemy import Connection

from corral.spec import WorkloadSpec
from corral.store import Store
from corral.store import secrets as SEC

__all__ = ["FIELD", "TokenDigests", "problems", "token_secret"]

log = logging.getLogger(__name__)

#: where a submission's refusal points
FIELD: Final = "auth.token_secret"
#: how long a digest read from the store is used before it is read again (loop clock)
TTL_S: Final = 5.0

Key = tuple[str, str]  # (queue, secret name)


def token_secret(spec: WorkloadSpec) -> str | None:
    """The secret a service's token is in; None for a digest, a public service or a job."""
    return spec.auth.token_secret if spec.kind == "service" and spec.auth else None


def problems(conn: Connection, spec: WorkloadSpec) -> list[tuple[str, str]]:
    """(field, fix) when the spec names a token secret its queue may not use."""
    name = token_secret(spec)
    if name is None:
        return []
    return [(FIELD, m.fix) for m in SEC.missing(conn, spec.queue, {FIELD: name})]


class TokenDigests:
    """(queue, secret name) -> the SHA-256 of the secret's value, or None when it cannot be
    read (gone, or no key). Called on the control loop's thread."""

    def __init__(self, store: Store, ttl_s: float = TTL_S) -> None:
        self.store, self.ttl_s = store, ttl_s
        self._known: dict[Key, str | None] = {}
        self._read_at: float | None = None

    def digests(self, wanted: Iterable[Key], now: float) -> dict[Key, str | None]:
        keys = set(wanted)
        stale = self._read_at is None or now - self._read_at >= self.ttl_s
        if keys and (stale or not keys <= set(self._known)):
            self._known = self._read(keys)
            self._read_at = now
        return {k: self._known.get(k) for k in keys}

    def _read(self, keys: set[Key]) -> dict[Key, str | None]:
        out: dict[Key, str | None] = {}
        try:
            box = SEC.box_of(self.store)
        except SEC.SecretsUnavailable as e:
            log.warning("service tokens in secrets cannot be read (%s): those services accept "
                        "no token", e)
            return dict.fromkeys(keys)
        with self.store.read() as conn:
            for queue, name in sorted(keys):
                try:
                    value = SEC.resolve(conn, box, queue, {FIELD: name})[FIELD]
                except (SEC.SecretMissing, SEC.SecretsUnavailable) as e:
                    if self._known.get((queue, name)) is not None or (queue, name) not in \
                            self._known:
                        log.warning("service token secret %r of queue %r: %s; the service "
                                    "accepts no token until it is set", name, queue, e)
                    out[(queue, name)] = None
                    continue
                # stripped as the gateway strips the token it is sent (a value set from a file
                # or a pipe often ends in a newline)
                out[(queue, name)] = hashlib.sha256(value.strip().encode()).hexdigest()
        return out
