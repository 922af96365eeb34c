"""What every request's raw input must satisfy before a handler sees it.

No NUL character in a path parameter, a query parameter or a JSON string: PostgreSQL's text
cannot hold one (psycopg raises at the query, a 500), SQLite stores it and a later reader trips
on it, and no name, id or memo of corral means anything with one. Refused with 422 naming the
parameter (or the body field, as a path like `memo` or `command[2]`).
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request

from corral.api.errors import ApiError

__all__ = ["nul_path", "reject_nul"]


async def reject_nul(request: Request) -> None:
    """An app-wide dependency. The body is checked only when its bytes hold an escaped NUL
    (`\\u0000`; a raw NUL byte is not valid JSON and fails parsing anyway)."""
    for name, value in request.path_params.items():
        if isinstance(value, str) and "\x00" in value:
            raise _nul(name, "path")
    for name, value in request.query_params.multi_items():
        if "\x00" in value or "\x00" in name:
            raise _nul(name.replace("\x00", "\\0"), "query")
    if request.method in ("POST", "PUT", "PATCH"):
        body = await request.body()
        if b"\\u0000" in body:
            try:
                where = nul_path(json.loads(body))
            except ValueError:  # not JSON: body validation says so
                return
            if where is not None:
                raise _nul(where or "body", "body")


def nul_path(value: Any, at: str = "") -> str | None:
    """The path of the first string (key or value) holding a NUL, or None."""
    if isinstance(value, str):
        return at if "\x00" in value else None
    if isinstance(value, dict):
        for k, v in value.items():
            here = f"{at}.{k}" if at else str(k)
            if "\x00" in str(k):
                return here.replace("\x00", "\\0")
            if (found := nul_path(v, here)) is not None:
                return found
    if isinstance(value, list):
        for i, v in enumerate(value):
            if (found := nul_path(v, f"{at}[{i}]")) is not None:
                return found
    return None


def _nul(field: str, where: str) -> ApiError:
    return ApiError(422, "invalid_request", f"{where} parameter {field!r} holds a NUL character "
                    "(\\0); remove it" if where != "body" else
                    f"{field} holds a NUL character (\\0); remove it", [(field, "holds a NUL character")])
