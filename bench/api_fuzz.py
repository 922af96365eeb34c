"""Fuzz the API from its published OpenAPI schema, at scale, with a fixed seed: the long version
of tests/api/test_fuzz.py (same app, same checks), on SQLite or PostgreSQL.

For every operation, `--examples` schema-valid and `--examples` schema-invalid requests
(Schemathesis, derandomized: the same cases every run) go to the in-process app (the API, the
store, submission checks; no scheduler or launcher), as an admin. Counted:

- server errors (any 5xx);
- non-conformant answers: a status the schema does not document, a body or header that does not
  match it, an invalid request accepted (Schemathesis' checks, as in the test);
- refused requests (4xx) that stored a row in any table a request can write;
- schema-valid requests refused (400, 422), per operation (semantic refusals: an unknown queue, a spec the
  pool can never run; informative, not a failure).

    .venv/bin/python bench/api_fuzz.py [--db sqlite|postgres] [--examples 200]

Prints a line per operation with refusals, then one JSON line of the totals.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from api.harness import build
from corral.api.limits import ApiLimits
from corral.store import Store
from corral.store import auth as A
from corral.store.database import sqlite_url

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import schemathesis
    from schemathesis import GenerationMode
    from schemathesis.specs.openapi import checks as C


def fuzz(store: Store, examples: int) -> dict[str, Any]:
    api = build(store, ApiLimits(rate_per_s=0))
    schema = schemathesis.openapi.from_asgi("/openapi.json", api.client.app)

    def admin(label: str) -> dict[str, str]:
        """The admin's token; a new one after the fuzzer revoked it (DELETE /v1/tokens/{id})."""
        if label.startswith("DELETE /v1/tokens") and api.client.get(
                "/v1/whoami", headers=api.admin).status_code == 401:
            with store.write() as c:
                api.admin = {"Authorization": f"Bearer {A.create_token(c, 'root', 0.0)}"}
        return api.admin

    totals: collections.Counter[str] = collections.Counter()
    refused_valid: collections.Counter[str] = collections.Counter()
    failures: dict[str, str] = {}

    def check(case: schemathesis.Case, op: Any, mode: GenerationMode) -> None:
        case.headers = {**(case.headers or {}), **admin(op.label)}
        before = api.rows()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            response = case.call()
        admin(op.label)  # renewed at once if this case revoked it
        totals["cases"] += 1
        status = response.status_code
        if status >= 500:
            totals["server_errors"] += 1
            failures.setdefault(f"{op.label} {status}", response.text[:200])
        if status >= 400 and api.rows() != before:
            totals["rows_stored_on_refusal"] += 1
            failures.setdefault(f"{op.label} stored on {status}", "")
        if mode is GenerationMode.POSITIVE and status in (400, 422):
            refused_valid[op.label] += 1
        if status == 413:
            return
        try:
            case.validate_response(response, excluded_checks=[
                C.positive_data_acceptance, C.ignored_auth, C.missing_required_header])
        except BaseException as e:  # a FailureGroup: count, keep the first of each kind
            totals["non_conformant"] += 1
            first = str(getattr(e, "exceptions", [e])[0]).splitlines()[0]
            failures.setdefault(f"{op.label}: {first}", response.text[:200])

    for result in schema.get_all_operations():
        op = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            run = _runner(op, mode, examples, check)
            with contextlib.suppress(Unsatisfiable):  # nothing to mutate in negative mode
                run()
    return {"totals": dict(totals), "refused_schema_valid": dict(refused_valid),
            "failures": failures}


def _runner(op: Any, mode: GenerationMode, examples: int, check: Any) -> Any:
    @given(op.as_strategy(mode))
    @settings(max_examples=examples, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def run(case: schemathesis.Case) -> None:
        check(case, op, mode)

    return run


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    p.add_argument("--examples", type=int, default=200, help="per operation and mode")
    args = p.parse_args()
    t0 = time.perf_counter()
    if args.db == "postgres":
        from corral.testing.postgres import PostgresServer

        with PostgresServer() as pg:
            store = Store(pg.create_database("fuzz"))
            store.upgrade()
            out = fuzz(store, args.examples)
            store.close()
    else:
        with tempfile.TemporaryDirectory(prefix="corral-fuzz-") as d:
            store = Store(sqlite_url(Path(d) / "corral.db"))
            store.upgrade()
            out = fuzz(store, args.examples)
            store.close()
    out.update(db=args.db, examples=args.examples, seconds=round(time.perf_counter() - t0, 1))
    for label, n in sorted(out["refused_schema_valid"].items(), key=lambda kv: -kv[1]):
        print(f"  schema-valid refused {n:>5}  {label}")
    for what, sample in out["failures"].items():
        print(f"  FAILURE {what}  {sample}")
    print(json.dumps({k: v for k, v in out.items() if k != "failures"}))


if __name__ == "__main__":
    main()
