"""The gateway's decisions without any network: balancing, retries, probe thresholds, headers,
auth, the route table and the public surface."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable

import pytest

import corral.gateway as gateway
from corral.gateway import (
    GatewayLimits,
    ProbeSpec,
    ProbeTracker,
    Replica,
    ReplicaState,
    RouteTable,
    ServiceAuth,
)
from corral.gateway.balancing import pick_replica
from corral.gateway.headers import request_headers, response_headers
from corral.gateway.proxy import should_retry
from corral.gateway.retries import Failure, RetryBudget, RetryPolicy, Skip, retry_skip

S = ReplicaState


def test_public_surface_is_pinned() -> None:
    assert sorted(gateway.__all__) == sorted([
        "Gateway", "GatewayLimits", "ProbeSpec", "ProbeTracker", "Prober", "Replica",
        "ReplicaState", "RouteTable", "ServiceAuth", "ServiceLimits", "ServiceRoute",
        "create_gateway_app",
        "wait_drained"])


# ---- balancing -----------------------------------------------------------------------------
def test_two_choices_never_picks_the_busier_of_two() -> None:
    idle, busy = Replica("idle", "http://a", outstanding=0), Replica("busy", "http://b",
                                                                     outstanding=5)
    rng = random.Random(0)
    assert {pick_replica([idle, busy], rng).id for _ in range(50)} == {"idle"}  # type: ignore[union-attr]


def test_two_choices_spreads_over_equal_replicas_and_skips_tried_ones() -> None:
    replicas = [Replica(str(i), f"http://r{i}") for i in range(4)]
    rng = random.Random(1)
    picks = Counter(pick_replica(replicas, rng).id for _ in range(400))  # type: ignore[union-attr]
    assert set(picks) == {"0", "1", "2", "3"}
    assert pick_replica(replicas, rng, exclude={"0", "1", "2"}).id == "3"  # type: ignore[union-attr]
    assert pick_replica(replicas, rng, exclude={"0", "1", "2", "3"}) is None
    assert pick_replica([], rng) is None


def test_the_most_loaded_replica_is_never_picked_among_three_or_more() -> None:
    replicas = [Replica(str(i), f"http://r{i}", outstanding=i) for i in range(5)]
    rng = random.Random(2)
    assert "4" not in {pick_replica(replicas, rng).id for _ in range(300)}  # type: ignore[union-attr]


def test_a_suspect_replica_is_picked_only_when_no_trusted_one_is_left() -> None:
    suspect = Replica("s", "http://s", suspect_until=10.0)  # idler than the others
    trusted = [Replica("a", "http://a", outstanding=3), Replica("b", "http://b", outstanding=4)]
    rng = random.Random(3)
    picked = {pick_replica([suspect, *trusted], rng, now=5.0).id for _ in range(100)}  # type: ignore[union-attr]
    assert picked == {"a"}  # of the two trusted, the less loaded
    assert pick_replica([suspect, *trusted], rng, exclude={"a", "b"}, now=5.0) is suspect
    assert pick_replica([suspect], rng, now=5.0) is suspect  # never none for a suspicion
    assert "s" in {pick_replica([suspect, *trusted], rng, now=10.0).id  # type: ignore[union-attr]
                   for _ in range(100)}  # its time is over


def test_a_suspicion_ends_when_the_replica_changes_state_or_url_or_passes_a_probe() -> None:
    table = RouteTable()
    table.set_service("chat")
    table.set_replica("chat", "r0", "http://h:1", S.READY)

    def suspect_after(change: Callable[[], object]) -> bool:
        table.mark_suspect("chat", "r0", 100.0)
        change()
        found = table.replica("chat", "r0")
        assert found is not None
        return found.suspect(1.0)

    assert suspect_after(lambda: None)
    assert suspect_after(lambda: table.set_replica("chat", "r0", "http://h:1", S.READY))
    assert not suspect_after(lambda: table.set_state("chat", "r0", S.STARTING))
    assert not suspect_after(lambda: table.set_replica("chat", "r0", "http://h:2", S.STARTING))
    assert not suspect_after(lambda: table.clear_suspect("chat", "r0"))
    table.mark_suspect("chat", "gone", 100.0)  # a replica removed meanwhile: nothing to mark


# ---- retries -------------------------------------------------------------------------------
L = GatewayLimits()
STRICT = GatewayLimits(retry_unsent_non_idempotent=False)


@pytest.mark.parametrize(("method", "connect", "status", "sent", "has_body", "limits", "retry"), [
    ("GET", True, None, False, False, L, True),
    ("POST", True, None, False, True, L, True),        # never left the gateway: at most once
    ("POST", True, None, False, True, STRICT, False),  # ... unless told to retry idempotent only
    ("POST", True, None, True, True, L, False),        # body already streaming: not replayable
    ("GET", False, 503, False, False, L, True),
    ("PUT", False, 503, True, True, L, False),         # its body is gone
    ("POST", False, 503, True, True, L, False),        # reached a replica: never again
    ("POST", False, 503, False, False, L, False),
    ("GET", False, 500, False, False, L, False),
    ("GET", False, 502, False, False, L, False),
    ("PUT", False, 503, False, True, L, True),         # its body is still held: replayable
], ids=["get-connect", "post-unsent", "post-unsent-strict", "post-sent", "get-503",
        "put-503-with-body", "post-503", "post-503-no-body", "get-500", "get-502",
        "put-503-held-body"])
def test_retry_only_when_the_request_did_not_run(method: str, connect: bool, status: int | None,
                                                 sent: bool, has_body: bool,
                                                 limits: GatewayLimits, retry: bool) -> None:
    assert should_retry(method, connect_error=connect, status=status, body_sent=sent,
                        has_body=has_body, limits=limits) is retry


NO_RESET = RetryPolicy(on_reset=False)


@pytest.mark.parametrize(("method", "replayable", "has_body", "policy", "skip"), [
    ("GET", True, False, NO_RESET, None),               # idempotent: always
    ("POST", True, True, RetryPolicy(), None),          # inference POST: on by default
    ("POST", True, True, NO_RESET, Skip.POLICY),        # a service with effects turns it off
    ("POST", False, True, RetryPolicy(), Skip.BODY_OVER_LIMIT),
    ("PUT", False, True, RetryPolicy(), Skip.BODY_OVER_LIMIT),
    ("POST", False, False, RetryPolicy(), None),        # no body: nothing to hold
], ids=["get", "post-default", "post-off", "post-over-limit", "put-over-limit", "post-empty"])
def test_a_reset_before_any_response_is_retried_by_method_policy_and_body(
        method: str, replayable: bool, has_body: bool, policy: RetryPolicy,
        skip: Skip | None) -> None:
    assert retry_skip(method, Failure.RESET, replayable=replayable, has_body=has_body,
                      policy=policy) is skip


def test_the_retry_budget_allows_a_fraction_of_requests_above_its_reserve() -> None:
    budget = RetryBudget(ratio=0.2, reserve=2, window_s=10)
    for i in range(100):
        budget.request(100.0 + i * 0.05)  # 100 requests within 5 s
    spent = sum(budget.try_retry(105.0) for _ in range(50))
    assert spent == 2 + 20
    assert not budget.try_retry(105.0)
    # the window slides: 10 s later those requests and retries are forgotten: the reserve only
    assert [budget.try_retry(116.0) for _ in range(3)] == [True, True, False]


def test_a_zero_budget_still_has_its_reserve_and_policies_refuse_nonsense() -> None:
    budget = RetryBudget(ratio=0.0, reserve=1)
    budget.request(0.0)
    assert [budget.try_retry(0.5), budget.try_retry(0.5)] == [True, False]
    with pytest.raises(ValueError, match="attempts"):
        RetryPolicy(attempts=0)
    with pytest.raises(ValueError, match="budget"):
        RetryPolicy(budget=1.5)


# ---- probes --------------------------------------------------------------------------------
def walk(spec: ProbeSpec, start: ReplicaState, results: str) -> list[str]:
    tracker, state, states = ProbeTracker(spec), start, []
    for r in results:
        state = tracker.observe(state, r == "+")
        states.append(state.value[0] + ("!" if tracker.due_for_replacement(state) else ""))
    return states


@pytest.mark.parametrize(("start", "results", "expected"), [
    (S.STARTING, "++", "s r"),                 # success_threshold 2
    (S.STARTING, "+-++", "s s s r"),           # a failure resets the passes
    (S.STARTING, "----", "s s s u"),           # startup_failure_threshold 4: never came up
    (S.READY, "-+--", "r r r r"),              # failures must be in a row (threshold 3)
    (S.READY, "---", "r r u"),
    (S.UNHEALTHY, "++", "u r"),
    (S.UNHEALTHY, "-----", "u u! u u u"),      # reported once, after replace_after (2)
    (S.UNHEALTHY, "--++--", "u u! u r r r"),
    (S.DRAINING, "----++", "d d d d d d"),     # the prober never moves a draining replica
], ids=["starting-ready", "pass-reset", "never-up", "ready-flaps", "ready-fails",
        "recovers", "stuck-reported-once", "reported-then-recovers", "draining"])
def test_probe_thresholds(start: ReplicaState, results: str, expected: str) -> None:
    spec = ProbeSpec(success_threshold=2, failure_threshold=3, startup_failure_threshold=4,
                     replace_after=2)
    assert " ".join(walk(spec, start, results)) == expected


def test_probe_spec_refuses_nonsense() -> None:
    for bad in ({"path": "healthz"}, {"port": 0}, {"period_s": 0}, {"failure_threshold": 0}):
        with pytest.raises(ValueError):
            ProbeSpec(**bad)  # type: ignore[arg-type]


# ---- headers -------------------------------------------------------------------------------
def test_hop_by_hop_and_connection_named_headers_are_dropped_forwarded_ones_set() -> None:
    sent = [(b"Host", b"api.example"), (b"Connection", b"keep-alive, X-Secret"),
            (b"X-Secret", b"1"), (b"Keep-Alive", b"timeout=5"), (b"TE", b"trailers"),
            (b"Transfer-Encoding", b"chunked"), (b"Upgrade", b"h2c"),
            (b"X-Forwarded-For", b"10.9.9.9"), (b"X-Forwarded-Host", b"evil.example"),
            (b"X-Forwarded-Proto", b"https"), (b"Authorization", b"Bearer t"),
            (b"Content-Type", b"application/json")]
    out = dict(request_headers(sent, client_ip="192.0.2.1", scheme="http",
                               prefix="/serve/chat", keep_authorization=False))
    assert out == {b"x-forwarded-for": b"10.9.9.9, 192.0.2.1",
                   b"x-forwarded-proto": b"http", b"x-forwarded-host": b"api.example",
                   b"x-forwarded-prefix": b"/serve/chat", b"content-type": b"application/json"}
    kept = dict(request_headers(sent, client_ip=None, scheme="http", prefix="/serve/chat",
                                keep_authorization=True))
    assert kept[b"authorization"] == b"Bearer t" and kept[b"x-forwarded-for"] == b"10.9.9.9"


def test_response_keeps_duplicates_and_drops_framing_and_server_owned_headers() -> None:
    got = response_headers([(b"Set-Cookie", b"a=1"), (b"Set-Cookie", b"b=2"),
                            (b"Transfer-Encoding", b"chunked"), (b"Date", b"x"),
                            (b"Server", b"uvicorn"), (b"Content-Type", b"text/event-stream")])
    assert got == [(b"set-cookie", b"a=1"), (b"set-cookie", b"b=2"),
                   (b"content-type", b"text/event-stream")]


# ---- auth and the table --------------------------------------------------------------------
@pytest.mark.parametrize(("header", "ok"), [
    ("Bearer s3cret", True), ("bearer s3cret", True), ("Bearer  s3cret ", True),
    (None, False), ("", False), ("Bearer", False), ("Bearer wrong", False),
    ("Basic s3cret", False), ("Bearer s3cret\udcff", False),
])
def test_token_auth(header: str | None, ok: bool) -> None:
    auth = ServiceAuth.token("s3cret")
    assert auth.allows(header) is ok
    assert ServiceAuth.public().allows(header)
    assert "s3cret" not in repr(auth)


def test_route_table_refuses_bad_names_and_urls_and_notifies() -> None:
    table, seen = RouteTable(), []
    table.subscribe(seen.append)
    for name in ("", "Chat", "../x", "a" * 64, "a/b"):
        with pytest.raises(ValueError):
            table.set_service(name)
    table.set_service("chat")
    for url in ("ftp://h", "http://", "http://u:p@h", "http://h/?q=1", "h:80"):
        with pytest.raises(ValueError):
            table.set_replica("chat", "r0", url)
    with pytest.raises(KeyError):
        table.set_replica("nope", "r0", "http://h")
    table.set_replica("chat", "r0", "http://h:8000/")
    table.set_state("chat", "r0", S.READY)
    table.set_state("chat", "r0", S.READY)  # no change: no notice
    assert table.replica("chat", "r0") == Replica("r0", "http://h:8000", S.READY)
    assert seen == ["chat", "chat", "chat"]


def test_idle_upstream_connections_are_dropped_before_uvicorn_drops_them() -> None:
    import uvicorn

    # a replica that closes an idle connection as the gateway reuses it fails that request
    assert GatewayLimits().upstream_idle_s < uvicorn.Config(app=None).timeout_keep_alive
    with pytest.raises(ValueError):
        GatewayLimits(upstream_idle_s=0)
