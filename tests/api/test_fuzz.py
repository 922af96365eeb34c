"""Fuzz the API from its own published OpenAPI schema (Schemathesis, fixed seed): schema-valid
and schema-invalid requests to every operation, as an admin.

Asserted on every response: no 5xx; the status code is documented for the operation; the body
matches the documented schema (errors too: the one `ErrorBody` shape); headers as documented; an
invalid request (negative mode) is refused. And a refused request stores no row in any table a
request can write. Not asserted: that every schema-valid request is accepted, since some
refusals are semantic (an unknown queue, a spec the pool can never run, a path and body that
disagree) and no schema can say them; the schema does carry the input forms (quantities as
strings, name patterns), which took schema-valid refusals of POST /v1/workloads from every one to
unknown-queue only.

Bounded for CI (about 1,000 cases, under a minute on two cores): `CORRAL_FUZZ_EXAMPLES` raises
the examples per operation for a longer run.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from corral.api.limits import ApiLimits
from corral.store import Store
from corral.store import auth as A
from corral.store.database import sqlite_url

from .harness import build

pytestmark = pytest.mark.slow  # Schemathesis on all 83 operations: ~66 s

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # see harness.py: Starlette's TestClient deprecation
    import schemathesis
    from schemathesis.specs.openapi import checks as C

EXAMPLES = int(os.environ.get("CORRAL_FUZZ_EXAMPLES", "20"))
# positive_data_acceptance: semantic refusals (see the module doc).
NOT_CHECKED = [C.positive_data_acceptance]



def _wire_same(case: schemathesis.Case) -> list[object]:
    """Schemathesis' negative mode also "violates" a query parameter by giving a text or list
    parameter a boolean or a number (`queue=false`, `user=['x']`): on the wire that is the same
    text a valid request sends, so neither server nor schema can refuse it (schemathesis issues
    #3962, #3375, #4600). For a case whose only negative component is its query, the
    negative-data check is left out; the query's real refusals (an integer as `5.0`, a parameter
    given twice, an unknown one) are pinned one by one in tests/api/test_query_params.py."""
    from schemathesis.core.parameters import ParameterLocation

    meta = case.meta
    if meta is None or not meta.generation.mode.is_negative:
        return []
    negative = {loc for loc, info in meta.components.items() if info.mode.is_negative}
    return [C.negative_data_rejection] if negative == {ParameterLocation.QUERY} else []


# The schema is read at collection time, so the app (on its own SQLite file) exists by then.
_dir = Path(tempfile.mkdtemp(prefix="corral-fuzz-"))
atexit.register(shutil.rmtree, _dir, True)
_store = Store(sqlite_url(_dir / "corral.db"))
_store.upgrade()
API = build(_store, ApiLimits(rate_per_s=0))  # the rate limit has its own tests
schema = schemathesis.openapi.from_asgi("/openapi.json", API.client.app)


#: whether a case has been sent since the admin's token was last checked: only a sent case can
#: revoke it. Schemathesis asks for the token once per case it builds, and it builds its ~6,400
#: coverage cases at collection, before any is sent: one check serves them all (a check per
#: case was ~6,400 requests, ~20 s of the suite's collection on two cores).
_sent_since_check = True


@schemathesis.auth(refresh_interval=None, retry_on=[])
class AdminToken:
    """The admin's token, through Schemathesis' auth so that its negative cases can leave it
    out (those must be 401). A new token when the fuzzer revoked it (DELETE /v1/tokens/{id})."""

    def get(self, case: schemathesis.Case, context: object) -> str:
        global _sent_since_check
        if _sent_since_check:
            _sent_since_check = False
            if API.client.get("/v1/whoami", headers=API.admin).status_code == 401:
                with _store.write() as c:
                    API.admin = {"Authorization": f"Bearer {A.create_token(c, 'root', 0.0)}"}
        return API.admin["Authorization"]

    def set(self, case: schemathesis.Case, data: str, context: object) -> None:
        case.headers = {**(case.headers or {}), "Authorization": data}


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
def test_no_5xx_documented_answers_and_refusals_store_nothing(case: schemathesis.Case) -> None:
    global _sent_since_check
    before = API.rows()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _sent_since_check = True
        response = case.call()
        if response.status_code != 413:  # a refusal Schemathesis does not count as one
            case.validate_response(response, excluded_checks=NOT_CHECKED + _wire_same(case))
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert API.rows() == before, f"{case.method} {case.path} stored a row on refusal"
