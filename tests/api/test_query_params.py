"""The query holds what the operation's published schema says, or is refused with a 422 naming
the parameter (issue 15: bench/api_fuzz.py's negative mode had GET /v1/workloads, /v1/nodes,
/v1/tokens and /v1/audit answer 200 to a float for an integer, a parameter given twice, and
parameters the operation does not have, which were silently ignored)."""

from __future__ import annotations

import pytest

from corral.store import Store

from .harness import Api, build


@pytest.fixture
def api(store: Store) -> Api:
    return build(store)


@pytest.mark.parametrize("path, parameter, value", [
    ("/v1/workloads?cursor=0.0", "cursor", "'0.0'"),
    ("/v1/workloads?cursor=526654180764864.0", "cursor", "'526654180764864.0'"),
    ("/v1/workloads?limit=5.0", "limit", "'5.0'"),
    ("/v1/audit?after=577.0", "after", "'577.0'"),
    ("/v1/audit?limit=1.5", "limit", "'1.5'"),
    ("/v1/nodes?limit=2.0", "limit", "'2.0'"),
])
def test_an_integer_parameter_takes_digits_only(api: Api, path: str, parameter: str,
                                                value: str) -> None:
    r = api.client.get(path, headers=api.admin)
    assert r.status_code == 422, r.text
    assert r.json()["problems"] == [
        {"field": parameter, "message": f"expected an integer in digits, not {value}"}]


@pytest.mark.parametrize("path, parameter", [
    ("/v1/tokens?user=6.0&user=6.0", "user"),
    ("/v1/tokens?user=root&user=ann", "user"),
    ("/v1/workloads?user=a&user=b", "user"),
    ("/v1/workloads?cursor=1&cursor=2", "cursor"),
    ("/v1/audit?after=1&after=2", "after"),
    ("/v1/nodes?state=cordoned&state=unhealthy", "state"),
])
def test_a_single_value_parameter_given_twice_is_refused(api: Api, path: str,
                                                         parameter: str) -> None:
    # before, the last one won silently
    r = api.client.get(path, headers=api.admin)
    assert r.status_code == 422, r.text
    [problem] = r.json()["problems"]
    assert problem["field"] == parameter and "give it once" in problem["message"]


@pytest.mark.parametrize("path, parameter", [
    ("/v1/workloads?qeue=team-a", "qeue"),   # a misspelt filter listed everything
    ("/v1/tokens?v=1", "v"),
    ("/v1/audit?replace=1&after=577&limit=1&actor=Tg1", "replace"),
    ("/v1/nodes?gpu=H100", "gpu"),
])
def test_an_unknown_parameter_is_refused_naming_it_and_what_is_taken(
        api: Api, path: str, parameter: str) -> None:
    r = api.client.get(path, headers=api.admin)
    assert r.status_code == 422, r.text
    [problem] = r.json()["problems"]
    assert problem["field"] == parameter and "it takes: " in problem["message"]


def test_what_the_schema_describes_is_still_taken(api: Api) -> None:
    for path in ("/v1/workloads?queue=team-a&queue=team-b&state=running&limit=5&cursor=0",
                 "/v1/workloads?user=ann&group=g", "/v1/tokens?user=ann",
                 "/v1/audit?after=0&limit=1&actor=root&action=cancel",
                 "/v1/nodes?limit=1&after=n0&state=schedulable&gpu_model=H100&provider=local"):
        r = api.client.get(path, headers=api.admin)
        assert r.status_code == 200, (path, r.text)


@pytest.mark.parametrize("body, field", [
    ({"expires_in_s": True}, "expires_in_s"), ({"uses": True}, "uses"),
    ({"expires_in_s": "Infinity"}, "expires_in_s"),
])
def test_a_join_token_takes_no_boolean_for_a_number(api: Api, body: dict[str, object],
                                                     field: str) -> None:
    """Lax pydantic took `expires_in_s: true` as a one-second token (found by the fuzz)."""
    r = api.client.post("/v1/agent-tokens", json=body, headers=api.admin)
    assert r.status_code == 422, r.text
    assert [p["field"] for p in r.json()["problems"]] == [field]
    ok = api.client.post("/v1/agent-tokens", json={"expires_in_s": 60, "uses": 2},
                         headers=api.admin)
    assert ok.status_code == 201, ok.text
