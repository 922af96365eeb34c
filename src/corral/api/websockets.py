"""The opening every WebSocket endpoint of the API shares (`corral ssh`, `corral port-forward`):
read a bounded integer from the query, authenticate the upgrade's bearer token, run the
endpoint's own check (the rights of `corral logs`, the worker to reach) on a thread, and turn
a refusal into a close code with the reason.

A refusal is an accepted WebSocket closed at once with code 44xx/45xx (the HTTP status + 4000)
and a reason of at most 120 bytes: a close before the accept reaches the client as a bare HTTP
403, which carries no reason to print.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from fastapi import WebSocket
from starlette.concurrency import run_in_threadpool

from corral.api.context import ApiContext
from corral.api.errors import ApiError
from corral.store.auth import Principal

__all__ = ["CLOSE", "Allowed", "close_code", "open_checked", "principal", "query_int", "refuse"]

T = TypeVar("T")

#: close codes: 4401 no or a bad token, 4403/4404/4409/4422 as the HTTP statuses, 4501 not on
#: this backend, 4502/4504 the worker or its agent could not be reached
CLOSE = {401: 4401, 403: 4403, 404: 4404, 409: 4409, 422: 4422, 501: 4501, 502: 4502}


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
