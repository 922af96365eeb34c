"""Loading spec files (YAML or JSON) with errors that name the file, the field and the fix."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from corral.spec.errors import SpecError
from corral.spec.pool import PoolSpec
from corral.spec.quantities import DurationS
from corral.spec.workload import WorkloadSpec

MAX_FILE_BYTES: Final = 8 * 2**20  # a spec or pool file
MAX_NODES: Final = 500_000  # values in a document, aliases expanded
MAX_DEPTH: Final = 64


class RunningSpec(BaseModel):
    """For dry runs: where an already running workload sits, so a plan can preempt or move it.

    The key is `placed_on`, never `on`: YAML 1.1 reads a bare `on` (like yes, no, off) as a
    boolean, so `on: [...]` would arrive as the key `True`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    started_ago: DurationS = 0.0
    placed_on: list[dict[str, Any]] = Field(
        default_factory=list, description="[{node, devices: [..]}] per worker"
    )

    @model_validator(mode="before")
    @classmethod
    def _not_a_boolean_key(cls, data: Any) -> Any:
        if isinstance(data, dict) and any(isinstance(k, bool) for k in data):
            raise ValueError("a key here was read as a boolean: YAML takes a bare on, off, yes "
                             "or no for true or false; where the workers run is placed_on: "
                             "[{node: ..., devices: [...]}]")
        return data


class WorkloadEntry(WorkloadSpec):
    submitted_ago: DurationS = 0.0
    running: RunningSpec | None = None


class WorkloadFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    workloads: list[WorkloadEntry]


def read_document(path: str | Path) -> Any:
    """The YAML or JSON document in `path`, bounded: a file over MAX_FILE_BYTES, a document
    that expands (through aliases) to more than MAX_NODES values or nests deeper than
    MAX_DEPTH, and numbers that are not finite (.inf, .nan) are refused with one message each,
    before anything large is built."""
    p = Path(path)
    try:
        with open(p, "rb") as f:
            raw = f.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise SpecError([("", f"cannot read the file: {exc.strerror}")], str(p)) from None
    if len(raw) > MAX_FILE_BYTES:
        raise SpecError([("", f"the file is larger than {MAX_FILE_BYTES // 2**20} MiB; split "
                              "it into several files")], str(p))
    try:
        data = _parse(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise SpecError([("", f"not UTF-8 text (byte {exc.start})")], str(p)) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise SpecError(
            [("", f"{where}not valid YAML ({getattr(exc, 'problem', exc)})")], str(p)
        ) from None
    except (_TooLarge, RecursionError) as exc:
        raise SpecError([("", str(exc) if isinstance(exc, _TooLarge) else
                          f"nested deeper than {MAX_DEPTH} levels; flatten it")], str(p)) from None
    problems = list(_non_finite(data, ""))
    if problems:
        raise SpecError(problems[:20], str(p))
    return data


class _TooLarge(Exception):
    pass


def _parse(text: str) -> Any:
    """yaml.safe_load, with the composed node graph measured before it is constructed: an
    alias is the same node again, so a billion-laughs document is a small graph that expands
    to a huge value; its expanded size is counted here without expanding it."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _expanded_size(node)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _expanded_size(root: yaml.Node) -> int:
    sizes: dict[int, int] = {}  # by id(node): shared (aliased) nodes are counted once each
    stack: list[tuple[yaml.Node, int, bool]] = [(root, 0, False)]
    open_: set[int] = set()
    while stack:
        node, depth, done = stack.pop()
        if done:
            open_.discard(id(node))
            children = _children(node)
            sizes[id(node)] = 1 + sum(sizes[id(c)] for c in children)
            if sizes[id(node)] > MAX_NODES:
                raise _TooLarge(f"the document expands to more than {MAX_NODES:,} values "
                                "(through YAML aliases?); write it out plainly and smaller")
            continue
        if id(node) in sizes:
            continue
        if id(node) in open_:
            raise _TooLarge("a YAML alias refers to the value that contains it; remove it")
        if depth > MAX_DEPTH:
            raise _TooLarge(f"nested deeper than {MAX_DEPTH} levels; flatten it")
        open_.add(id(node))
        stack.append((node, depth, True))
        stack.extend((c, depth + 1, False) for c in _children(node) if id(c) not in sizes)
    return sizes[id(root)]


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def _non_finite(value: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, float) and not math.isfinite(value):
        yield path, f"{value} is not a finite number; write a number (or a quantity like 80GiB)"
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _non_finite(v, f"{path}.{k}" if path else str(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _non_finite(v, f"{path}[{i}]")


def load_pool(path: str | Path) -> PoolSpec:
    data = read_document(path)
    try:
        return PoolSpec.model_validate(data or {})
    except ValidationError as exc:
        raise SpecError.from_validation(exc, source=str(path)) from None


def load_workloads(path: str | Path) -> list[WorkloadEntry]:
    data = read_document(path)
    if isinstance(data, list):
        data = {"workloads": data}
    try:
        return list(WorkloadFile.model_validate(data or {}).workloads)
    except ValidationError as exc:
        raise SpecError.from_validation(exc, source=str(path)) from None
