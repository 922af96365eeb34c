"""The gateway in front of real replicas (the example model server under uvicorn), each on an
ephemeral port, driven over real HTTP. Holding a replica at a known point uses its token gate
(an event), never a timer."""

from __future__ import annotations

import asyncio
import json
import socket
from collections import Counter
from typing import Any

import httpx
import pytest

from corral.gateway import (
    GatewayLimits,
    ReplicaState,
    RouteTable,
    ServiceAuth,
    ServiceLimits,
    wait_drained,
)

from .harness import closed_port, completion, gateway, read_cut_stream, replica, run, until

pytestmark = pytest.mark.slow  # real replicas under uvicorn: ~25 s

READY = ReplicaState.READY


def table_with(service: str = "toy", auth: ServiceAuth | None = None,
               **replicas: tuple[str, ReplicaState]) -> RouteTable:
    table = RouteTable()
    table.set_service(service, auth)
    for rid, (url, state) in replicas.items():
        table.set_replica(service, rid, url, state)
    return table


def held_gate(release: asyncio.Event, arrived: list[int] | None = None) -> Any:
    """A token gate that holds every request before its first token until `release`."""
    async def gate(i: int) -> None:
        if i == 0:
            if arrived is not None:
                arrived.append(1)
            await release.wait()
    return gate


