"""The SDK sends a request again only when that cannot do the work twice (connect errors, 429,
503; a dropped connection for idempotent or keyed requests), waits as the server's Retry-After
says, and gives up with the server's error; `wait()` has no short default limit. No real sleeps:
the waits are recorded."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest

from corral.sdk import Client, ConnectionFailed, CorralError, RateLimited, ServerError
from corral.sdk.retry import Retries

Handler = Callable[[httpx.Request], httpx.Response]
HEALTH = {"status": "ok", "database": "ok", "leader": True}
SUBMITTED = {"group_id": "g-1", "workloads": []}


class Script:
    """A transport that answers from a list of steps (a status, with headers, or an error)
    and records what it was sent."""

    def __init__(self, *steps: object) -> None:
        self.steps = list(steps)
        self.sent: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(request)
        step = self.steps.pop(0)
        if isinstance(step, Exception):
            raise step
        if isinstance(step, dict):
            return httpx.Response(200, json=step)
        if isinstance(step, tuple):
            status, headers = step
            return httpx.Response(status, headers=headers, json={"error": "x", "message": "m"})
        assert isinstance(step, int)
        return httpx.Response(step, json=HEALTH if step == 200 else {"error": "x", "message": "m"})


def _client(script: Script, waits: list[float], **retries: float) -> Client:
    return Client("http://corral.test", "t", transport=httpx.MockTransport(script),
                  retries=Retries(sleep=waits.append, **retries))  # type: ignore[arg-type]


def _down() -> httpx.ConnectError:
    return httpx.ConnectError("refused")


def test_connect_errors_are_retried_with_growing_waits() -> None:
    waits: list[float] = []
    script = Script(_down(), _down(), 200)
    assert _client(script, waits).health().status == "ok"
    assert waits == [0.25, 0.5] and len(script.sent) == 2 + 1


def test_a_server_that_stays_down_is_connection_failed_after_the_attempts() -> None:
    waits: list[float] = []
    script = Script(*[_down() for _ in range(4)])
    with pytest.raises(ConnectionFailed, match=r"corral\.test"):
        _client(script, waits).health()
    assert waits == [0.25, 0.5, 1.0] and len(script.sent) == 4


@pytest.mark.parametrize("status", [429, 503])
def test_429_and_503_wait_as_retry_after_says(status: int) -> None:
    waits: list[float] = []
    script = Script((status, {"Retry-After": "3"}), (status, {}), 200)
    assert _client(script, waits).health().status == "ok"
    assert waits == [3.0, 0.5]  # the server's word, then the computed backoff


def test_a_post_is_retried_on_429_and_503_too() -> None:
    waits: list[float] = []
    script = Script(429, 503, SUBMITTED)
    assert _client(script, waits).submit({"name": "x"}).group_id == "g-1"
    assert [r.method for r in script.sent] == ["POST"] * 3


def test_a_retry_after_over_the_cap_goes_to_the_caller() -> None:
    waits: list[float] = []
    script = Script((429, {"Retry-After": "600"}))
    with pytest.raises(RateLimited) as limited:
        _client(script, waits).health()
    assert limited.value.retry_after == 600 and waits == [] and len(script.sent) == 1


def test_the_last_503_is_the_callers_error() -> None:
    waits: list[float] = []
    with pytest.raises(ServerError):
        _client(Script(503, 503), waits, attempts=2).health()
    assert waits == [0.25]


@pytest.mark.parametrize("status", [500, 502, 400, 404, 409])
def test_other_errors_are_not_retried(status: int) -> None:
    waits: list[float] = []
    script = Script(status)
    with pytest.raises(CorralError) as e:
        _client(script, waits).health()
    assert e.value.status == status
    assert len(script.sent) == 1 and waits == []


def test_a_dropped_post_is_not_sent_again_but_a_keyed_one_is() -> None:
    waits: list[float] = []
    dropped = Script(httpx.RemoteProtocolError("server disconnected"))
    with pytest.raises(ConnectionFailed):
        _client(dropped, waits).submit({"name": "x"})
    assert len(dropped.sent) == 1  # the server may have stored it: not twice
    keyed = Script(httpx.RemoteProtocolError("server disconnected"),
                   httpx.ReadError("reset"), httpx.ReadTimeout("slow"))
    with pytest.raises(ConnectionFailed):
        _client(keyed, waits).submit({"name": "x"}, idempotency_key="k-1")
    assert len(keyed.sent) == 3  # dropped twice, resent; a read timeout is not resent
    assert all(r.headers["Idempotency-Key"] == "k-1" for r in keyed.sent)


def test_a_dropped_get_is_sent_again() -> None:
    waits: list[float] = []
    script = Script(httpx.ReadError("reset"), 200)
    assert _client(script, waits).health().status == "ok"
    assert len(script.sent) == 2


def test_retries_can_be_turned_off_and_zero_attempts_is_refused() -> None:
    waits: list[float] = []
    with pytest.raises(RateLimited):
        _client(Script(429), waits, attempts=1).health()
    with pytest.raises(ValueError, match="write 1 to turn retries off"):
        Retries(attempts=0)


def test_wait_has_no_short_default_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """A job that runs for two (fake) hours is waited for; the poll interval grows to its cap."""
    clock = {"now": 0.0}
    sleeps: list[float] = []

    def sleep(s: float) -> None:
        sleeps.append(s)
        clock["now"] += 600.0  # each poll: ten minutes later

    monkeypatch.setattr(time, "monotonic", lambda: clock["now"])  # the client's clock
    monkeypatch.setattr(time, "sleep", sleep)
    states = ["pending"] + ["running"] * 12 + ["succeeded"]

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=_workload(states.pop(0)))

    with Client("http://corral.test", transport=httpx.MockTransport(handler)) as c:
        assert c.wait("w-1").state == "succeeded"
    assert clock["now"] >= 2 * 3600
    assert sleeps[0] == 0.2 and sleeps[-1] == 2.0 and sleeps == sorted(sleeps)
    with Client("http://corral.test", transport=httpx.MockTransport(handler)) as c:
        states[:] = ["running"] * 3
        with pytest.raises(TimeoutError, match="still running"):
            c.wait("w-1", timeout_s=900)


def _workload(state: str) -> dict[str, object]:
    return {"id": "w-1", "group_id": "w-1", "name": "w", "queue": "q", "user": "u", "kind": "job",
            "state": state, "reason_code": "", "reason_message": "", "attempt": 0,
            "restart_count": 0, "version": 1, "submitted_at": 0.0}
