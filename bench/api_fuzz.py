"""Fuzz the API from its published OpenAPI schema, at scale, with a fixed seed: the long version
of tests/api/test_fuzz.py (same app, same checks), on SQLite or PostgreSQL.

For every operation, `--examples` schema-valid and `--examples` schema-invalid requests
(Schemathesis, derandomized: the same cases every run) go to the in-process app (the API, the
store, submission checks), as an admin. With `--with-loop` the control loop runs too, on the same
store: the real scheduler, and a launcher that builds every worker's real local launch (argv and
environment, as the local backend gives them to `os.posix_spawn`, handed to it with a program
that does not exist) before the fake backend starts it; the loop steps after every 20 cases.
Counted:

- server errors (any 5xx);
- non-conformant answers: a status the schema does not document, a body or header that does not
  match it, an invalid request accepted (Schemathesis' checks, as in the test);
- refused requests (4xx) that stored a row in any table a request can write;
- with `--with-loop`: accepted specs that failed at launch (a launch raising anything but the
  missing program; each also fails its workload with reason LaunchFailed, which is counted from
  the store at the end), loop steps that raised, and launches;
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
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from sqlalchemy import func, select

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from api.harness import build
from corral.api.limits import ApiLimits
from corral.backends.base import LaunchSpec
from corral.backends.errors import BackendError
from corral.backends.fake import FakeBackend
from corral.backends.local import LocalBackend
from corral.control import ControlLoop, ControlSettings, Leadership, ManualClock
from corral.core.model import Node
from corral.store import Store
from corral.store import auth as A
from corral.store.database import sqlite_url
from corral.store.schema import WorkloadRow

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import schemathesis
    from schemathesis import GenerationMode
    from schemathesis.specs.openapi import checks as C


class LaunchChecking(FakeBackend):
    """The fake backend, after building each worker's real local launch and handing it to
    `os.posix_spawn` with a program that does not exist: FileNotFoundError is the expected
    answer; anything else is an accepted spec that would fail at launch."""

    def __init__(self, nodes: list[Node], work: Path) -> None:
        super().__init__(nodes)
        self.local = LocalBackend(work / "local", nodes=nodes)  # workers as corral's own user
        self.work = work
        self.counts: collections.Counter[str] = collections.Counter()

    def launch(self, spec: LaunchSpec) -> None:
        self.counts["launches"] += 1
        try:
            self.local._check_spec(spec)  # a clean refusal (e.g. a missing working_dir)
        except BackendError:
            self.counts["refused_by_backend"] += 1
            raise
        for a in spec.assignments:
            argv, env = self.local.worker_process(spec, a.worker, self.work / "attempt", 29500)
            try:
                os.posix_spawn(_NOWHERE, argv, env)
            except FileNotFoundError:
                pass
            except Exception:
                self.counts["failed_at_launch"] += 1
                raise
        super().launch(spec)


_NOWHERE = "/nonexistent/corral-fuzz-program"


def fuzz(store: Store, examples: int, with_loop: bool = False) -> dict[str, Any]:
    # With the loop, launches go through the local backend's checks: the API must run the
    # submission checks of a local pool too, as `corral up` does (backend_name "local").
    api = build(store, ApiLimits(rate_per_s=0), backend_name="local" if with_loop else "fake")
    loop, launcher = _loop(store, api) if with_loop else (None, None)
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
        if loop is not None and totals["cases"] % 20 == 0:
            try:
                loop.step()
            except Exception as e:  # a step must never fail because of one workload
                totals["loop_step_errors"] += 1
                failures.setdefault(f"loop step: {type(e).__name__}", str(e)[:200])
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
    if loop is not None and launcher is not None:
        _hostile_submissions(api, loop, totals, failures, examples * 10)
        for _ in range(5):
            loop.step()
        totals.update(launcher.counts)
        with store.read() as c:
            totals["workloads_failed_LaunchFailed"] = int(c.execute(
                select(func.count()).select_from(WorkloadRow).where(
                    WorkloadRow.reason_code == "LaunchFailed")).scalar_one())
    return {"totals": dict(totals), "refused_schema_valid": dict(refused_valid),
            "failures": failures}


def _hostile_submissions(api: Any, loop: ControlLoop, totals: collections.Counter[str],
                         failures: dict[str, str], examples: int) -> None:
    """Schema-valid fuzzing rarely names a queue that exists, so it launches nothing: this
    phase submits specs with hostile strings and numbers (tests/spec/test_launchable_fuzz.py's
    strategy) to a queue that exists, so that what the API accepts reaches the launcher."""
    from spec.test_launchable_fuzz import spec_dicts

    @given(spec_dicts.map(lambda d: {**d, "queue": "team-a"}))
    @settings(max_examples=examples, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def run(spec: dict[str, Any]) -> None:
        try:
            body = json.dumps(spec).encode("utf-8")
        except (UnicodeEncodeError, ValueError):
            totals["submissions_unencodable"] += 1  # no client can send it: not a case
            return
        response = api.client.post("/v1/workloads", content=body, headers={
            **api.admin, "Content-Type": "application/json"})
        totals["submissions"] += 1
        if response.status_code >= 500:
            totals["server_errors"] += 1
            failures.setdefault(f"POST /v1/workloads {response.status_code}", response.text[:200])
        elif response.status_code < 300:
            totals["submissions_accepted"] += 1
        if totals["submissions"] % 20 == 0:
            try:
                loop.step()
            except Exception as e:
                totals["loop_step_errors"] += 1
                failures.setdefault(f"loop step: {type(e).__name__}", str(e)[:200])

    run()


def _loop(store: Store, api: Any) -> tuple[ControlLoop, LaunchChecking]:
    nodes = list(api.backend.world.nodes.values())
    work = Path(tempfile.mkdtemp(prefix="corral-fuzz-launch-"))
    launcher = LaunchChecking(nodes, work)
    loop = ControlLoop(store, launcher, clock=ManualClock(),
                       settings=ControlSettings(checkpoint_root=work / "ckpt"),
                       leadership=Leadership(store, ttl_s=3600.0))
    return loop, launcher


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
    p.add_argument("--with-loop", action="store_true",
                   help="run the scheduler and a launch-checking launcher on the same store")
    args = p.parse_args()
    t0 = time.perf_counter()
    if args.db == "postgres":
        from corral.testing.postgres import PostgresServer

        with PostgresServer() as pg:
            store = Store(pg.create_database("fuzz"))
            store.upgrade()
            out = fuzz(store, args.examples, args.with_loop)
            store.close()
    else:
        with tempfile.TemporaryDirectory(prefix="corral-fuzz-") as d:
            store = Store(sqlite_url(Path(d) / "corral.db"))
            store.upgrade()
            out = fuzz(store, args.examples, args.with_loop)
            store.close()
    out.update(db=args.db, examples=args.examples, with_loop=args.with_loop, seconds=round(time.perf_counter() - t0, 1))
    for label, n in sorted(out["refused_schema_valid"].items(), key=lambda kv: -kv[1]):
        print(f"  schema-valid refused {n:>5}  {label}")
    for what, sample in out["failures"].items():
        print(f"  FAILURE {what}  {sample}")
    print(json.dumps({k: v for k, v in out.items() if k != "failures"}))


if __name__ == "__main__":
    main()
