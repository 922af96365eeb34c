"""Numbers in every spec are taken as written (issue 15's hostile input, the sweep after 08b4d21
and f3a7c20 extended to the pool file): YAML reads `min_nodes: true` as a bool and pydantic's lax
mode made it 1; `count: "2"` became 2. Each is refused, naming the field."""

from __future__ import annotations

import copy
import importlib
import pkgutil
import types
import typing
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError
from pydantic.types import Strict

import corral.spec
from corral.spec import PoolSpec, SpecError
from corral.spec.load import load_pool, load_workloads

POOL: dict[str, Any] = {
    "providers": [{"name": "p", "kind": "static", "prices": {"H100": 2.0},
                   "node_groups": [{"name": "g", "count": 2, "gpus": 8, "gpu_model": "H100",
                                    "gpu_memory": "80GiB"}]}],
    "queues": [{"name": "q", "quota_gpus": 8}],
    "scheduler": {"scoring": {"bestfit": 1}},
}
# (where in POOL, the value written, the field the error names, a word of the message)
REFUSED = [
    (("providers", 0, "min_nodes"), True, "providers[0].min_nodes", "true or false"),
    (("providers", 0, "max_spend_per_hour"), "5", "providers[0].max_spend_per_hour", "string"),
    (("providers", 0, "prices", "H100"), True, "providers[0].prices.H100", "true or false"),
    (("providers", 0, "node_groups", 0, "count"), "2", "providers[0].node_groups[0].count",
     "string"),
    (("providers", 0, "node_groups", 0, "gpus"), True, "providers[0].node_groups[0].gpus",
     "true or false"),
    (("queues", 0, "quota_gpus"), True, "queues[0].quota_gpus", "true or false"),
    (("queues", 0, "priority"), 1.5, "queues[0].priority", "integer"),
    (("queues", 0, "weight"), "2", "queues[0].weight", "string"),
    (("scheduler", "scoring", "bestfit"), True, "scheduler.scoring.bestfit", "true or false"),
    (("scheduler", "max_moves"), False, "scheduler.max_moves", "true or false"),
]


def _with(path: tuple[Any, ...], value: object) -> dict[str, Any]:
    pool = copy.deepcopy(POOL)
    at: Any = pool
    for key in path[:-1]:
        at = at.setdefault(key, {}) if isinstance(key, str) else at[key]
    at[path[-1]] = value
    return pool


def test_the_base_pool_is_valid_and_whole_numbers_are_numbers() -> None:
    pool = PoolSpec.model_validate(_with(("queues", 0, "weight"), 2))  # an int for a float: fine
    assert pool.queues[0].weight == 2.0


@pytest.mark.parametrize(("path", "value", "field", "word"), REFUSED,
                         ids=[".".join(map(str, p)) + f"={v!r}" for p, v, _, _ in REFUSED])
def test_a_pool_number_written_as_a_bool_or_a_string_is_refused_naming_it(
        path: tuple[Any, ...], value: object, field: str, word: str) -> None:
    with pytest.raises(ValidationError) as err:
        PoolSpec.model_validate(_with(path, value))
    message = str(SpecError.from_validation(err.value, source="pool.yaml"))
    assert f"pool.yaml: {field}:" in message and word in message, message


def _plain(annotation: object) -> object:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args[0] if len(args) == 1 else None
    return annotation


def _lax_number_fields() -> list[str]:
    """Every int or float field of a spec model that takes a bool or a numeric string: neither
    strict nor parsed by its own validator (sizes, durations and cores parse strings and refuse
    bools themselves, `corral.spec.quantities`)."""
    lax = []
    for info in pkgutil.iter_modules(corral.spec.__path__):
        module = importlib.import_module(f"corral.spec.{info.name}")
        for cls in vars(module).values():
            if not (isinstance(cls, type) and issubclass(cls, BaseModel)
                    and cls.__module__ == module.__name__):
                continue
            for name, field in cls.model_fields.items():
                if _plain(field.annotation) not in (int, float):
                    continue
                if not any((isinstance(m, Strict) and m.strict) or "Validator" in type(m).__name__
                           for m in field.metadata):
                    lax.append(f"{cls.__name__}.{name}")
    return lax


def test_no_spec_model_has_a_lax_number_field() -> None:
    assert _lax_number_fields() == []


POOL_YAML = """
providers:
  - name: p
    max_spend_per_hour: 1e3
    prices: {H100: 2.5e0}
    node_groups:
      - {name: g, count: 2, gpus: 8, gpu_model: H100, gpu_memory: 80GiB, price_per_gpu_hour: 2e-1}
queues: [{name: q, quota_gpus: 8}]
"""


def test_a_pool_file_reads_exponents_as_numbers_as_yaml_1_2_does(tmp_path: Path) -> None:
    """PyYAML reads YAML 1.1, where `2e-1` and `1e3` are strings: with strict numbers a pool
    that said `price_per_gpu_hour: 2e-1` would be refused (review of 187ed95)."""
    path = tmp_path / "pool.yaml"
    path.write_text(POOL_YAML)
    pool = load_pool(path)
    assert pool.providers[0].max_spend_per_hour == 1000.0
    assert pool.providers[0].prices == {"H100": 2.5}
    assert pool.providers[0].node_groups[0].price_per_gpu_hour == 0.2
    path.write_text(POOL_YAML.replace("1e3", "1e999"))
    with pytest.raises(SpecError, match="max_spend_per_hour"):
        load_pool(path)  # a float now, and not a finite one


def test_a_workload_file_keeps_exponent_text_as_text(tmp_path: Path) -> None:
    """An environment value is text: `LR: 1e-3` stays the string `1e-3`, as it always was."""
    path = tmp_path / "work.yaml"
    path.write_text("workloads:\n- {name: a, queue: q, command: [x], env: {LR: 1e-3}}\n")
    assert load_workloads(path)[0].env == {"LR": "1e-3"}


@pytest.mark.parametrize(("written", "read"), [("1e3", "the number 1000.0"), ("2024", "the number 2024"),
                                               ("true", "true or false")])
def test_a_name_yaml_reads_as_a_number_is_refused_saying_to_quote_it(
        tmp_path: Path, written: str, read: str) -> None:
    """YAML 1.2 (above) makes `name: 1e3` the number 1000.0: the refusal says what YAML read and
    the fix (quotes), not pydantic's bare "Input should be a valid string" (review note)."""
    path = tmp_path / "pool.yaml"
    path.write_text(POOL_YAML.replace("name: p", f"name: {written}"))
    with pytest.raises(SpecError) as e:
        load_pool(path)
    assert e.value.problems == [
        ("providers[0].name", f"expected a string, not {read}: put the value in quotes to keep it text")]
