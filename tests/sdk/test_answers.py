"""An answer that is not corral's (another service on the port, a proxy's login page, a server
of another version) is a ServerError that names the request and what was wrong, never the JSON
decoder's or pydantic's traceback (issue 14)."""

from __future__ import annotations

import httpx
import pytest

from corral.sdk import Client, ServerError
from corral.sdk.ledger import Ledger


def _client(response: httpx.Response) -> Client:
    return Client("http://corral.test:8765", transport=httpx.MockTransport(lambda _: response))


HTML = httpx.Response(200, headers={"content-type": "text/html"}, content=b"<html>login</html>")
OTHER_JSON = httpx.Response(200, json={"unexpected": True})


@pytest.mark.parametrize(("response", "call", "says"), [
    (HTML, lambda c: c.list(), "GET /v1/workloads with something that is not corral's API "
     "(not JSON: text/html)"),
    (HTML, lambda c: c.submit({"name": "a"}), "POST /v1/workloads with something"),
    (OTHER_JSON, lambda c: c.get("w-1"), "field(s) not as expected; id: Field required"),
    (OTHER_JSON, lambda c: c.queues(), "(1 field(s) not as expected; the body: Input should be "
     "a valid list)"),
    (OTHER_JSON, lambda c: c.tokens(), "the body: Input should be a valid list"),
    (OTHER_JSON, lambda c: Ledger(c).balances(), "GET /v1/ledger/balances"),
], ids=["html-list", "html-submit", "json-get", "json-list", "json-adapter", "ledger"])
def test_an_answer_that_is_not_corrals_says_so(response: httpx.Response, call: object,
                                               says: str) -> None:
    with _client(response) as c, pytest.raises(ServerError) as caught:
        call(c)  # type: ignore[operator]
    error = caught.value
    assert says in error.message
    assert error.message.startswith("the server at http://corral.test:8765 answered ")
    assert "is it the corral server (--url, CORRAL_URL)" in error.message
    assert error.code == "not_corral" and error.status == 200
