"""What every request handler needs: the store, the submission checks, logs, and the caller."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from corral.api.errors import ApiError
from corral.api.limits import ApiLimits, TokenBuckets
from corral.backends.base import LogSource
from corral.control.clock import Clock, SystemClock
from corral.control.leader import Leadership
from corral.control.submission import Submissions
from corral.store import Store
from corral.store import auth as A
from corral.store.auth import Credential, Principal

__all__ = ["CREDENTIAL", "ApiContext", "Caller", "context", "require_admin"]

CREDENTIAL = "corral_credential"  # where corral.api.guard leaves the verified credential


@dataclass
class ApiContext:
    """logs: where worker logs are read (the leader's backend); None on an API-only replica.
    log_lock serializes log reads with the loop's own backend calls (backends are single-threaded).
    limits: body sizes, request rates and timeouts (`corral.api.limits`)."""

    store: Store
    submissions: Submissions
    clock: Clock = field(default_factory=SystemClock)
    logs: LogSource | None = None
    leadership: Leadership | None = None
    backend_name: str | None = None
    log_lock: threading.Lock = field(default_factory=threading.Lock)
    limits: ApiLimits = field(default_factory=ApiLimits.from_env)
    buckets: TokenBuckets = field(default_factory=TokenBuckets)
    #: token digest -> (credential, valid until): saves three queries per request. A revoked
    #: token, a deleted user or a membership change made through this process clears it at once
    #: (`forget_credentials`); another API replica sees it within `auth_cache_s`.
    auth_cache_s: float = 5.0
    _auth: dict[str, tuple[Credential, float]] = field(default_factory=dict)

    def verify(self, token: str) -> Credential | None:
        hit = self.cached_credential(token)
        if hit is not None:
            return hit
        key, now = A.hash_token(token), self.clock.now()
        with self.store.read() as conn:
            found = A.verify(conn, token, now)
        if found is not None:
            if len(self._auth) > 10_000:
                self._auth.clear()
            ttl = self.auth_cache_s
            if found.token.expires_at is not None:  # never cached past its expiry
                ttl = min(ttl, found.token.expires_at - now)
            self._auth[key] = (found, time.monotonic() + ttl)
        return found

    def authenticate(self, token: str) -> Principal | None:
        found = self.verify(token)
        return found.principal if found is not None else None

    def cached_credential(self, token: str) -> Credential | None:
        """The credential for `token` if verified within `auth_cache_s`; None: ask the store."""
        hit = self._auth.get(A.hash_token(token))
        if hit is None or hit[1] <= time.monotonic():
            return None
        expires = hit[0].token.expires_at
        return hit[0] if expires is None or expires > self.clock.now() else None

    def cached_caller(self, token: str) -> Principal | None:
        hit = self.cached_credential(token)
        return hit.principal if hit is not None else None

    def forget_credentials(self) -> None:
        """After a change to tokens, users or memberships: the next request reads the store."""
        self._auth.clear()


# The dependencies are `async def` on purpose: FastAPI runs a plain `def` dependency in its
# threadpool, a thread hop (and GIL hand-off) per dependency per request; these either return
# at once or hand only their store read to a thread.
async def context(request: Request) -> ApiContext:
    ctx: ApiContext = request.app.state.corral
    return ctx


_bearer = HTTPBearer(auto_error=False, description="an API token: `corral up` prints the admin's")


async def caller(
    request: Request,
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    # The context straight from the app, not Depends(context): each dependency node costs
    # FastAPI a resolution step on every request of every endpoint.
    found = request.scope.get("state", {}).get(CREDENTIAL)  # checked by corral.api.guard
    if found is not None:
        return found.principal  # type: ignore[no-any-return]
    ctx: ApiContext = request.app.state.corral
    if creds is None or not creds.credentials:
        raise ApiError(401, "unauthorized", "send an API token: Authorization: Bearer <token>")
    who = ctx.cached_caller(creds.credentials)
    if who is None:
        who = await run_in_threadpool(ctx.authenticate, creds.credentials)
    if who is None:
        raise ApiError(401, "unauthorized", "the API token is unknown or revoked")
    return who


Caller = Annotated[Principal, Depends(caller)]


def require_admin(who: Principal) -> None:
    if not who.is_admin:
        raise ApiError(403, "forbidden", f"this needs the admin role; {who.name} is a {who.role}")