def error_of(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error", "message", "problems"}, body
    return body


# ---- balancing -----------------------------------------------------------------------------
def test_balancing_spreads_concurrent_requests_over_replicas() -> None:
    async def main() -> None:
        release, arrived = asyncio.Event(), []
        gate = held_gate(release, arrived)
        async with replica("a", token_gate=gate) as (ua, a), \
                replica("b", token_gate=gate) as (ub, b), \
                replica("c", token_gate=gate) as (uc, c):
            table = table_with(a=(ua, READY), b=(ub, READY), c=(uc, READY))
            async with gateway(table) as client:
                calls = [asyncio.create_task(client.post("/serve/toy/v1/completions",
                                                         json=completion()))
                         for _ in range(30)]
                await until(lambda: len(arrived) == 30, "every request held by a replica")
                held = {m.replica_id: m.in_flight for m in (a, b, c)}
                release.set()
                responses = await asyncio.gather(*calls)
        assert all(r.status_code == 200 for r in responses)
        assert sum(held.values()) == 30 and min(held.values()) >= 7, held
    run(main())


def test_balancing_avoids_a_replica_that_holds_its_requests() -> None:
    async def main() -> None:
        stuck = asyncio.Event()
        async with replica("slow", token_gate=held_gate(stuck)) as (us, slow), \
                replica("f1") as (u1, f1), replica("f2") as (u2, f2):
            table = table_with(slow=(us, READY), f1=(u1, READY), f2=(u2, READY))
            async with gateway(table) as client:
                held = []
                for _ in range(30):  # one after another: the fast ones hold nothing between
                    call = asyncio.create_task(client.post("/serve/toy/v1/completions",
                                                           json=completion()))
                    before = slow.served
                    await until(lambda c=call, n=before: c.done() or slow.served > n,
                                "served, or held by the slow replica")
                    if call.done():
                        assert call.result().status_code == 200
                    else:
                        held.append(call)
                stuck.set()
                assert all(r.status_code == 200 for r in await asyncio.gather(*held))
        # the slow replica got its first request, then lost every draw while it held it
        assert slow.served <= 1 and f1.served + f2.served >= 29, (slow.served, f1.served,
                                                                  f2.served)
    run(main())


# ---- streaming -----------------------------------------------------------------------------
def test_a_streamed_response_reaches_the_client_before_the_replica_has_finished() -> None:
    async def main() -> None:
        first_seen = asyncio.Event()

        async def gate(i: int) -> None:
            if i == 1:  # the second token waits until the client holds the first
                await first_seen.wait()

        async with (replica("a", token_gate=gate) as (ua, a),
                    gateway(table_with(a=(ua, READY))) as client,
                    client.stream("POST", "/serve/toy/v1/completions",
                                  json=completion(max_tokens=3, stream=True)) as resp):
            assert resp.status_code == 200
            assert resp.headers["content-type"].startswith("text/event-stream")
            chunks = resp.aiter_raw()
            first = await anext(chunks)
            still_generating = a.in_flight == 1
            first_seen.set()
            rest = b"".join([c async for c in chunks])
        assert first.startswith(b"data: ") and b" hello0" in first and b"[DONE]" not in first
        assert still_generating
        events = [e for e in (first + rest).split(b"\n\n") if e]
        assert [json.loads(e[6:])["choices"][0]["text"] for e in events[:-1]] == \
            [" hello0", " world1", " hello2"]
        assert events[-1] == b"data: [DONE]"
    run(main())


def test_a_request_body_is_streamed_to_the_replica() -> None:
    async def main() -> None:
        async def body() -> Any:
            for part in (b"x" * 1000, b"y" * 70_000, b"z"):
                yield part

        async with replica("a") as (ua, _), gateway(table_with(a=(ua, READY))) as client:
            resp = await client.post("/serve/toy/debug/request", content=body())
        assert resp.status_code == 200 and resp.json()["body_bytes"] == 71_001
        assert ["transfer-encoding", "chunked"] in resp.json()["headers"]
    run(main())


# ---- the queue while nothing is ready ------------------------------------------------------
def test_requests_wait_while_no_replica_is_ready_and_are_served_when_one_is() -> None:
    async def main() -> None:
        async with replica("a") as (ua, _):
            table = table_with(a=(ua, ReplicaState.STARTING))
            async with gateway(table) as client:
                calls = [asyncio.create_task(client.post("/serve/toy/v1/completions",
                                                         json=completion()))
                         for _ in range(3)]
                await until(lambda: client.gateway.admission.queued("toy") == 3, "3 queued")
                scraped = (await client.get("/metrics")).text
                assert not any(c.done() for c in calls)
                table.set_state("toy", "a", READY)
                responses = await asyncio.gather(*calls)
        assert [r.status_code for r in responses] == [200, 200, 200]
        assert 'corral_gateway_queue_length{service="toy"} 3.0' in scraped
    run(main())


def test_a_full_queue_or_a_wait_past_its_limit_is_503_with_retry_after() -> None:
    async def main() -> None:
        table = table_with()  # a service with no replica at all: scaled to zero
        limits = GatewayLimits(max_queue=2, max_queue_wait_s=300, retry_after_s=3)
        async with gateway(table, limits) as client:
            waiting = [asyncio.create_task(client.get("/serve/toy/x")) for _ in range(2)]
            await until(lambda: client.gateway.admission.queued("toy") == 2, "2 queued")
            full = await client.get("/serve/toy/x")
            table.remove_service("toy")  # the waiters are let go: the service is gone
            gone = await asyncio.gather(*waiting)
        assert full.status_code == 503 and full.headers["retry-after"] == "3"
        assert error_of(full)["error"] == "unavailable" and "2 requests" in full.json()["message"]
        assert [r.status_code for r in gone] == [404, 404]

        table = table_with()
        async with gateway(table, GatewayLimits(max_queue_wait_s=0.01)) as client:
            late = await client.get("/serve/toy/x")
        assert late.status_code == 503 and late.headers["retry-after"] == "2"
        assert "no free replica within" in error_of(late)["message"]
    run(main())


# ---- retries -------------------------------------------------------------------------------
def test_a_post_that_reached_a_replica_is_never_sent_to_another() -> None:
    async def main() -> None:
        async with replica("sick", healthy=False) as (us, sick), replica("ok") as (uo, ok):
            table = table_with(sick=(us, READY), ok=(uo, READY))  # the table still says ready
            async with gateway(table) as client:
                posts = [await client.post("/serve/toy/v1/completions", json=completion())
                         for _ in range(20)]
                gets = [await client.get("/serve/toy/healthz") for _ in range(20)]
                metrics = (await client.get("/metrics")).text
        refused = [r for r in posts if r.status_code == 503]
        assert refused and all(r.headers["x-replica"] == "sick" for r in refused)
        assert ok.served == 20 - len(refused) and sick.served == 0
        # a GET answered 503 before any body did not run: it went to the other replica
        assert [r.status_code for r in gets] == [200] * 20
        assert {r.headers["x-replica"] for r in gets} == {"ok"}
        assert 'corral_gateway_retries_total{service="toy"}' in metrics
    run(main())


def test_a_refused_connection_is_retried_on_another_replica() -> None:
    async def main() -> None:
        dead = f"http://127.0.0.1:{closed_port()}"
        async with replica("ok") as (uo, ok):
            table = table_with(dead=(dead, READY), ok=(uo, READY))
            async with gateway(table) as client:
                gets = [await client.get("/serve/toy/healthz") for _ in range(10)]
                posts = [await client.post("/serve/toy/v1/completions", json=completion())
                         for _ in range(10)]
                errors = (await client.get("/metrics")).text
            strict = GatewayLimits(retry_unsent_non_idempotent=False)
            async with gateway(table, strict) as client:
                strict_posts = [await client.post("/serve/toy/v1/completions",
                                                  json=completion()) for _ in range(10)]
            table.remove_replica("toy", "ok")
            async with gateway(table) as client:
                alone = await client.get("/serve/toy/healthz")
        assert [r.status_code for r in gets + posts] == [200] * 20
        assert 'corral_gateway_errors_total{reason="connect",service="toy"}' in errors
        codes = Counter(r.status_code for r in strict_posts)
        assert set(codes) == {200, 502} and ok.served == 10 + codes[200]
        assert alone.status_code == 502 and error_of(alone)["error"] == "bad_gateway"
    run(main())


# ---- draining ------------------------------------------------------------------------------
def test_a_draining_replica_finishes_in_flight_requests_and_gets_no_new_ones() -> None:
    async def main() -> None:
        release, arrived = asyncio.Event(), []
        async with replica("old", token_gate=held_gate(release, arrived)) as (uo, old), \
                replica("new") as (un, new):
            table = table_with(old=(uo, READY))
            async with gateway(table) as client:
                held = asyncio.create_task(client.post("/serve/toy/v1/completions",
                                                       json=completion(stream=True)))
                await until(lambda: arrived, "the stream is held by the old replica")
                table.set_replica("toy", "new", un, READY)
                table.set_state("toy", "old", ReplicaState.DRAINING)
                drained = asyncio.create_task(wait_drained(table, "toy", "old"))
                fresh = [await client.post("/serve/toy/v1/completions", json=completion())
                         for _ in range(10)]
                assert not drained.done()
                release.set()
                finished = await held
                await drained
                table.remove_replica("toy", "old")
        assert finished.status_code == 200 and finished.text.endswith("data: [DONE]\n\n")
        assert [r.headers["x-replica"] for r in fresh] == ["new"] * 10
        assert old.served == 1 and new.served == 10
    run(main())


def test_no_request_is_dropped_while_a_replica_is_drained_removed_and_stopped() -> None:
    async def main() -> None:
        async with replica("b", token_delay_s=0.001) as (ub, b):
            table = table_with(b=(ub, READY))
            async with gateway(table) as client:
                async def load(stop: asyncio.Event) -> list[int]:
                    codes = []
                    while not stop.is_set():
                        r = await client.post("/serve/toy/v1/completions",
                                              json=completion(max_tokens=3, stream=True))
                        codes.append(r.status_code if r.text.endswith("[DONE]\n\n") else -1)
                    return codes

                stop = asyncio.Event()
                async with replica("a", token_delay_s=0.001) as (ua, a):
                    table.set_replica("toy", "a", ua, READY)
                    workers = [asyncio.create_task(load(stop)) for _ in range(8)]
                    await until(lambda: a.served >= 20 and b.served >= 20, "both serve")
                    table.set_state("toy", "a", ReplicaState.DRAINING)
                    await wait_drained(table, "toy", "a")
                    table.remove_replica("toy", "a")
                    served_by_a = a.served
                # replica a is stopped now; the load goes on against b alone
                after = b.served
                await until(lambda: b.served >= after + 40, "b serves on")
                stop.set()
                codes = [c for w in workers for c in await w]
        assert Counter(codes) == {200: len(codes)}, Counter(codes)
        assert a.served == served_by_a and a.in_flight == 0
    run(main())


# ---- auth, hostile input, metrics ----------------------------------------------------------
def test_token_and_public_services() -> None:
    async def main() -> None:
        async with replica("a") as (ua, _):
            table = table_with("private", ServiceAuth.token("s3cret"), a=(ua, READY))
            table.set_service("open")
            table.set_replica("open", "a", ua, READY)
            async with gateway(table) as client:
                missing = await client.get("/serve/private/debug/request")
                wrong = await client.get("/serve/private/debug/request",
                                         headers={"Authorization": "Bearer nope"})
                right = await client.get("/serve/private/debug/request",
                                         headers={"Authorization": "Bearer s3cret"})
                public = await client.get("/serve/open/debug/request",
                                          headers={"Authorization": "Bearer app-own"})
        for refused in (missing, wrong):
            assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
            assert error_of(refused)["error"] == "unauthorized"
        assert "needs a bearer token" in missing.json()["message"]
        assert "not valid" in wrong.json()["message"]
        assert right.status_code == 200
        assert "authorization" not in dict(right.json()["headers"])  # the gateway's token
        assert dict(public.json()["headers"])["authorization"] == "Bearer app-own"
    run(main())


async def raw_request(base: str, head: bytes) -> tuple[int, bytes]:
    """Send bytes as they are (no client normalises them); returns status and body."""
    host, port = base.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(head)
    await writer.drain()
    data = await reader.read()
    writer.close()
    status_line, _, rest = data.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]


