"""Retries after a reset: a replica killed with SIGKILL while it holds a request (a real
process), and, in process, a replica that reads each request and drops the connection without
answering (what a kill looks like to the gateway), to drive the policy, the replay buffer, the
per-request attempts and the service's retry budget. No test waits on a timer."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from corral.gateway import GatewayLimits, ReplicaState, RouteTable, ServiceLimits
from corral.gateway.retries import RetryPolicy

from .harness import completion, gateway, replica, replica_process, run

READY, STARTING = ReplicaState.READY, ReplicaState.STARTING


@asynccontextmanager
async def dropper(headers_only: asyncio.Event | None = None
                  ) -> AsyncIterator[tuple[str, list[int]]]:
    """A replica that reads a whole request, then resets the connection with no response.
    Yields (URL, the body sizes it read: one per request that reached it). `headers_only`:
    read only the headers, set the event, and reset (the body still on its way)."""
    seen: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), 0)
        if headers_only is not None:
            headers_only.set()
        else:
            seen.append(len(await reader.readexactly(length)))
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        writer.transport.abort()  # linger 0: an RST, as from a killed process

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", seen
    finally:
        server.close()


def metric(text: str, line: str) -> float:
    found = [x for x in text.splitlines() if x.startswith(line + " ")]
    return float(found[0].split()[-1]) if found else 0.0


def busy(table: RouteTable, rid: str) -> None:
    """Give a replica one outstanding request, so two-choice balancing always tries the other
    (idle) replicas first."""
    found = table.replica("toy", rid)
    assert found is not None
    table.acquire(found)


def test_a_request_on_a_replica_killed_with_sigkill_is_served_by_another() -> None:
    async def main() -> tuple[httpx.Response, int, str]:
        async with replica_process("victim", 600) as (url, pid, in_flight), \
                replica("ok") as (uo, ok):
            table = RouteTable()
            table.set_service("toy")
            table.set_replica("toy", "victim", url, READY)
            table.set_replica("toy", "ok", uo, STARTING)  # the victim gets the request
            async with gateway(table) as client:
                sent = asyncio.create_task(client.post(
                    "/serve/toy/v1/completions", json=completion("killed mid request", 1)))
                while await in_flight() < 1:  # the victim is generating it
                    await asyncio.sleep(0.02)
                table.set_state("toy", "ok", READY)  # the prober would see it ready
                os.kill(pid, signal.SIGKILL)
                response = await sent
                metrics = (await client.get("/metrics")).text
        return response, ok.served, metrics

    response, served, metrics = run(main())
    assert response.status_code == 200, response.text
    assert response.headers["x-replica"] == "ok" and served == 1
    assert response.json()["choices"][0]["text"] == " killed0"
    assert metric(metrics, 'corral_gateway_retries_total{service="toy"}') == 1
    assert metric(metrics, 'corral_gateway_errors_total{reason="upstream_reset",'
                           'service="toy"}') == 1


def test_the_services_policy_and_the_replay_buffer_decide_which_resets_are_retried() -> None:
    async def main() -> dict[str, Any]:
        async with dropper() as (ud, seen), replica("ok") as (uo, ok):
            out: dict[str, Any] = {}
            for name, limits, policy in [
                    ("default", GatewayLimits(), None),
                    ("off", GatewayLimits(), RetryPolicy(on_reset=False)),
                    ("small_buffer", GatewayLimits(replay_buffer_bytes=16), None)]:
                table = RouteTable()
                table.set_service("toy", limits=ServiceLimits(retry=policy))
                table.set_replica("toy", "drop", ud, READY)
                table.set_replica("toy", "ok", uo, READY)
                busy(table, "ok")
                async with gateway(table, limits) as client:
                    post = await client.post("/serve/toy/v1/completions", json=completion())
                    get = await client.get("/serve/toy/healthz")
                    metrics = (await client.get("/metrics")).text
                out[name] = (post, get, metrics)
            out["seen"], out["served"] = list(seen), ok.served
            return out

    out = run(main())
    post, get, metrics = out["default"]
    assert post.status_code == 200 and post.headers["x-replica"] == "ok"
    assert get.status_code == 200
    assert metric(metrics, 'corral_gateway_retries_total{service="toy"}') == 2
    post, get, metrics = out["off"]  # a service whose POSTs have effects: not sent twice
    assert post.status_code == 502 and post.headers["x-corral-retry-skipped"] == "policy"
    assert get.status_code == 200  # a GET is retried whatever the policy
    assert metric(metrics, 'corral_gateway_retries_skipped_total{reason="policy",'
                           'service="toy"}') == 1
    post, get, metrics = out["small_buffer"]  # the body outgrew the buffer: cannot resend it
    assert post.status_code == 502
    assert post.headers["x-corral-retry-skipped"] == "body_over_limit"
    assert get.status_code == 200
    assert metric(metrics, 'corral_gateway_retries_skipped_total{reason="body_over_limit",'
                           'service="toy"}') == 1
    body = len(httpx.Request("POST", "http://x", json=completion()).content)
    assert out["seen"] == [body, 0, body, 0, body, 0]  # every one reached the dropper whole
    assert out["served"] == 1


def test_attempts_bound_a_request_and_the_budget_bounds_a_service() -> None:
    async def main() -> tuple[list[httpx.Response], list[int], str]:
        async with dropper() as (u1, _), dropper() as (u2, _), replica("ok") as (uo, _ok):
            table = RouteTable()
            table.set_service("toy", limits=ServiceLimits(retry=RetryPolicy(attempts=2)))
            for rid, url in (("d1", u1), ("d2", u2), ("ok", uo)):
                table.set_replica("toy", rid, url, READY)
            busy(table, "ok")
            async with gateway(table) as client:  # two resets, then no third try
                twice = await client.post("/serve/toy/v1/completions", json=completion())
                table.set_service("toy", limits=ServiceLimits(retry=RetryPolicy(attempts=3)))
                thrice = await client.post("/serve/toy/v1/completions", json=completion())
            # budget 0.5, no reserve: a crash loop gets at most one retry per two requests
            table.remove_replica("toy", "d2")
            table.set_service("toy", limits=ServiceLimits(retry=RetryPolicy(budget=0.5)))
            async with gateway(table, GatewayLimits(retry_reserve=0)) as client:
                codes = [(await client.post("/serve/toy/v1/completions",
                                            json=completion())).status_code for _ in range(4)]
                metrics = (await client.get("/metrics")).text
            return [twice, thrice], codes, metrics

    (twice, thrice), codes, metrics = run(main())
    assert twice.status_code == 502 and twice.headers["x-corral-retry-skipped"] == "attempts"
    assert thrice.status_code == 200 and thrice.headers["x-replica"] == "ok"
    assert codes == [200, 502, 200, 502]
    assert metric(metrics, 'corral_gateway_retries_skipped_total{reason="budget",'
                           'service="toy"}') == 2
    assert metric(metrics, 'corral_gateway_retries_total{service="toy"}') == 2


def test_with_no_other_replica_a_reset_is_a_502_that_says_why() -> None:
    async def main() -> httpx.Response:
        async with dropper() as (ud, _):
            table = RouteTable()
            table.set_service("toy")
            table.set_replica("toy", "drop", ud, READY)
            async with gateway(table) as client:
                return await client.post("/serve/toy/v1/completions", json=completion())

    response = run(main())
    assert response.status_code == 502 and response.json()["error"] == "bad_gateway"
    assert response.headers["x-corral-retry-skipped"] == "no_replica"
    assert "before answering" in response.json()["message"]



def test_a_body_still_streaming_when_the_replica_resets_is_replayed_then_continued() -> None:
    """The replica breaks off after the request's headers while the client is still sending
    its body: the retry sends what the gateway held, then the rest as it comes."""
    async def main() -> tuple[httpx.Response, dict[str, Any]]:
        reset = asyncio.Event()
        async with dropper(reset) as (ud, _), replica("ok") as (uo, _ok):
            table = RouteTable()
            table.set_service("toy")
            table.set_replica("toy", "drop", ud, READY)
            table.set_replica("toy", "ok", uo, READY)
            busy(table, "ok")

            async def body() -> AsyncIterator[bytes]:
                yield b"a" * 1000
                await reset.wait()  # the first replica has broken off: the rest comes later
                yield b"b" * 1000
                yield b"c" * 1000
            async with gateway(table) as client:
                response = await client.post("/serve/toy/debug/request", content=body())
                metrics = (await client.get("/metrics")).text
        return response, {"retries": metric(
            metrics, 'corral_gateway_retries_total{service="toy"}')}

    response, counted = run(main())
    assert response.status_code == 200, response.text
    assert response.headers["x-replica"] == "ok"
    assert response.json()["body_bytes"] == 3000 and counted == {"retries": 1}


def test_a_services_replay_buffer_decides_which_bodies_are_retried_and_responses_say_so(
) -> None:
    """Per service: a body within its buffer is replayed after a reset; a larger one streams
    to one replica, is never retried, and every answer says so (X-Corral-Retry-Off); the
    gateway's ceiling bounds what a service asks for."""
    big = b"x" * (100 << 10)

    async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: found too big midway
        for _ in range(10):
            yield b"y" * (10 << 10)

    async def main() -> dict[str, Any]:
        out: dict[str, Any] = {}
        async with dropper() as (ud, _), replica("ok") as (uo, _ok):
            for name, own, ceiling in [("roomy", 256 << 10, 16 << 20),
                                       ("small", 64 << 10, 16 << 20),
                                       ("capped", 8 << 20, 64 << 10)]:
                table = RouteTable()
                table.set_service("toy", limits=ServiceLimits(replay_buffer_bytes=own))
                table.set_replica("toy", "drop", ud, READY)
                table.set_replica("toy", "ok", uo, READY)
                busy(table, "ok")  # the dropper is tried first
                limits = GatewayLimits(max_replay_buffer_bytes=ceiling)
                async with gateway(table, limits) as client:
                    reset = await client.post("/serve/toy/debug/request", content=big)
                    table.remove_replica("toy", "drop")  # now only "ok": served, not retried
                    served = await client.post("/serve/toy/debug/request", content=big)
                    streamed = await client.post("/serve/toy/debug/request", content=chunked())
                    metrics = (await client.get("/metrics")).text
                out[name] = (reset, served, streamed, metrics)
        return out

    out = run(main())
    reset, served, streamed, metrics = out["roomy"]  # 100 KiB within 256 KiB: replayed
    assert reset.status_code == 200 and reset.headers["x-replica"] == "ok"
    assert reset.json()["body_bytes"] == len(big)
    assert not any("x-corral-retry-off" in r.headers for r in (reset, served, streamed))
    assert metric(metrics, 'corral_gateway_bodies_over_buffer_total{service="toy"}') == 0
    for name, limit in (("small", 64 << 10), ("capped", 64 << 10)):
        reset, served, streamed, metrics = out[name]
        said = f"body_over_limit; limit={limit}"
        assert reset.status_code == 502, name
        assert reset.headers["x-corral-retry-skipped"] == "body_over_limit"
        assert reset.headers["x-corral-retry-off"] == said
        assert served.status_code == 200 and served.json()["body_bytes"] == len(big)
        assert served.headers["x-corral-retry-off"] == said
        assert streamed.status_code == 200 and streamed.json()["body_bytes"] == 100 << 10
        assert streamed.headers["x-corral-retry-off"] == said
        assert metric(metrics, 'corral_gateway_bodies_over_buffer_total{service="toy"}') == 3
        assert metric(metrics, 'corral_gateway_retries_total{service="toy"}') == 0


def test_the_gateways_ceiling_is_the_specs() -> None:
    from corral.spec.service import MAX_REPLAY_BUFFER_BYTES

    assert GatewayLimits().max_replay_buffer_bytes == MAX_REPLAY_BUFFER_BYTES
