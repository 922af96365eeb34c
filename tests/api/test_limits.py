"""Limits and the one error shape, in process on SQLite and PostgreSQL: authentication before the
body is read, body and spec sizes, the per-token rate, the body read timeout, NUL characters and
out-of-range ids (500s on PostgreSQL before), 404/405 and malformed JSON in the same shape, and
the published schema describing the input the server takes."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import jsonschema
import pytest

from corral.api.limits import ApiLimits, TokenBuckets
from corral.store import Store

from .harness import Api, build, job

SHAPE = {"error", "message", "problems"}


@pytest.fixture
def api(store: Store) -> Api:
    return build(store)


def _asgi(api: Api, method: str, path: str, headers: dict[str, str],
          chunks: list[bytes] | None = None, stall: bool = False) -> tuple[int, dict, int]:
    """Call the app as a server would; (status, JSON body, body chunks the app asked for).
    `stall`: after the chunks, the client sends nothing more (a trickling body)."""
    reads, sent = 0, []
    pending = list(chunks or [])

    async def receive() -> dict[str, Any]:
        nonlocal reads
        reads += 1
        if pending:
            body = pending.pop(0)
            return {"type": "http.request", "body": body, "more_body": bool(pending) or stall}
        if stall:
            await asyncio.Event().wait()  # never: the client stopped sending
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": method, "scheme": "http", "path": path, "raw_path": path.encode(),
             "query_string": b"", "root_path": "", "client": ("127.0.0.1", 1),
             "server": ("127.0.0.1", 80),
             "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()]}
    asyncio.run(api.client.app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], json.loads(body), reads


def test_an_unauthenticated_body_is_refused_before_a_byte_is_read(api: Api) -> None:
    before = api.rows()
    status, body, reads = _asgi(api, "POST", "/v1/workloads",
                                {"content-type": "application/json", "content-length": "9"},
                                [b"x" * 9])
    assert (status, body["error"], reads) == (401, "unauthorized", 0)
    status, _, reads = _asgi(api, "POST", "/v1/workloads", {"authorization": "Bearer nope",
                                                             "content-length": "9"}, [b"x" * 9])
    assert (status, reads) == (401, 0) and api.rows() == before


def test_a_declared_oversized_body_is_413_unread(api: Api) -> None:
    auth = {"authorization": api.admin["Authorization"]}
    status, body, reads = _asgi(api, "POST", "/v1/workloads",
                                {**auth, "content-length": str(256 * 1024 + 1)}, [b"x"])
    assert (status, body["error"], reads) == (413, "too_large", 0)
    assert body["problems"][0]["field"] == "spec"
    status, _, reads = _asgi(api, "POST", "/v1/queues", {**auth, "content-length": str(2 << 20)})
    assert (status, reads) == (413, 0)


def test_a_chunked_body_is_cut_off_as_soon_as_it_is_too_large(api: Api) -> None:
    auth = {"authorization": api.admin["Authorization"], "transfer-encoding": "chunked",
            "content-type": "application/json"}
    before = api.rows()
    status, body, reads = _asgi(api, "POST", "/v1/workloads", auth, [b" " * 100_000] * 10)
    assert (status, body["error"]) == (413, "too_large") and reads == 3  # 300 kB > 256 KiB
    assert api.rows() == before


def test_a_trickling_body_is_408(store: Store) -> None:
    api = build(store, ApiLimits(body_timeout_s=0.2))
    auth = {"authorization": api.admin["Authorization"], "content-type": "application/json",
            "content-length": "100"}
    status, body, _ = _asgi(api, "POST", "/v1/workloads", auth, [b'{"name": '], stall=True)
    assert (status, body["error"]) == (408, "request_timeout")


def test_each_token_has_its_own_rate(store: Store) -> None:
    api = build(store, ApiLimits(rate_per_s=0.001, burst=3))
    codes = [api.client.get("/v1/queues", headers=api.ann).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    limited = api.client.get("/v1/queues", headers=api.ann)
    assert limited.json()["error"] == "rate_limited" and int(limited.headers["Retry-After"]) >= 1
    assert api.client.get("/v1/queues", headers=api.admin).status_code == 200  # another bucket
    assert api.client.get("/v1/health").status_code == 200  # probes are not limited
    fast = api.client.post("/v1/tokens", json={"user": "ann", "rate_per_s": 0},
                           headers=api.admin).json()["token"]
    burst = [api.client.get("/v1/queues", headers={"Authorization": f"Bearer {fast}"}).status_code
             for _ in range(10)]
    assert burst == [200] * 10


def test_token_buckets_refill_at_their_rate() -> None:
    b = TokenBuckets()
    assert [b.take("t", 0.0, 2.0, 3) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert b.take("t", 0.0, 2.0, 3) == pytest.approx(0.5)
    assert b.take("t", 0.5, 2.0, 3) == 0.0  # half a second: one more request
    assert b.take("t", 100.0, 2.0, 3) == 0.0  # refilled, never above the burst
    assert [b.take("t", 100.0, 2.0, 3) for _ in range(3)][-1] > 0
    assert b.take("other", 0.0, 2.0, 3) == 0.0
    assert b.take("off", 0.0, 0.0, 1) == 0.0  # rate 0: unlimited


def test_limits_come_from_the_environment_and_refuse_nonsense() -> None:
    got = ApiLimits.from_env({"CORRAL_API_RATE_PER_S": "5", "CORRAL_API_BURST": "7"})
    assert (got.rate_per_s, got.burst, got.max_body_bytes) == (5.0, 7, 1 << 20)
    with pytest.raises(ValueError, match="CORRAL_API_BURST"):
        ApiLimits.from_env({"CORRAL_API_BURST": "lots"})
    with pytest.raises(ValueError, match="finite"):
        ApiLimits(rate_per_s=float("inf"))
    with pytest.raises(ValueError, match="max_spec_bytes"):
        ApiLimits(max_body_bytes=10, max_spec_bytes=20)


NUL_REQUESTS = [
    ("workload-id", "GET", "/v1/workloads/%00", None, "workload_id"),
    ("user-filter", "GET", "/v1/workloads?user=%00", None, "user"),
    ("queue-filter", "GET", "/v1/workloads?queue=a%00b", None, "queue"),
    ("cordon", "POST", "/v1/nodes/n%000/cordon", None, "node_id"),
    ("queue-name", "GET", "/v1/queues/%00", None, "name"),
    ("balance", "GET", "/v1/ledger/queues/%00/balance", None, "queue"),
    ("grant-memo", "POST", "/v1/ledger/grants",
     {"queue": "team-a", "amount": "5", "memo": "a\u0000b"}, "memo"),
    ("spec-env", "POST", "/v1/workloads", job(env={"A": "x\u0000"}), "env.A"),
    ("user-name", "POST", "/v1/users", {"name": "x\u0000"}, "name"),
    ("member", "PUT", "/v1/queues/team-a/members/a%00", {"role": "member"}, "user"),
]


@pytest.mark.parametrize(("method", "path", "body", "field"),
                         [r[1:] for r in NUL_REQUESTS], ids=[r[0] for r in NUL_REQUESTS])
def test_a_nul_anywhere_is_422_naming_the_field(api: Api, method: str, path: str,
                                                body: Any, field: str) -> None:
    before = api.rows()
    r = api.client.request(method, path, json=body, headers=api.admin)
    assert r.status_code == 422, r.text
    assert field in [p["field"] for p in r.json()["problems"]]
    assert api.rows() == before


@pytest.mark.parametrize("path", [f"/v1/ledger/prices/{2**63}", f"/v1/tokens/{2**64}",
                                  "/v1/ledger/prices/-1"], ids=["price-2^63", "token-2^64",
                                                                "price-negative"])
def test_an_id_out_of_range_is_422_not_500(api: Api, path: str) -> None:
    r = api.client.delete(path, headers=api.admin)
    assert r.status_code == 422 and set(r.json()) == SHAPE


def test_every_error_has_the_one_shape(api: Api) -> None:
    cases = [
        api.client.post("/v1/workloads", content=b"{bad",
                        headers={**api.admin, "content-type": "application/json"}),
        api.client.post("/v1/workloads", content=b'{"a":1}',
                        headers={**api.admin, "content-type": "text/plain"}),
        api.client.get("/v1/nope", headers=api.admin),
        api.client.patch("/v1/queues/team-a", headers=api.admin),
        api.client.get("/v1/workloads?limit=0", headers=api.admin),
        api.client.get("/v1/workloads"),
    ]
    assert [r.status_code for r in cases] == [400, 422, 404, 405, 422, 401]
    for r in cases:
        assert set(r.json()) == SHAPE, r.text
    assert cases[0].json()["error"] == "invalid_json" and "character" in cases[0].json()["message"]


@pytest.mark.parametrize(("method", "path", "allow"), [
    ("PATCH", "/v1/queues/team-a", "DELETE, GET, PUT"),
    ("PUT", "/v1/workloads", "GET, POST"),
    ("GET", "/v1/workloads/x/cancel", "POST"),
], ids=["queue", "workloads", "cancel"])
def test_405_names_every_method_of_the_path(api: Api, method: str, path: str, allow: str) -> None:
    r = api.client.request(method, path, headers=api.admin)
    assert r.status_code == 405 and r.headers["allow"] == allow


def test_the_published_schema_takes_the_quantities_people_write(api: Api) -> None:
    schema = api.client.get("/openapi.json").json()
    spec_schema = {**schema["components"]["schemas"]["WorkloadSpec"],
                   "components": schema["components"]}
    validator = jsonschema.validators.Draft202012Validator(spec_schema)
    for fields in ({"memory": "512MiB"}, {"memory": 1024}, {"cpu": "500m"}, {"cpu": 0.5},
                   {"gpu_memory": "20GiB", "gpus": 0.5}, {"ttl": "2h", "kind": "interactive"}):
        body = job(**fields)
        errors = [e.message for e in validator.iter_errors(body)]
        assert not errors, (fields, errors)
        r = api.client.post("/v1/dry-run", json=body, headers=api.admin)
        assert r.status_code == 200 and r.json()["outcome"] != "rejected", (fields, r.text)


def test_every_operation_documents_the_error_shape(api: Api) -> None:
    schema = api.client.get("/openapi.json").json()
    for path, ops in schema["paths"].items():
        if not path.startswith("/v1/") or path in ("/v1/health", "/v1/version"):
            continue
        for method, op in ops.items():
            for status in ("401", "413", "422", "429"):
                ref = op["responses"][status]["content"]["application/json"]["schema"]["$ref"]
                assert ref.endswith("/ErrorBody"), (method, path, status)
            if "requestBody" in op:
                assert "400" in op["responses"], (method, path)


def test_a_lone_surrogate_in_a_spec_is_a_422_naming_it_not_a_500(api: Any) -> None:
    # found by bench/api_fuzz.py --with-loop: the error message quoted the value, and no
    # response can encode a lone surrogate
    body = b'{"name": "\\ud800", "queue": "team-a", "gpus": 1, "command": ["true"]}'
    r = api.client.post("/v1/workloads", content=body,
                        headers={**api.admin, "Content-Type": "application/json"})
    assert r.status_code == 422, r.text
    assert "\\\\ud800" in r.text or "ud800" in r.text


def test_on_the_local_backend_a_missing_working_dir_is_refused_at_submission(
        tmp_path: Any) -> None:
    # bench/api_fuzz.py --with-loop found accepted specs whose working_dir did not exist on the
    # host: they could only fail at launch. Where the workers run on this host, refuse them now.
    from types import SimpleNamespace

    from corral.api.errors import ApiError
    from corral.api.workloads import _launchable_here
    from corral.spec import WorkloadSpec

    spec = WorkloadSpec.model_validate({"name": "w", "queue": "team-a", "gpus": 1,
                                        "command": ["true"], "working_dir": "/nonexistent/x"})
    with pytest.raises(ApiError) as refused:
        _launchable_here(SimpleNamespace(backend_name="local", logs=None), spec)  # type: ignore[arg-type]
    assert refused.value.status == 422 and refused.value.problems[0][0] == "working_dir"
    _launchable_here(SimpleNamespace(backend_name="slurm", logs=None), spec)  # type: ignore[arg-type]
    ok = spec.model_copy(update={"working_dir": str(tmp_path)})
    _launchable_here(SimpleNamespace(backend_name="local", logs=None), ok)  # type: ignore[arg-type]