def test_hostile_paths_and_headers() -> None:
    async def main() -> None:
        async with replica("a") as (ua, _):
            table = table_with(a=(ua, READY))
            async with gateway(table) as client:
                base = str(client.base_url).rstrip("/")
                dots = [await raw_request(base, b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n"
                                          b"Connection: close\r\n\r\n")
                        for path in (b"/serve/toy/../../metrics", b"/serve/toy/a/%2e%2E/b",
                                     b"/serve/toy/./x")]
                unknown = [await client.get(p) for p in (
                    "/serve/nope/x", "/serve/TOY/x", "/serve/toy@evil.example/x",
                    "/serve/" + "a" * 300 + "/x", "/elsewhere")]
                spoofed = await client.get(
                    "/serve/toy//evil.example/debug%2Frequest?q=%00",
                    headers={"Host": "front.example", "X-Forwarded-Host": "evil.example",
                             "X-Forwarded-Proto": "gopher", "X-Forwarded-Prefix": "/admin",
                             "Connection": "X-Forwarded-Prefix, X-Drop", "X-Drop": "1"})
                encoded = await raw_request(base, b"GET /serve/%74oy/debug/request HTTP/1.1"
                                            b"\r\nHost: x\r\nConnection: close\r\n\r\n")
                echoed = await client.get("/serve/toy/debug/request?x=%2F",
                                          headers={"Host": "front.example",
                                                   "X-Forwarded-Host": "evil.example",
                                                   "X-Forwarded-Proto": "gopher",
                                                   "Connection": "X-Drop", "X-Drop": "1"})
        for status, body in dots:
            assert status == 400 and json.loads(body)["problems"][0]["field"] == "path"
        assert [r.status_code for r in unknown] == [404] * 5
        assert all(error_of(r)["error"] == "not_found" for r in unknown)
        assert len(unknown[3].json()["message"]) < 120
        # the replica's own 404: the path went to the replica's host, never to evil.example
        assert spoofed.status_code == 404 and spoofed.headers["x-replica"] == "a"
        assert encoded[0] == 200 and json.loads(encoded[1])["path"] == "/debug/request"
        seen = echoed.json()
        headers = dict(seen["headers"])
        assert seen["path"] == "/debug/request" and seen["query"] == "x=%2F"
        assert headers["x-forwarded-host"] == "front.example"
        assert headers["x-forwarded-proto"] == "http"
        assert headers["x-forwarded-prefix"] == "/serve/toy"
        assert headers["host"] == ua.removeprefix("http://") and "x-drop" not in headers
    run(main())


