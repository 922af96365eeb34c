"""What every request's raw input must satisfy before a handler sees it.

No NUL character in a path parameter, a query parameter or a JSON string: PostgreSQL's text
cannot hold one (psycopg raises at the query, a 500), SQLite stores it and a later reader trips
on it, and no name, id or memo of corral means anything with one. Refused with 422 naming the
parameter (or the body field, as a path like `memo` or `command[2]`).

And the query holds only what the operation's published schema describes (`check_query`): no
unknown parameter (a misspelt filter would otherwise be ignored and list everything), a single
value for a parameter that takes one (a second one was silently dropped), and an integer
parameter in digits (`5.0` or `0.0` was taken as 5 or 0 although the schema says integer).
Each refused with 422 naming the parameter.
"""

from __future__ import annotations

import json
import re
import types
import typing
from collections import Counter
from typing import Any

from fastapi import Request

from corral.api.errors import ApiError

__all__ = ["check_query", "nul_path", "reject_nul"]


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


_INTEGER = re.compile(r"[+-]?[0-9]+")


async def check_query(request: Request) -> None:
    """An app-wide dependency (after `reject_nul`): the query against the route's declared
    query parameters (its own and its dependencies')."""
    dependant = getattr(request.scope.get("route"), "dependant", None)
    if dependant is None:
        return
    declared: dict[str, Any] = {}
    _query_fields(dependant, declared)
    counts = Counter(name for name, _ in request.query_params.multi_items())
    for name, n in counts.items():
        field = declared.get(name)
        if field is None:
            takes = ", ".join(sorted(declared)) or "none"
            raise ApiError(422, "invalid_request", f"unknown query parameter {name!r}", [(
                name, f"this operation has no such query parameter (it takes: {takes}); "
                      "remove it or fix its name")])
        kinds = _kinds(field.field_info.annotation)
        if n > 1 and not kinds & {list, tuple, set, frozenset}:
            raise ApiError(422, "invalid_request", f"query parameter {name!r} given {n} times", [
                (name, f"takes one value, given {n}: give it once")])
        if int in kinds:
            for value in request.query_params.getlist(name):
                if not _INTEGER.fullmatch(value):
                    raise ApiError(422, "invalid_request", f"{name}: expected an integer", [
                        (name, f"expected an integer in digits, not {value!r}")])


def _query_fields(dependant: Any, into: dict[str, Any]) -> None:
    for field in dependant.query_params:
        into[field.alias] = field
    for sub in dependant.dependencies:
        _query_fields(sub, into)


def _kinds(annotation: Any) -> set[Any]:
    """The outer types of an annotation, through Optional/Union: `list[str] | None` -> {list,
    NoneType}; `int | None` -> {int, NoneType}."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return set().union(*(_kinds(a) for a in typing.get_args(annotation)))
    if origin is typing.Annotated:
        return _kinds(typing.get_args(annotation)[0])
    return {origin or annotation}
