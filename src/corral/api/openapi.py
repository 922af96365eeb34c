"""The published OpenAPI schema, made to describe what the server really accepts and answers.

FastAPI derives request schemas from the parsed types: `memory` is an integer of MiB once
parsed, but the server takes "512MiB" as well, so a client (or a fuzzer) reading the schema
would never send the forms people write, and would be told a plain string is wrong. Fields whose
type is parsed from a human quantity (`corral.spec.quantities`) are published with their input
forms instead: a number or a string of the shape the parser takes.

Every operation also documents the errors any request may get, all in the one shape
(`ErrorBody`): 400 (the body is not JSON), 401, 403, 404, 409, 413 (body or spec too large),
422, 429 (rate limit, with `Retry-After`).
"""

from __future__ import annotations

import re
import typing
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from corral.api.guard import PUBLIC_PATHS
from corral.spec import WorkloadSpec
from corral.spec import quantities as Q

__all__ = ["REQUEST_MODELS", "input_schemas", "install_openapi", "path_methods"]

#: request bodies with quantity fields, published with their input forms
REQUEST_MODELS: tuple[type[BaseModel], ...] = (WorkloadSpec,)
_METHODS = {"get", "put", "post", "delete", "patch", "head", "options"}

_NUMBER = r"\s*\d{1,15}(\.\d{1,15})?\s*"
# The parsers' bounds (corral.spec's limits): 1 PiB, 366 days, 10,000 cores.
_MAX_SIZE_MIB, _MAX_DURATION_S, _MAX_CORES = 1 << 30, 366 * 86400, 10_000


def input_schemas() -> dict[Callable[..., Any], dict[str, Any]]:
    """The input form of each quantity parser: what a request may send for such a field."""
    return {
        Q.parse_size_mib: {"anyOf": [
            {"type": "number", "minimum": 0, "maximum": _MAX_SIZE_MIB},
            {"type": "string", "pattern": f"^{_NUMBER}([KMGT]i?B?|[kmgt]i?b?)?\\s*$"}],
            "description": "a size: a number of MiB, or a string such as 512MiB, 80GiB, 1.5G"},
        Q.parse_duration_s: {"anyOf": [
            {"type": "number", "minimum": 0, "maximum": _MAX_DURATION_S},
            {"type": "string", "pattern": f"^{_NUMBER}(ms|s|m|h|d)?\\s*$"}],
            "description": "a duration: a number of seconds, or a string such as 90s, 30m, 2h"},
        Q._cores_to_milli: {"anyOf": [
            {"type": "number", "minimum": 0, "maximum": _MAX_CORES},
            {"type": "string", "pattern": f"^{_NUMBER}m?\\s*$"}],
            "description": "CPU cores: a number (4, 0.5) or a string of cores or millicores "
                           "('2', '500m')"},
    }


_ERROR = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}}
_COMMON = {
    "401": "no token, or an unknown, expired or revoked one",
    "403": "the token's user may not do this",
    "404": "no such object, or not visible to this user",
    "409": "the object's state forbids it",
    "413": "the body (1 MiB) or a workload spec (256 KiB) is too large",
    "422": "the request is wrong: `problems` names each field and the fix",
    "429": "this token's request rate is used up; retry after `Retry-After` seconds",
}


def install_openapi(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version,
                                 description=app.description, routes=app.routes)
            _publish_input_forms(schema)
            _publish_name_patterns(schema)
            _document_errors(schema)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _publish_input_forms(schema: dict[str, Any]) -> None:
    """Replace the parsed type of every quantity field of the request models by its input form."""
    forms = input_schemas()
    components = schema.get("components", {}).get("schemas", {})
    for model in REQUEST_MODELS:
        props = (components.get(model.__name__) or components.get(f"{model.__name__}-Input")
                 or {}).get("properties", {})
        for name, info in model.model_fields.items():
            parser = _parser_of(info.metadata, info.annotation, forms)
            if parser is None or name not in props:
                continue
            published = dict(forms[parser])
            if "anyOf" in props[name] and {"type": "null"} in props[name]["anyOf"]:
                published["anyOf"] = [*published["anyOf"], {"type": "null"}]
            if "default" in props[name]:
                published["default"] = props[name]["default"]
            if props[name].get("description"):
                published["description"] = f"{props[name]['description']}: " \
                                           f"{published['description']}"
            props[name] = {**published, "title": props[name].get("title", name)}


#: names corral checks with `corral.spec.workload.check_name`, per request model
NAME_PATTERN = "^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$"
_NAME_FIELDS = {"WorkloadSpec": ("name", "queue"), "QueueIn": ("name", "parent"),
                "UserIn": ("name",)}


def _publish_name_patterns(schema: dict[str, Any]) -> None:
    components = schema.get("components", {}).get("schemas", {})
    for model, names in _NAME_FIELDS.items():
        props = (components.get(model) or components.get(f"{model}-Input") or {}).get(
            "properties", {})
        for name in names:
            for branch in [props.get(name, {}), *props.get(name, {}).get("anyOf", [])]:
                if branch.get("type") == "string":
                    branch.update(pattern=NAME_PATTERN, maxLength=63)
                    branch.pop("minLength", None)


def _parser_of(metadata: list[Any], annotation: Any,
               forms: dict[Callable[..., Any], Any]) -> Callable[..., Any] | None:
    """The quantity parser behind a field: in its own metadata, or inside `X | None`."""
    found = [getattr(m, "func", None) for m in metadata]
    for arg in typing.get_args(annotation):  # Annotated[int, BeforeValidator(...)] | None
        found += [getattr(m, "func", None) for m in getattr(arg, "__metadata__", ())]
    return next((f for f in found if f in forms), None)


def path_methods(schema: dict[str, Any]) -> list[tuple[re.Pattern[str], list[str]]]:
    """Each published path as a pattern, with the methods it serves: the `Allow` of a 405."""
    found = []
    for path, operations in schema.get("paths", {}).items():
        pattern = re.sub(r"\\\{[^}]*:path\\\}", ".+", re.escape(path))
        pattern = re.sub(r"\\\{[^}]*\\\}", "[^/]+", pattern)
        methods = sorted(m.upper() for m in operations if m in _METHODS)
        found.append((re.compile(f"^{pattern}$"), methods))
    return found


def _document_errors(schema: dict[str, Any]) -> None:
    for path, operations in schema.get("paths", {}).items():
        for op in operations.values():
            responses = op.setdefault("responses", {})
            if "requestBody" in op:
                responses.setdefault("400", {"description": "the body is not valid JSON",
                                             **_ERROR})
            if path in PUBLIC_PATHS or not path.startswith("/v1/"):
                continue
            for status, why in _COMMON.items():
                entry = responses.setdefault(status, {"description": why})
                entry["content"] = _ERROR["content"]  # FastAPI's own 422 shape is not used
                if status == "429":
                    entry["headers"] = {"Retry-After": {
                        "description": "seconds until the next request may go",
                        "schema": {"type": "integer"}}}