def test_metrics_per_service() -> None:
    async def main() -> None:
        async with replica("a") as (ua, _):
            table = table_with(a=(ua, READY))
            table.set_replica("toy", "b", "http://127.0.0.1:9", ReplicaState.STARTING)
            async with gateway(table) as client:
                await client.post("/serve/toy/v1/completions", json=completion())
                await client.get("/serve/ghost/x")
                text = (await client.get("/metrics")).text
        for series in ('corral_gateway_requests_total{code="200",service="toy"} 1.0',
                       'corral_gateway_requests_total{code="404",service=""} 1.0',
                       'corral_gateway_first_byte_seconds_count{service="toy"} 1.0',
                       'corral_gateway_request_seconds_count{service="toy"} 1.0',
                       'corral_gateway_in_flight{service="toy"} 0.0',
                       'corral_gateway_queue_length{service="toy"} 0.0',
                       'corral_gateway_replicas{service="toy",state="ready"} 1.0',
                       'corral_gateway_replicas{service="toy",state="starting"} 1.0',
                       'corral_gateway_replicas{service="toy",state="draining"} 0.0'):
            assert series in text, series
        assert "ghost" not in text
    run(main())


# ---- timeouts and a client that leaves -----------------------------------------------------
def test_first_byte_and_total_timeouts() -> None:
    async def main() -> None:
        never = asyncio.Event()

        async def slow_second_token(i: int) -> None:
            if i == 1:
                await never.wait()

        async with replica("mute", prefill_delay_s=300) as (um, _), \
                replica("stalls", token_gate=slow_second_token) as (us, stalls):
            table = table_with(mute=(um, READY))
            async with gateway(table, GatewayLimits(first_byte_timeout_s=0.05)) as client:
                late = await client.post("/serve/toy/v1/completions", json=completion())
            table = table_with(stalls=(us, READY))
            async with gateway(table, GatewayLimits(total_timeout_s=0.5)) as client:
                got, cut = b"", None
                try:
                    async with client.stream("POST", "/serve/toy/v1/completions",
                                             json=completion(stream=True)) as resp:
                        async for chunk in resp.aiter_raw():
                            got += chunk
                except httpx.HTTPError as exc:
                    cut = exc
                await until(lambda: stalls.in_flight == 0, "the replica's stream was closed")
                text = (await client.get("/metrics")).text
        assert late.status_code == 504 and error_of(late)["error"] == "gateway_timeout"
        # the first token came through, then the stream was cut: never a clean ending
        assert b" hello0" in got and b"[DONE]" not in got and cut is not None
        assert 'corral_gateway_errors_total{reason="total_timeout",service="toy"} 1.0' in text
    run(main())


