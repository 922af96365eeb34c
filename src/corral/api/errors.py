"""API errors: one JSON shape for every 4xx, with the field and the fix.

    ApiError(status, code, message, problems)   raised by handlers on purpose
    SpecError                  -> 422 invalid_request (from corral.spec), problems per field
    RequestValidationError     -> 422 invalid_request (FastAPI's own validation), same shape
    IllegalTransition          -> 409 conflict (cancel a finished workload)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from corral.control.lifecycle import IllegalTransition
from corral.sdk.models import ErrorBody, Problem
from corral.spec import SpecError
from corral.spec.errors import _message, _path

__all__ = ["ApiError", "install_handlers", "not_found"]


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str,
                 problems: Sequence[tuple[str, str]] = ()) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.problems = status, code, message, problems


def not_found(what: str, name: str) -> ApiError:
    return ApiError(404, "not_found", f"{what} {name!r} does not exist or is not visible to you")


def _body(code: str, message: str, problems: Sequence[tuple[str, str]] = ()) -> dict[str, Any]:
    return ErrorBody(error=code, message=message,
                     problems=[Problem(field=f, message=m) for f, m in problems]).model_dump()


def install_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return JSONResponse(_body(exc.code, exc.message, exc.problems), exc.status, headers)

    @app.exception_handler(SpecError)
    async def _spec_error(_: Request, exc: SpecError) -> JSONResponse:
        return JSONResponse(_body("invalid_request", str(exc), exc.problems), 422)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for err in exc.errors():
            loc = list(err.get("loc", ()))
            where = loc[0] if loc else ""
            path = _path("", loc[1:]) if where == "body" else _path("", loc[1:] or loc)
            problems.append((path or str(where), _message(dict(err))))
        message = "; ".join(f"{p}: {m}" if p else m for p, m in problems) or "invalid request"
        return JSONResponse(_body("invalid_request", message, problems), 422)

    @app.exception_handler(IllegalTransition)
    async def _illegal(_: Request, exc: IllegalTransition) -> JSONResponse:
        return JSONResponse(_body("conflict", str(exc)), 409)
