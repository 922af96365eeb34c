"""The opening every WebSocket endpoint of the API shares (`corral ssh`, `corral port-forward`):
read a bounded integer from the query, authenticate the upgrade's bearer token, run the
endpoint's own check (the rights of `corral logs`, the worker to reach) on a thread, and turn
a refusal into a close code with the reason.

A refusal is an accepted WebSocket closed at once with code 44xx/45xx (the HTTP status + 4000)
and a reason of at most 120 bytes: a close before the accept reaches the client as a bare HTTP
403, which carries no reason to print.

Once open, a stream lives within two limits (`SessionClock`, the server's `ApiLimits`): an idle
limit (no byte either way for that long, as the kubelet's streaming-connection-idle-timeout,
4 h by default, counts for `kubectl exec` and `port-forward`) and a longest session (as
Teleport pairs client_idle_timeout with max_session_ttl). Shells default to 1 h idle and 12 h
at most, the order of hosted notebooks' and shells' own (a Dataproc interactive session: 1 h
idle); forwards to the kubelet's 4 h idle and 12 h. Over either, the server closes the client
with code 4408 and a reason naming the limit and its setting, and ends what it carried (a
shell is hung up).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from fastapi import WebSocket
from starlette.concurrency import run_in_threadpool

from corral.api.context import ApiContext
from corral.api.errors import ApiError
from corral.store.auth import Principal

__all__ = ["CLOSE", "LIMIT_CLOSE", "Allowed", "SessionClock", "close_code", "open_checked",
           "over_limit", "principal", "query_int", "refuse", "until_over"]

T = TypeVar("T")

#: close codes: 4401 no or a bad token, 4403/4404/4409/4422 as the HTTP statuses, 4501 not on
#: this backend, 4502/4504 the worker or its agent could not be reached, 4503 the server
#: cannot start what reaches it (srun)
CLOSE = {401: 4401, 403: 4403, 404: 4404, 409: 4409, 422: 4422, 501: 4501, 502: 4502,
         503: 4503, 504: 4504}
#: an open stream closed by the server at its idle or longest-session limit
LIMIT_CLOSE = 4408


def close_code(status: int) -> int:
    return CLOSE.get(status, 4400)


def query_int(ws: WebSocket, name: str, default: int | None, low: int, high: int) -> int | None:
    """The query parameter as an int in [low, high]; `default` when absent; None when bad."""
    raw = ws.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        return None
    return value if low <= value <= high else None


async def principal(ctx: ApiContext, ws: WebSocket) -> Principal | None:
    scheme, _, token = ws.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        return None
    found = await run_in_threadpool(ctx.verify, token.strip())
    return None if found is None else found.principal


async def refuse(ws: WebSocket, code: int, reason: str) -> None:
    """Accepted, then closed with the reason (module docstring)."""
    await ws.accept()
    await ws.close(code=code, reason=reason[:120])


@dataclass(frozen=True)
class Allowed(Generic[T]):
    """What the endpoint's check returned for an authenticated caller (None is a value)."""

    value: T


async def open_checked(ws: WebSocket,
                       check: Callable[[ApiContext, Principal], T]) -> Allowed[T] | None:
    """The caller authenticated, then `check(ctx, who)` run on a thread (it reads the store);
    None once the WebSocket was refused: no or a bad token (4401), or the check's ApiError
    (its status as the close code, its message as the reason)."""
    ctx: ApiContext = ws.app.state.corral
    who = await principal(ctx, ws)
    if who is None:
        await refuse(ws, 4401, "send Authorization: Bearer <token>")
        return None
    try:
        return Allowed(await run_in_threadpool(check, ctx, who))
    except ApiError as e:
        await refuse(ws, close_code(e.status), e.message)
        return None


@dataclass
class SessionClock:
    """The idle and longest-session limits of one stream, sans-io (`now` is given: seconds on
    any monotonic clock). `idle_s` / `max_s` of 0 turn that limit off; `setting` names the
    server settings in the reason, e.g. "SHELL" for CORRAL_API_SHELL_IDLE_S.

    Worked example, idle 60 s, longest 600 s, started at 0: a byte at 50 moves the idle
    deadline to 110; with nothing after, `over(110)` says idle; bytes every 30 s keep it open
    until `over(600)` says longest.
    """

    idle_s: float
    max_s: float
    started: float
    setting: str = "SHELL"
    last: float = field(init=False)

    def __post_init__(self) -> None:
        self.last = self.started

    def touch(self, now: float) -> None:
        """A byte went one way or the other."""
        self.last = max(self.last, now)

    def deadline(self) -> float:
        """When the stream is over a limit unless a byte moves first (inf: never)."""
        ends = [float("inf")]
        if self.idle_s > 0:
            ends.append(self.last + self.idle_s)
        if self.max_s > 0:
            ends.append(self.started + self.max_s)
        return min(ends)

    def over(self, now: float) -> str | None:
        """The reason the stream must close at `now`, or None."""
        if self.max_s > 0 and now >= self.started + self.max_s:
            return (f"the session reached its longest, {self.max_s:g} s "
                    f"(the server's CORRAL_API_{self.setting}_MAX_S)")
        if self.idle_s > 0 and now >= self.last + self.idle_s:
            return (f"idle for {self.idle_s:g} s "
                    f"(the server's CORRAL_API_{self.setting}_IDLE_S)")
        return None


async def over_limit(clock: SessionClock) -> str:
    """Sleeps until the stream is over one of its limits; the reason (close with it)."""
    while (reason := clock.over(time.monotonic())) is None:
        await asyncio.sleep(min(max(clock.deadline() - time.monotonic(), 0.05), 3600.0))
    return reason


async def until_over(clock: SessionClock, tasks: list[asyncio.Task[None]]) -> str | None:
    """Until one of `tasks` ends (a side left: None) or the stream is over a limit first (its
    reason: close the client with LIMIT_CLOSE and it); the tasks are cancelled either way."""
    limit = asyncio.create_task(over_limit(clock))
    try:
        await asyncio.wait([*tasks, limit], return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()
    if limit.done() and not any(t.done() for t in tasks):
        return limit.result()
    limit.cancel()
    return None