def test_a_client_that_leaves_mid_stream_frees_the_replica() -> None:
    async def main() -> None:
        never = asyncio.Event()

        async def hold(i: int) -> None:
            if i == 1:
                await never.wait()

        async with replica("a", token_gate=hold) as (ua, a):
            table = table_with(a=(ua, READY))
            async with gateway(table) as client:
                async with client.stream("POST", "/serve/toy/v1/completions",
                                         json=completion(stream=True)) as resp:
                    first = await anext(resp.aiter_raw())
                    assert table.replica("toy", "a").outstanding == 1  # type: ignore[union-attr]
                # the client closed its side: the gateway closes the replica's stream
                await until(lambda: table.replica("toy", "a").outstanding == 0  # type: ignore[union-attr]
                            and a.in_flight == 0, "the replica let go")
        assert b" hello0" in first
    run(main())


def test_a_cookie_one_user_gets_is_never_sent_for_another() -> None:
    async def main() -> None:
        async with replica("a") as (ua, _), gateway(table_with(a=(ua, READY))) as client:
            first = await client.get("/serve/toy/debug/request",
                                     params={"set_cookie": "session=alice"})
            client.cookies.clear()  # another user: a client with no cookies
            second = await client.get("/serve/toy/debug/request")
        assert first.headers["set-cookie"].startswith("session=alice")
        assert "cookie" not in dict(second.json()["headers"])
    run(main())


