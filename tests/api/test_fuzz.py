"""Fuzz the API from its own OpenAPI schema (schemathesis): no 5xx on any input, and a
rejected request stores nothing. Bounded (a few examples per operation) so it stays fast."""

from __future__ import annotations

import atexit
import shutil
import tempfile
import warnings
from pathlib import Path

from hypothesis import HealthCheck, settings

from corral.store import Store
from corral.store.database import sqlite_url

from .harness import build

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # see harness.py: Starlette's TestClient deprecation
    import schemathesis

# The schema is read at collection time, so the app (on its own SQLite file) exists by then.
_dir = Path(tempfile.mkdtemp(prefix="corral-fuzz-"))
atexit.register(shutil.rmtree, _dir, True)
_store = Store(sqlite_url(_dir / "corral.db"))
_store.upgrade()
API = build(_store)
schema = schemathesis.openapi.from_asgi("/openapi.json", API.client.app)


@schema.parametrize()
@settings(max_examples=10, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_no_5xx_and_rejections_store_nothing(case: schemathesis.Case) -> None:
    case.headers = {**(case.headers or {}), **API.admin}
    before = API.rows()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        response = case.call()
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert API.rows() == before, f"{case.method} {case.path} stored a row on refusal"
