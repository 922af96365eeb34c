"""`Ledger.holds()` and `Ledger.grants()` without a queue ask the ledger's one request for every
queue the caller may see (GET /v1/ledger/holds, /v1/ledger/grants: the Credits page's, issue 14);
with a queue, that queue's route as before. What the server answers for whom is tested in
tests/web/test_credits_requests.py."""

from __future__ import annotations

import httpx

from corral.sdk import Client
from corral.sdk.ledger import Ledger


def _asked(call: object) -> list[str]:
    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(f"{request.url.path}?{request.url.query.decode()}".rstrip("?"))
        return httpx.Response(200, json=[])

    with Client("http://corral.test:8765", transport=httpx.MockTransport(answer)) as c:
        assert call(Ledger(c)) == []  # type: ignore[operator]
    return seen


def test_without_a_queue_one_request_for_every_queue() -> None:
    assert _asked(lambda led: led.holds(open_only=True)) == [
        "/v1/ledger/holds?open_only=true&limit=1000"]
    assert _asked(lambda led: led.holds(limit=20)) == ["/v1/ledger/holds?open_only=false&limit=20"]
    assert _asked(lambda led: led.grants()) == ["/v1/ledger/grants"]


def test_with_a_queue_that_queues_route() -> None:
    assert _asked(lambda led: led.holds("prod", open_only=True)) == \
        ["/v1/ledger/queues/prod/holds?open_only=true&limit=1000"]
    assert _asked(lambda led: led.grants("prod")) == ["/v1/ledger/queues/prod/grants"]
