"""POST /v1/workloads without FastAPI's per-request dependency resolution, for the common case.

Profiled at 16 concurrent submissions (issue 14), FastAPI's request handler was the largest part
of the submit path after the store: `solve_dependencies` walks six dependency nodes per request
(the app-wide `reject_nul` and `check_query`, the context, the caller and its bearer scheme, the
endpoint), each checking path, query, header and cookie parameters, and the response is validated
again against its model before it is dumped. FastAPI's documented hook for such a route is a
custom `APIRoute` class (`route_class_override`), which this is.

The fast path resolves the endpoint's arguments itself when every one of them is plain, and
otherwise hands the request, untouched, to FastAPI's own handler:

- no query string (`check_query` would refuse any: the route declares none), no
  `Idempotency-Key`, `Content-Type: application/json`, no escaped NUL in the body (`reject_nul`);
- the caller verified by `corral.api.guard` (it leaves the credential in the scope);
- no dependency overridden on the app (tests that override one get FastAPI's resolution);
- the body parses as a JSON object and validates as a `WorkloadSpec` exactly as FastAPI would
  (`json.loads`, then validation of the parsed value); any error goes to FastAPI's handler, which
  answers it as before (the same 400/422 bodies, field by field).

Then it calls the same endpoint function (every check the route makes, in the same order) and
dumps its result with the route's own response field, as FastAPI's handler does after a
validation that, for an instance of the response model, returns it unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from functools import partial
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute
from pydantic import TypeAdapter, ValidationError

from corral.api.context import CREDENTIAL
from corral.spec import WorkloadSpec

__all__ = ["SubmitRoute"]

Handler = Callable[[Request], Coroutine[Any, Any, Response]]


class SubmitRoute(APIRoute):
    """The submit route: a fast path for plain requests, FastAPI's handler for the rest."""

    def get_route_handler(self) -> Handler:
        general = super().get_route_handler()
        assert self.response_model is not None
        dump = _dumper(self.response_model)

        async def handler(request: Request) -> Response:
            args = await self._plain_arguments(request)
            if args is None:
                return await general(request)  # the body read here is cached on `request`
            sub = Response()  # what the endpoint may set (status, headers), as FastAPI passes
            del sub.headers["content-length"]
            sub.status_code = None  # type: ignore[assignment]
            result = await self.endpoint(**args, response=sub)
            if isinstance(result, Response):
                return result
            # pydantic's own JSON serializer of the response model (public API), not FastAPI's
            # private ModelField.serialize_json, which older FastAPI releases lack
            out = Response(dump(result),
                           status_code=sub.status_code or self.status_code or 200,
                           media_type="application/json")
            out.headers.raw.extend(sub.headers.raw)
            return out

        return handler

    async def _plain_arguments(self, request: Request) -> dict[str, Any] | None:
        """The endpoint's arguments when the request is plain (see the module's list); None
        otherwise."""
        scope = request.scope
        found = scope.get("state", {}).get(CREDENTIAL)
        if found is None or scope.get("query_string") or request.app.dependency_overrides:
            return None
        headers = request.headers
        content_type = headers.get("content-type", "").partition(";")[0].strip().lower()
        if content_type != "application/json" or "idempotency-key" in headers:
            return None
        body = await request.body()
        if not body or b"\\u0000" in body:
            return None
        try:
            spec = WorkloadSpec.model_validate(json.loads(body))
        except (ValueError, ValidationError):  # not JSON, or not a valid spec: FastAPI says how
            return None
        return {"spec": spec, "ctx": request.app.state.corral, "who": found.principal,
                "idempotency_key": None}


def _dumper(model: Any) -> Callable[[Any], bytes]:
    """JSON of the endpoint's result as the response model says, by alias (FastAPI's default)."""
    adapter: TypeAdapter[Any] = TypeAdapter(model)
    return partial(adapter.dump_json, by_alias=True)
