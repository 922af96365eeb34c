"""`corral schema workload|pool`: JSON Schema of the workload file and the pool file, made from
the pydantic models the server validates with, for editors (completion and checks as you type;
see docs/specs.md). Committed copies live in docs/schema/; tests/cli/test_schema.py keeps them
current.

Human quantities are validated by parsers (`corral.spec.quantities`), which pydantic's own
schema would show as their output type: `memory: 512MiB` would be marked wrong in an editor
(the OpenAPI WorkloadSpec has that fault). Here each parser's input is described instead, with
the parser's own pattern.
"""

from __future__ import annotations

import enum
import json
from typing import Annotated, Any

import typer
from pydantic import BaseModel, Field
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

from corral.spec import quantities as Q
from corral.spec.pool import PoolSpec
from corral.spec.workload import WorkloadSpec

__all__ = ["Which", "schema_command", "schema_of"]

DRAFT = "https://json-schema.org/draft/2020-12/schema"


def _quantity(pattern: str, number: str, examples: list[Any]) -> JsonSchemaValue:
    return {"anyOf": [{"type": "number", "minimum": 0, "description": number},
                      {"type": "string", "pattern": f"^(?:{pattern})$"}],
            "examples": examples}


# keyed by the parser's name; a test holds that each still exists in corral.spec.quantities
QUANTITIES: dict[str, JsonSchemaValue] = {
    "parse_size_mib": _quantity(Q._SIZE.pattern, "MiB", ["80GiB", "512MiB", 1024]),
    "parse_duration_s": _quantity(Q._DURATION.pattern, "seconds", ["30m", "2h", 90]),
    "_cores_to_milli": _quantity(Q._CPU.pattern, "cores", [4, 0.5, "500m"]),
}


class _HumanQuantities(GenerateJsonSchema):
    def function_before_schema(self, schema: core_schema.BeforeValidatorFunctionSchema
                               ) -> JsonSchemaValue:
        parser = getattr(schema["function"]["function"], "__name__", "")
        if parser in QUANTITIES:
            return dict(QUANTITIES[parser])
        return super().function_before_schema(schema)


class _WorkloadFile(BaseModel):
    """The `workloads: [...]` form; a file may also hold one workload or a bare list."""

    workloads: list[WorkloadSpec] = Field(description="submitted all or nothing, in order")


class Which(enum.StrEnum):
    WORKLOAD = "workload"
    POOL = "pool"


def schema_of(which: Which) -> dict[str, Any]:
    if which is Which.POOL:
        body = PoolSpec.model_json_schema(schema_generator=_HumanQuantities)
        return {"$schema": DRAFT, "title": "corral pool file", **_untitled(body)}
    body = _WorkloadFile.model_json_schema(schema_generator=_HumanQuantities)
    defs = body.pop("$defs", {})
    return {"$schema": DRAFT, "title": "corral workload file",
            "description": "corral submit FILE: one workload, a list of them, or workloads: "
                           "[...] (see docs/specs.md)",
            "anyOf": [{"$ref": "#/$defs/WorkloadSpec"},
                      {"type": "array", "items": {"$ref": "#/$defs/WorkloadSpec"}},
                      {k: v for k, v in body.items() if k != "title"}],
            "$defs": defs}


def _cores_default(node: Any) -> None:
    """A CPU default is held in milli-cores (1000); in the file it is written in cores (1)."""
    if isinstance(node, dict):
        if node.get("examples") == QUANTITIES["_cores_to_milli"]["examples"] and isinstance(
                node.get("default"), int):
            node["default"] = node["default"] / 1000
        for value in node.values():
            _cores_default(value)
    elif isinstance(node, list):
        for value in node:
            _cores_default(value)


def _untitled(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != "title"}


def render(which: Which) -> str:
    schema = schema_of(which)
    _cores_default(schema)
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def schema_command(which: Annotated[Which, typer.Argument(help="workload or pool")]) -> None:
    """Print the JSON Schema of a workload file or a pool file (for editor completion)."""
    typer.echo(render(which), nl=False)
