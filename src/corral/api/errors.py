"""API errors: one JSON shape for every error, with the field and the fix.

    {"error": code, "message": sentence, "problems": [{"field": ..., "message": ...}]}

    ApiError(status, code, message, problems)   raised by handlers on purpose
    SpecError                  -> 422 invalid_request (from corral.spec), problems per field
    RequestValidationError     -> 422 invalid_request (FastAPI's own validation), same shape;
                                  400 invalid_json when the body is not JSON at all
    IllegalTransition          -> 409 conflict (cancel a finished workload)
    HTTPException (Starlette)  -> its status: 404 not_found (no such endpoint), 405
                                  method_not_allowed (with the path's real `Allow`), 408, 413
                                  (`corral.api.guard`), 400 bad_request
    DataError (the database)   -> 422 invalid_request: a value the database cannot hold that
                                  validation let through (the last line of defence)
    anything else              -> 500 internal_error, same shape, the detail only in the log
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException

from corral.control.lifecycle import IllegalTransition
from corral.sdk.models import ErrorBody, Problem
from corral.spec import SpecError
from corral.spec.errors import _message, _path

__all__ = ["ApiError", "error_body", "install_handlers", "not_found"]

log = logging.getLogger("corral.api")

_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
          405: "method_not_allowed", 408: "request_timeout", 409: "conflict",
          413: "too_large", 422: "invalid_request", 429: "rate_limited"}


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str,
                 problems: Sequence[tuple[str, str]] = (),
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.problems = status, code, message, problems
        self.headers = headers


def not_found(what: str, name: str) -> ApiError:
    shown = repr(name) if len(name) <= 80 else f"{name[:60]!r}... ({len(name)} characters)"
    return ApiError(404, "not_found", f"{what} {shown} does not exist or is not visible to you")


def error_body(code: str, message: str, problems: Sequence[tuple[str, str]] = ()) -> dict[str, Any]:
    return ErrorBody(error=code, message=_printable(message),
                     problems=[Problem(field=_printable(f), message=_printable(m))
                               for f, m in problems]).model_dump()


def _printable(text: str) -> str:
    """`text` as UTF-8 can carry it: a message may quote a user's value, and a JSON body may hold
    a lone surrogate ("\\ud800"), which no response can encode; it is shown escaped instead."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _validation_problems(exc: RequestValidationError) -> tuple[int, str, list[tuple[str, str]]]:
    problems = []
    for err in exc.errors():
        if err.get("type") == "json_invalid":  # not JSON at all: say where it broke
            at = err.get("loc", ("body", 0))[-1]
            reason = (err.get("ctx") or {}).get("error", "malformed JSON")
            return 400, "invalid_json", [("body", f"the body is not valid JSON: {reason} "
                                                  f"(at character {at})")]
        loc = list(err.get("loc", ()))
        where = loc[0] if loc else ""
        path = _path("", loc[1:]) if where == "body" else _path("", loc[1:] or loc)
        problems.append((path or str(where), _message(dict(err))))
    return 422, "invalid_request", problems


def allowed_methods(request: Request) -> list[str]:
    """Every method the API serves at this request's path, as published (the `Allow` of a
    405; Starlette's names only the first route that matched the path)."""
    from corral.api.openapi import path_methods  # late: corral.api.openapi imports this module

    path = request.url.path
    return sorted({m for pattern, methods in path_methods(request.app.openapi())
                   if pattern.match(path) for m in methods})


def install_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else {}
        return JSONResponse(error_body(exc.code, exc.message, exc.problems), exc.status,
                            {**headers, **(exc.headers or {})})

    @app.exception_handler(SpecError)
    async def _spec_error(_: Request, exc: SpecError) -> JSONResponse:
        return JSONResponse(error_body("invalid_request", str(exc), exc.problems), 422)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        status, code, problems = _validation_problems(exc)
        message = "; ".join(f"{p}: {m}" if p else m for p, m in problems) or "invalid request"
        if code == "invalid_json":
            message = problems[0][1]
        return JSONResponse(error_body(code, message, problems), status)

    @app.exception_handler(IllegalTransition)
    async def _illegal(_: Request, exc: IllegalTransition) -> JSONResponse:
        return JSONResponse(error_body("conflict", str(exc)), 409)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        headers = dict(exc.headers or {})
        code = getattr(exc, "code", None) or _CODES.get(exc.status_code, "error")
        message, field = str(exc.detail), getattr(exc, "field", "")
        if exc.status_code == 404 and message == "Not Found":
            message = f"no such endpoint: {request.method} {request.url.path}"
        if exc.status_code == 405:
            allow = allowed_methods(request)
            headers["Allow"] = ", ".join(allow)
            message = f"{request.method} is not allowed here; use {' or '.join(allow)}"
        problems = [(field, message)] if field else []
        return JSONResponse(error_body(code, message, problems), exc.status_code, headers)

    @app.exception_handler(DataError)
    async def _data(_: Request, exc: DataError) -> JSONResponse:
        log.warning("the database refused a value validation let through: %s", exc.orig)
        return JSONResponse(error_body("invalid_request", "a value in the request cannot be "
                                       "stored (out of range or holding a NUL character)"), 422)

    @app.exception_handler(Exception)
    async def _internal(_: Request, exc: Exception) -> JSONResponse:
        log.error("internal error", exc_info=exc)
        return JSONResponse(error_body("internal_error", "the server failed on this request; "
                                       "it is logged, retrying may help"), 500)
