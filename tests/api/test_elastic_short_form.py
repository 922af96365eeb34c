"""An elastic job written as issue 13 writes it, `workers: {min: 2, max: 8}`, over the HTTP API:
accepted as `elastic: {min_workers, max_workers}` (corral.spec.elastic.normalise_workers_range),
so the dry run, the stored spec and GET show the normalised form; refusals name `workers`."""

from __future__ import annotations

import jsonschema
import pytest

from corral.store import Store

from .harness import Api, build, job


@pytest.fixture
def api(store: Store) -> Api:
    return build(store)


def test_the_short_form_is_submitted_and_read_back_as_elastic(api: Api) -> None:
    body = job(name="short", workers={"min": 2, "max": 4, "resize_interval": "1m"})
    dry = api.client.post("/v1/dry-run", json=body, headers=api.admin)
    assert dry.status_code == 200, dry.text
    placed = dry.json()["placements"]  # a core gang of 2 and two one-worker extras
    assert dry.json()["outcome"] == "start" and {k: len(v) for k, v in placed.items()} == {
        "candidate": 2, "candidate-e1": 1, "candidate-e2": 1}
    assert any("elastic: 2 to 4 workers" in n for n in dry.json()["notes"]), dry.json()

    r = api.client.post("/v1/workloads", json=body, headers=api.admin)
    assert r.status_code == 201, r.text
    ids = [w["id"] for w in r.json()["workloads"]]
    assert ids[1:] == [f"{ids[0]}-e1", f"{ids[0]}-e2"]  # the core gang, then its extras
    got = api.client.get(f"/v1/workloads/{ids[0]}", headers=api.admin).json()
    assert got["spec"]["workers"] == 2
    assert got["spec"]["elastic"] == {"min_workers": 2, "max_workers": 4,
                                      "resize_interval": 60.0}
    assert got["elastic"]["min_workers"] == 2 and got["elastic"]["max_workers"] == 4


@pytest.mark.parametrize(("workers", "extra", "field"), [
    ({"min": 4, "max": 2}, {}, "workers"),
    ({"min": 0, "max": 2}, {}, "workers.min"),
    ({"min": 2, "max": 4}, {"elastic": {"min_workers": 2, "max_workers": 4}}, "workers"),
    ({"min": 1, "max": 2}, {"kind": "interactive"}, "workers"),
], ids=["max-below-min", "min-zero", "both-forms", "not-a-job"])
def test_a_bad_range_is_422_naming_workers_and_stores_nothing(
        api: Api, workers: dict[str, int], extra: dict[str, object], field: str) -> None:
    before = api.rows()
    for path in ("/v1/workloads", "/v1/dry-run"):
        r = api.client.post(path, json=job(workers=workers, **extra), headers=api.admin)
        assert r.status_code == 422, r.text
        assert field in [p["field"] for p in r.json()["problems"]], r.text
    assert api.rows() == before


@pytest.mark.parametrize("where", ["openapi", "file"])
def test_the_published_schemas_take_the_range_as_the_server_does(api: Api, where: str) -> None:
    """The API's OpenAPI and `corral schema workload` (docs/schema/workload.json) describe
    `workers` as a number or the range: an editor does not flag the short form, and what the
    schema refuses the server refuses too."""
    if where == "openapi":
        doc = api.client.get("/openapi.json").json()
        schema = {**doc["components"]["schemas"]["WorkloadSpec"], "components": doc["components"]}
    else:
        from corral.cli.schema import Which, schema_of
        schema = schema_of(Which.WORKLOAD)
    validator = jsonschema.Draft202012Validator(schema)
    for workers, valid in [(2, True), ({"min": 2, "max": 4}, True),
                           ({"min": 1, "max": 3, "resize_interval": "5m"}, True),
                           ({"min": 0, "max": 4}, False), ({"min": 2}, False),
                           ({"min": 2, "max": 4, "size": 1}, False), ("2", False)]:
        body = job(workers=workers)
        assert validator.is_valid(body) is valid, workers
        r = api.client.post("/v1/dry-run", json=body, headers=api.admin)
        assert (r.status_code == 200) is valid, (workers, r.text)
