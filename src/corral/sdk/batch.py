"""A list of workloads submitted all or nothing (`corral submit FILE`, the SDK's `Pipeline`).

`depends_on` may name a workload submitted earlier in the same file by its `name`: the item is
dry-run without that dependency (its parent does not exist yet) and submitted with the parent's
new group id in its place. A name of a later item (or of itself) is refused: parents come first,
so a file cannot hold a cycle (one is named as such).

Every item is checked first by the server's dry run (the same validation and admission as a
submission, nothing stored): a malformed item, an unknown queue, a queue the caller may not
submit to, or work that can never fit refuses the whole file, each refusal named by its item
(`workloads[2].gpus: ...`), an unknown field with the field it was probably meant to be. Only
when every item passes are they submitted, in file order. A refusal between the check and
the submission (the pool changed) stops there and says which items were stored.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from corral.sdk.errors import Conflict, CorralError, Forbidden, InvalidRequest, NotFound

if TYPE_CHECKING:  # annotations only: `--help` imports neither httpx nor pydantic (issue 14)
    from corral.sdk import models as M
    from corral.sdk.client import Client

__all__ = ["FieldNames", "Item", "Refused", "check", "submit_all", "submit_or_refuse"]

# the item is at fault (not the connection, the token or the server): reported with its index
_ITEM_ERRORS = (InvalidRequest, Forbidden, NotFound, Conflict)


@dataclass
class Item:
    """One workload of the file and what became of it."""

    index: int
    name: str
    problems: list[tuple[str, str]] = field(default_factory=list)
    dry_run: M.DryRunResult | None = None
    submitted: M.Submitted | None = None

    @property
    def outcome(self) -> str:
        if self.submitted is not None:
            return "submitted"
        if self.problems:
            return "refused"
        return "checked"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"index": self.index, "name": self.name, "outcome": self.outcome}
        if self.submitted is not None:
            out.update(self.submitted.model_dump())
        if self.dry_run is not None:
            out["dry_run"] = self.dry_run.model_dump()
        if self.problems:
            out["problems"] = [{"field": f, "message": m} for f, m in self.problems]
        return out


def _prefix(index: int, path: str) -> str:
    return f"workloads[{index}]" + (("." + path) if path and not path.startswith("[") else path)


def _problems(index: int, error: CorralError, fields: FieldNames) -> list[tuple[str, str]]:
    found = [(_prefix(index, f), m + fields.suggestion(f, m)) for f, m in error.problems]
    return found or [(_prefix(index, ""), error.message)]


_VERB = {"succeeded": "succeed", "failed": "fail", "ended": "end"}


def _deps(doc: dict[str, Any]) -> list[Any]:
    deps = doc.get("depends_on")
    return deps if isinstance(deps, list) else []


def _dep_id(dep: Any) -> Any:
    return dep.get("id") if isinstance(dep, dict) else None


def order_problems(docs: Sequence[dict[str, Any]]) -> dict[int, list[tuple[str, str]]]:
    """Items whose depends_on names an item of the file that does not come before them."""
    first: dict[Any, int] = {}
    for i, doc in enumerate(docs):
        first.setdefault(doc.get("name"), i)
    out: dict[int, list[tuple[str, str]]] = {}
    for i, doc in enumerate(docs):
        for j, dep in enumerate(_deps(doc)):
            k = first.get(_dep_id(dep))
            if k is None or k < i:
                continue
            cycle = _cycle(docs, first, i, k)
            why = (f"forms a cycle ({' -> '.join(cycle)}); depends_on must not loop"
                   if cycle else f"names {_dep_id(dep)!r}, which comes later in the file; "
                   "put it before this item")
            out.setdefault(i, []).append((_prefix(i, f"depends_on[{j}].id"), why))
    return out


def _cycle(docs: Sequence[dict[str, Any]], first: dict[Any, int], start: int, nxt: int
           ) -> list[str]:
    """The names on a path from item `nxt` back to `start` through depends_on, if any."""
    seen = {start}
    stack = [(nxt, [start, nxt])]
    while stack:
        at, path = stack.pop()
        if at == start:
            return [str(docs[i].get("name")) for i in path]
        if at in seen:
            continue
        seen.add(at)
        stack.extend((first[_dep_id(d)], [*path, first[_dep_id(d)]])
                     for d in _deps(docs[at]) if _dep_id(d) in first)
    return []


def _without_file_deps(doc: dict[str, Any], names: set[Any]) -> dict[str, Any]:
    """`doc` for its dry run: dependencies on items of the file left out (not stored yet)."""
    kept = [d for d in _deps(doc) if _dep_id(d) not in names]
    if len(kept) == len(_deps(doc)):
        return doc
    return {**doc, "depends_on": kept}


def _with_group_ids(doc: dict[str, Any], submitted: dict[Any, str]) -> dict[str, Any]:
    """`doc` with each dependency on an earlier item of the file given its new group id."""
    if not any(_dep_id(d) in submitted for d in _deps(doc)):
        return doc
    return {**doc, "depends_on": [
        {**d, "id": submitted[_dep_id(d)]} if _dep_id(d) in submitted else d
        for d in _deps(doc)]}


def check(c: Client, docs: Sequence[dict[str, Any]]) -> list[Item]:
    """Dry-run every item; each comes back with its problems (none: it would be accepted)."""
    fields = FieldNames.from_client(c)
    items = []
    misordered = order_problems(docs)
    names = {doc.get("name") for doc in docs}
    for i, doc in enumerate(docs):
        item = Item(i, str(doc.get("name", "?")))
        if i in misordered:
            item.problems = misordered[i]
            items.append(item)
            continue
        try:
            item.dry_run = c.dry_run(_without_file_deps(doc, names))
        except CorralError as e:
            if not isinstance(e, _ITEM_ERRORS):
                raise
            item.problems = _problems(i, e, fields)
        else:
            item.dry_run.notes += [
                f"depends_on: {_dep_id(d)} (earlier in this file) must "
                f"{_VERB.get(d.get('when', 'succeeded'), 'succeed')}: held until it does"
                for d in _deps(doc) if _dep_id(d) in names and isinstance(d, dict)]
            if item.dry_run.outcome == "rejected":
                item.problems = [(_prefix(i, ""), f"would be rejected: {item.dry_run.reason_code}:"
                                  f" {item.dry_run.reason_message}")]
        items.append(item)
    return items


def submit_all(c: Client, docs: Sequence[dict[str, Any]], items: list[Item]) -> Iterator[Item]:
    """Submit the checked items in order; stop at the first refusal (yielded with its
    problems) so that nothing after it is stored."""
    fields = FieldNames.from_client(c)
    submitted: dict[Any, str] = {}  # name -> group id, of this file's items stored so far
    for doc, item in zip(docs, items, strict=True):
        try:
            item.submitted = c.submit(_with_group_ids(doc, submitted))
            submitted.setdefault(doc.get("name"), item.submitted.group_id)
        except CorralError as e:
            if not isinstance(e, _ITEM_ERRORS):
                raise
            item.problems = _problems(item.index, e, fields)
            yield item
            return
        yield item


class Refused(InvalidRequest):
    """Some items were refused. `.items`: every item with its outcome; `.problems`: each
    refusal named by its item (`workloads[2].gpus`). `.stored`: the items stored before a
    refusal that came between the check and the submission (none when the check refused)."""

    def __init__(self, message: str, items: list[Item]) -> None:
        problems = [p for i in items for p in i.problems]
        super().__init__(message + "".join(f"\n  {f}: {m}" for f, m in problems),
                         status=422, code="refused", problems=problems)
        self.items = items
        self.stored = [i for i in items if i.submitted is not None]


def submit_or_refuse(c: Client, docs: Sequence[dict[str, Any]]) -> list[Item]:
    """Check every item, then submit them all in order; `Refused` if any is refused (nothing
    stored, unless the pool changed between the check and the submission: then `.stored`)."""
    items = check(c, docs)
    refused = [i for i in items if i.problems]
    if refused:
        raise Refused(f"{len(refused)} of {len(items)} workloads refused: nothing submitted",
                      items)
    done = list(submit_all(c, docs, items))
    if done and done[-1].problems:
        stored = [i.submitted.group_id for i in done if i.submitted is not None]
        raise Refused(f"stopped: {len(stored)} of {len(items)} submitted before the refusal "
                      f"({', '.join(stored) or 'none'}); the rest were not", items)
    return items


class FieldNames:
    """The fields a workload may have, from a JSON Schema's definitions (read once, when an
    unknown field is reported): `gpu` -> did you mean `gpus`? The server's OpenAPI document
    (`from_client`) or the spec models themselves (the SDK's builder)."""

    def __init__(self, components: Callable[[], dict[str, Any]]) -> None:
        self._read = components
        self._schemas: dict[str, Any] | None = None

    @classmethod
    def from_client(cls, client: Client) -> FieldNames:
        def read() -> dict[str, Any]:
            try:
                doc = client._call("GET", "/openapi.json").json()
                return dict(doc.get("components", {}).get("schemas", {}))
            except (CorralError, ValueError):
                return {}
        return cls(read)

    def suggestion(self, path: str, message: str) -> str:
        if not message.startswith("unknown field") or not path:
            return ""
        *parents, name = path.replace("[", ".[").split(".")
        known = self._known(parents)
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        return f" (did you mean {close[0]!r}?)" if close else ""

    def _known(self, parents: list[str]) -> list[str]:
        schema = self._resolve(self._components().get("WorkloadSpec", {}))
        for part in parents:
            if part.startswith("["):
                schema = self._resolve(schema.get("items", {}))
            else:
                schema = self._resolve(schema.get("properties", {}).get(part, {}))
        return list(schema.get("properties", {}))

    def _resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        for _ in range(8):  # $ref, or the one object of an anyOf (a field that may be null)
            if "$ref" in schema:
                schema = self._components().get(schema["$ref"].rsplit("/", 1)[-1], {})
            elif "anyOf" in schema:
                objects = [s for s in schema["anyOf"] if "$ref" in s or "properties" in s]
                schema = objects[0] if objects else {}
            else:
                break
        return schema

    def _components(self) -> dict[str, Any]:
        if self._schemas is None:
            self._schemas = self._read()
        return self._schemas