def test_a_client_that_gives_up_while_queued_frees_its_slot() -> None:
    async def main() -> None:
        table = table_with()
        async with gateway(table, GatewayLimits(max_queue=1)) as client:
            waiting = asyncio.create_task(client.get("/serve/toy/x"))
            await until(lambda: client.gateway.admission.queued("toy") == 1, "queued")
            waiting.cancel()  # the client closes its connection
            await until(lambda: client.gateway.admission.queued("toy") == 0, "slot given back")
            another = asyncio.create_task(client.get("/serve/toy/x"))
            await until(lambda: client.gateway.admission.queued("toy") == 1, "queued again")
            table.remove_service("toy")
            assert (await another).status_code == 404
    run(main())


def test_with_no_other_replica_to_try_the_replicas_own_503_is_passed_on() -> None:
    async def main() -> None:
        async with (replica("sick", healthy=False) as (us, _),
                    gateway(table_with(sick=(us, READY))) as client):
            got = await client.get("/serve/toy/healthz")
            text = (await client.get("/metrics")).text
        assert got.status_code == 503 and got.headers["x-replica"] == "sick"
        assert got.json() == {"status": "unavailable", "replica": "sick", "in_flight": 0}
        assert 'corral_gateway_retries_total{service="toy"}' not in text  # never retried
    run(main())


# ---- a service's own limits (its spec's `endpoint` section) ---------------------------------
def test_max_concurrent_holds_the_next_requests_in_the_queue_and_max_queue_bounds_it() -> None:
    async def main() -> None:
        release, arrived = asyncio.Event(), []
        async with replica("a", token_gate=held_gate(release, arrived)) as (ua, a), \
                replica("b", token_gate=held_gate(release, arrived)) as (ub, _):
            table = table_with(a=(ua, READY), b=(ub, READY))
            table.set_service("toy", limits=ServiceLimits(max_concurrent=2, max_queue=1))
            async with gateway(table, GatewayLimits(max_queue=50)) as client:
                calls = [asyncio.create_task(client.post("/serve/toy/v1/completions",
                                                         json=completion()))
                         for _ in range(3)]
                await until(lambda: len(arrived) == 2 and
                            client.gateway.admission.queued("toy") == 1, "2 running, 1 queued")
                full = await client.post("/serve/toy/v1/completions", json=completion())
                release.set()  # a slot frees: the queued one runs
                done = await asyncio.gather(*calls)
        assert [r.status_code for r in done] == [200, 200, 200] and len(arrived) == 3
        assert full.status_code == 503 and "1 requests already wait" in error_of(full)["message"]
        assert a.served + _.served == 3
    run(main())


def test_a_services_own_queue_wait_and_request_timeout_override_the_gateways() -> None:
    async def main() -> None:
        table = table_with()  # no replica: the request waits in the queue
        table.set_service("toy", limits=ServiceLimits(queue_wait_s=0.05))
        async with gateway(table, GatewayLimits(max_queue_wait_s=300)) as client:
            late = await client.get("/serve/toy/x")
        assert late.status_code == 503 and "within 0.05 s" in error_of(late)["message"]

        never = asyncio.Event()

        async def stall(i: int) -> None:
            if i == 1:
                await never.wait()

        async with replica("stalls", token_gate=stall) as (us, stalls):
            table = table_with(stalls=(us, READY))
            table.set_service("toy", limits=ServiceLimits(total_timeout_s=0.3))
            async with gateway(table, GatewayLimits(total_timeout_s=300)) as client:
                cut = await read_cut_stream(client)
                await until(lambda: stalls.in_flight == 0, "the replica's stream was closed")
                text = (await client.get("/metrics")).text
        assert cut is not None  # cut at the service's 0.3 s, not the gateway's 300 s
        assert 'reason="total_timeout",service="toy"' in text
    run(main())


