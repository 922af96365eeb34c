"""`corral schema workload|pool` and the committed copies in docs/schema/: current with the
models, accepting what the models accept (human quantities such as `memory: 512MiB`) and
refusing what they refuse (an unknown field, a size that is not one)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from corral.cli.schema import QUANTITIES, Which, render
from corral.spec import quantities
from corral.spec.pool import PoolSpec
from corral.spec.workload import WorkloadSpec

jsonschema = pytest.importorskip("jsonschema")
ROOT = Path(__file__).resolve().parents[2]


def _validator(which: Which) -> Any:
    return jsonschema.Draft202012Validator(json.loads(render(which)))


@pytest.mark.parametrize("which", list(Which), ids=str)
def test_the_committed_copies_are_current(which: Which) -> None:
    committed = (ROOT / "docs" / "schema" / f"{which}.json").read_text()
    assert committed == render(which), (
        f"docs/schema/{which}.json is stale: run `corral schema {which} > "
        f"docs/schema/{which}.json` and commit it")


def test_the_command_prints_the_schema() -> None:
    out = subprocess.run([sys.executable, "-m", "corral.cli.main", "schema", "pool"],
                         capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout == render(Which.POOL)


@pytest.mark.parametrize(("which", "path"), [
    (Which.WORKLOAD, "examples/jobs.yaml"), (Which.WORKLOAD, "examples/serve/service.yaml"),
    (Which.WORKLOAD, "examples/sweep.yaml"), (Which.POOL, "examples/pool.yaml")],
    ids=lambda v: str(v))
def test_the_examples_are_valid(which: Which, path: str) -> None:
    document = yaml.safe_load((ROOT / path).read_text())
    errors = [e.message for e in _validator(which).iter_errors(document)]
    assert errors == []


BASE = {"name": "t", "queue": "default", "command": ["python", "t.py"]}


@pytest.mark.parametrize(("fields", "valid"), [
    ({"memory": "512MiB", "cpu": "500m", "gpus": 0.25}, True),
    ({"memory": 1024, "cpu": 4, "max_runtime": "2h"}, True),
    ({"max_runtime": "soon"}, False),
    ({"memory": "lots"}, False),
    ({"cpu": "4 cores"}, False),
    ({"gpu": 1}, False),  # the field is gpus
    ({"gpus": -1}, False),
], ids=["human-units", "plain-numbers", "not-a-duration", "not-a-size", "not-cores", "unknown-field",
        "negative-gpus"])
def test_the_schema_and_the_model_agree(fields: dict[str, Any], valid: bool) -> None:
    spec = {**BASE, **fields}
    assert _validator(Which.WORKLOAD).is_valid(spec) is valid
    assert _validator(Which.WORKLOAD).is_valid([spec]) is valid
    assert _validator(Which.WORKLOAD).is_valid({"workloads": [spec]}) is valid
    try:
        WorkloadSpec.model_validate(spec)
        model_valid = True
    except ValueError:
        model_valid = False
    assert model_valid is valid


def test_a_pool_with_a_misspelt_field_is_refused() -> None:
    pool = yaml.safe_load((ROOT / "examples" / "pool.yaml").read_text())
    pool["queue"] = pool.pop("queues")
    assert not _validator(Which.POOL).is_valid(pool)
    with pytest.raises(ValueError):
        PoolSpec.model_validate(pool)


def test_each_described_parser_is_still_there() -> None:
    """The schema describes these parsers' inputs by name: a rename must fail here, not leave
    editors marking valid files wrong."""
    assert {p: callable(getattr(quantities, p, None)) for p in QUANTITIES} == dict.fromkeys(
        QUANTITIES, True)


def test_the_cpu_default_is_written_in_cores() -> None:
    workload = json.loads(render(Which.WORKLOAD))
    assert workload["$defs"]["WorkloadSpec"]["properties"]["cpu"]["default"] == 1.0
