"""Reading a spec file (YAML or JSON) into plain data, bounded and with errors that name the
file: no model, no scheduling core, so that a client (`corral submit`) reads files without the
server's libraries; `corral.spec.load` validates what this returns."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import yaml

from corral.spec.errors import SpecError

__all__ = ["MAX_DEPTH", "MAX_FILE_BYTES", "MAX_NODES", "read_document"]

MAX_FILE_BYTES: Final = 8 * 2**20  # a spec or pool file
MAX_NODES: Final = 500_000  # values in a document, aliases expanded
MAX_DEPTH: Final = 64


def read_document(path: str | Path, *, exponent_floats: bool = False) -> Any:
    """The YAML or JSON document in `path`, bounded: a file over MAX_FILE_BYTES, a document
    that expands (through aliases) to more than MAX_NODES values or nests deeper than
    MAX_DEPTH, and numbers that are not finite (.inf, .nan) are refused with one message each,
    before anything large is built. `exponent_floats`: `1e9` and `2e-1` are numbers, as YAML
    1.2 and JSON read them (`_ExponentLoader`): for the pool file, whose numbers are strict;
    a workload file keeps YAML 1.1's strings there (`env: {LR: 1e-3}` is the text `1e-3`)."""
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
        loader = _ExponentLoader if exponent_floats else yaml.SafeLoader
        data = _parse(raw.decode("utf-8"), loader)
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


class _ExponentLoader(yaml.SafeLoader):
    """PyYAML's safe loader reads YAML 1.1, where `1e9` and `2e-1` (an exponent, no dot) are
    strings, and so is `1.5e3` (1.1 wants `1.5e+3`); YAML 1.2 and JSON call them numbers.
    The pool file's numbers are strict (a string is refused), so it reads them as floats."""


_ExponentLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+.0123456789"))


def _parse(text: str, loader_class: type[yaml.SafeLoader]) -> Any:
    """yaml.safe_load, with the composed node graph measured before it is constructed: an
    alias is the same node again, so a billion-laughs document is a small graph that expands
    to a huge value; its expanded size is counted here without expanding it."""
    loader = loader_class(text)
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