# ---- per-service connect and first-byte timeouts -------------------------------------------
class _Silent:
    """A TCP server that accepts connections and never answers (a replica wedged after
    accept: a deadlocked server, a full worker pool)."""

    def __init__(self) -> None:
        self.accepted = 0
        self.server: asyncio.AbstractServer | None = None
        self.held: list[asyncio.StreamWriter] = []

    async def __aenter__(self) -> str:
        async def hold(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.accepted += 1
            self.held.append(writer)
        self.server = await asyncio.start_server(hold, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def __aexit__(self, *exc: object) -> None:
        for writer in self.held:
            writer.close()
        assert self.server is not None
        self.server.close()


class _Unreachable:
    """A listener whose accept queue is full: the kernel drops new SYNs, so a connect to it
    neither succeeds nor is refused: it times out."""

    def __init__(self) -> None:
        self.socks: list[socket.socket] = []

    def __enter__(self) -> str:
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        address = listener.getsockname()
        self.socks.append(listener)
        for _ in range(8):  # fill the backlog; never accepted
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(address)
            self.socks.append(s)
        return f"http://127.0.0.1:{address[1]}"

    def __exit__(self, *exc: object) -> None:
        for s in self.socks:
            s.close()


def test_a_replica_that_accepts_and_never_answers_is_a_504_at_the_services_first_byte_timeout(
        ) -> None:
    async def main() -> None:
        silent = _Silent()
        async with silent as silent_url, replica("ok") as (uo, ok):
            table = table_with(mute=(silent_url, READY), ok=(uo, READY))
            table.set_service("toy", limits=ServiceLimits(first_byte_timeout_s=0.1))
            # the gateway's own first-byte timeout would outlast the test's guard
            async with gateway(table, GatewayLimits(first_byte_timeout_s=3600)) as client:
                got = [await client.post("/serve/toy/v1/completions", json=completion())
                       for _ in range(12)]
                got += [await client.get("/serve/toy/healthz") for _ in range(12)]
                text = (await client.get("/metrics")).text
        late = [r for r in got if r.status_code == 504]
        assert late and all(error_of(r)["error"] == "gateway_timeout" for r in late)
        assert "first-byte timeout" in error_of(late[0])["message"]
        # every request the silent replica took ended there, a GET too: never sent again
        assert len(late) == silent.accepted
        assert {r.status_code for r in got} == {200, 504}
        assert ok.served == sum(r.status_code == 200 for r in got[:12])  # completions served
        assert 'reason="first_byte_timeout",service="toy"' in text
        assert 'corral_gateway_retries_total{service="toy"}' not in text
    run(main())


def test_a_replica_not_reached_within_the_services_connect_timeout_is_skipped() -> None:
    async def main() -> None:
        with _Unreachable() as far:
            async with replica("ok") as (uo, ok):
                table = table_with(far=(far, READY), ok=(uo, READY))
                table.set_service("toy", limits=ServiceLimits(connect_timeout_s=0.1))
                async with gateway(table, GatewayLimits(connect_timeout_s=3600)) as client:
                    posts = [await client.post("/serve/toy/v1/completions",
                                               json=completion()) for _ in range(10)]
                    gets = [await client.get("/serve/toy/healthz") for _ in range(10)]
                    text = (await client.get("/metrics")).text
        # the connect never completed: the replica never saw the request, another one ran it
        assert [r.status_code for r in posts + gets] == [200] * 20
        assert {r.headers["x-replica"] for r in posts + gets} == {"ok"} and ok.served == 10
        assert 'corral_gateway_errors_total{reason="connect",service="toy"}' in text
        assert 'corral_gateway_retries_total{service="toy"}' in text
    run(main())
