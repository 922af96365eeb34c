"""The agent's reading of EC2's spot interruption notice (`corral.agent.spot`), against a local
instance metadata service (tests/agent/imds.py: moto does not serve `spot/instance-action`)."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx

from corral.agent.spot import NoticeIn, SpotReporter, SpotWatcher

from .imds import Imds

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def test_no_notice_until_one_is_planned_then_once() -> None:
    with Imds() as imds:
        w = SpotWatcher(imds.url, interval_s=0)
        assert w.poll(0.0, NOW) is None
        imds.action = {"action": "terminate", "time": "2026-12-03T12:02:00Z"}
        n = w.poll(1.0, NOW)
        assert n is not None and (n.action, n.time, n.seconds_left) == \
            ("terminate", "2026-12-03T12:02:00Z", 120.0)
        assert w.poll(2.0, NOW) is None  # reported once
        # IMDSv2: one token, sent with every read
        assert imds.requests[0] == ("PUT", "/latest/api/token")
        assert [r for r in imds.requests if r[0] == "PUT"] == [("PUT", "/latest/api/token")]


def test_an_expired_token_is_renewed_once() -> None:
    with Imds() as imds:
        w = SpotWatcher(imds.url, interval_s=0)
        assert w.poll(0.0, NOW) is None
        imds.expire_tokens()
        imds.action = {"action": "stop", "time": "2026-12-03T12:01:00Z"}
        n = w.poll(1.0, NOW)
        assert n is not None and n.action == "stop" and n.seconds_left == 60.0
        assert sum(1 for r in imds.requests if r[0] == "PUT") == 2


def test_polls_at_most_every_interval() -> None:
    with Imds() as imds:
        w = SpotWatcher(imds.url, interval_s=5)
        w.poll(0.0, NOW)
        w.poll(4.0, NOW)
        assert sum(1 for r in imds.requests if r[0] == "GET") == 1
        w.poll(5.0, NOW)
        assert sum(1 for r in imds.requests if r[0] == "GET") == 2


def test_a_broken_or_absent_service_is_no_notice() -> None:
    with Imds() as imds:
        imds.body = "<html>not json</html>"
        w = SpotWatcher(imds.url, interval_s=0)
        assert w.poll(0.0, NOW) is None and w.notice is None
        imds.body = '{"action": "terminate"}'  # no time
        assert w.poll(1.0, NOW) is None
        imds.body = None
        imds.interrupt()
        assert w.poll(2.0, NOW) is not None  # it recovers once the service answers well
    gone = SpotWatcher("http://127.0.0.1:9", interval_s=0, timeout_s=0.5)  # nothing listens
    assert gone.poll(0.0, NOW) is None


def test_the_reporter_retries_until_the_server_takes_it() -> None:
    class Away(Exception):
        pass

    sent: list[NoticeIn] = []
    fail = [True]

    def send(n: NoticeIn) -> None:
        if fail[0]:
            raise Away("server away")
        sent.append(n)

    with Imds() as imds:
        r = SpotReporter(SpotWatcher(imds.url, interval_s=0), send, (Away,))
        assert r.turn(0.0, NOW) is False
        imds.action = {"action": "terminate", "time": "2026-12-03T12:02:00Z"}
        assert r.turn(10.0, NOW) is False and not sent  # read, not delivered
        fail[0] = False
        assert r.turn(40.0, NOW) is True
        assert r.turn(50.0, NOW) is False
    assert [(n.action, n.seconds_left) for n in sent] == [("terminate", 90.0)]  # 120 - 30


def test_http_errors_are_not_raised() -> None:
    # a 5xx from the service: no notice, no exception
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text="tok") if request.method == "PUT" \
            else httpx.Response(503)

    client = httpx.Client(base_url="http://imds", transport=httpx.MockTransport(handler))
    assert SpotWatcher("http://imds", interval_s=0, client=client).poll(0.0, NOW) is None
