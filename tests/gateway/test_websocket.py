"""WebSockets through the gateway (issue 12): frames stream both ways unbuffered, the replica's
subprotocol and close code reach the client, the session is an outstanding request on its
replica while it lasts, refusals are HTTP answers in the house shape, and a replica that cannot
be reached is skipped for another. Real servers (uvicorn) on both sides; no timers."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import pytest
from prometheus_client import generate_latest
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from corral.gateway import ReplicaState, RouteTable, ServiceAuth, ServiceLimits

from .harness import closed_port, gateway, run, serving, until

READY = ReplicaState.READY


class Replica:
    """A WebSocket server: "n" -> n tokens, one at a time (the second waits for `go`); bytes
    echoed; "bye" -> closed with code 4000. Keeps each handshake's headers."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.go = asyncio.Event()
        self.headers: list[dict[str, str]] = []

        async def session(ws: WebSocket) -> None:
            self.headers.append(dict(ws.headers))
            await ws.accept(subprotocol="chat.v1" if "chat.v1" in ws.scope["subprotocols"]
                            else None)
            while True:
                message = await ws.receive()
                if message["type"] == "websocket.disconnect":
                    return
                if message.get("bytes") is not None:
                    await ws.send_bytes(message["bytes"])
                elif message["text"] == "bye":
                    await ws.close(4000, "done")
                    return
                else:
                    for i in range(int(message["text"])):
                        if i == 1:
                            await self.go.wait()
                        await ws.send_text(f"{self.name}:tok{i}")
        self.app = Starlette(routes=[WebSocketRoute("/ws", session)])


def ws_url(client: Any, path: str) -> str:
    return "ws" + str(client.base_url).removeprefix("http").rstrip("/") + path


def test_frames_stream_both_ways_and_the_close_code_comes_back() -> None:
    async def main() -> None:
        replica = Replica("a")
        async with serving(replica.app) as url:
            table = RouteTable()
            table.set_service("toy")
            table.set_replica("toy", "a", url, READY)
            async with gateway(table) as client:
                async with connect(ws_url(client, "/serve/toy/ws"),
                                   subprotocols=["chat.v1"]) as ws:
                    assert ws.subprotocol == "chat.v1"
                    await ws.send("3")
                    first = await ws.recv()  # before the replica may send the second
                    held = table.service("toy").replicas["a"].outstanding  # type: ignore[union-attr]
                    replica.go.set()
                    rest = [await ws.recv(), await ws.recv()]
                    await ws.send(b"\x00\x01binary")
                    echoed = await ws.recv()
                    await ws.send("bye")
                    with pytest.raises(ConnectionClosed) as closed:
                        await ws.recv()
                await asyncio.sleep(0)  # the gateway's side of the session ends
                for _ in range(1000):
                    if table.service("toy").replicas["a"].outstanding == 0:  # type: ignore[union-attr]
                        break
                    await asyncio.sleep(0.001)
                text = (await client.get("/metrics")).text
        assert first == "a:tok0" and rest == ["a:tok1", "a:tok2"]
        assert held == 1 and table.service("toy").replicas["a"].outstanding == 0  # type: ignore[union-attr]
        assert echoed == b"\x00\x01binary"
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4000
        assert replica.headers[0]["x-forwarded-prefix"] == "/serve/toy"
        assert 'corral_gateway_requests_total{code="101",service="toy"} 1.0' in text
    run(main())


def test_refusals_are_http_answers_and_a_token_is_not_forwarded() -> None:
    async def main() -> None:
        replica = Replica("a")
        async with serving(replica.app) as url:
            table = RouteTable()
            table.set_service("private", ServiceAuth(hashlib.sha256(b"t0k").hexdigest()))
            table.set_replica("private", "a", url, READY)
            table.set_service("empty", limits=ServiceLimits(max_queue=0))  # queue full at once
            async with gateway(table) as client:
                statuses = []
                for path, headers in (("/serve/nope/ws", {}), ("/serve/private/ws", {}),
                                      ("/serve/private/ws", {"Authorization": "Bearer bad"}),
                                      ("/serve/empty/ws", {})):
                    with pytest.raises(InvalidStatus) as refused:
                        async with connect(ws_url(client, path), additional_headers=headers):
                            pass
                    statuses.append(refused.value.response.status_code)
                async with connect(ws_url(client, "/serve/private/ws"),
                                   additional_headers={"Authorization": "Bearer t0k"}) as ws:
                    await ws.send("1")
                    assert await ws.recv() == "a:tok0"
        assert statuses == [404, 401, 401, 503]
        assert "authorization" not in replica.headers[0]
    run(main())


def test_a_replica_that_cannot_be_reached_is_skipped_for_another() -> None:
    async def main() -> None:
        replica = Replica("b")
        async with serving(replica.app) as url:
            table = RouteTable()
            table.set_service("toy")
            table.set_replica("toy", "dead", f"http://127.0.0.1:{closed_port()}", READY)
            table.set_replica("toy", "b", url, READY)
            async with gateway(table) as client:
                got = []
                for _ in range(6):
                    async with connect(ws_url(client, "/serve/toy/ws")) as ws:
                        await ws.send("1")
                        got.append(await ws.recv())
        assert got == ["b:tok0"] * 6
    run(main())


def test_a_session_waits_in_the_services_queue_until_a_replica_is_ready() -> None:
    async def main() -> tuple[str, int]:
        replica = Replica("a")
        async with serving(replica.app) as url:
            table = RouteTable()
            table.set_service("toy")
            table.set_replica("toy", "a", url, ReplicaState.STARTING)  # scale from zero
            async with gateway(table) as client:
                admission = client.gateway.admission  # type: ignore[attr-defined]

                async def session() -> str:
                    async with connect(ws_url(client, "/serve/toy/ws")) as ws:
                        await ws.send("1")
                        return str(await ws.recv())
                waiting = asyncio.create_task(session())
                await until(lambda: admission.queued("toy") == 1, "queued")
                table.set_state("toy", "a", READY)
                got = await waiting
                return got, admission.queued("toy")
    assert run(main()) == ("a:tok0", 0)


def test_an_idle_session_and_a_session_past_its_length_are_closed_going_away() -> None:
    async def main() -> tuple[Any, Any, str, int]:
        replica = Replica("a")
        async with serving(replica.app) as url:
            table = RouteTable()
            table.set_service("idle", limits=ServiceLimits(ws_idle_timeout_s=0.2))
            table.set_service("long", limits=ServiceLimits(ws_max_session_s=0.3))
            for service in ("idle", "long"):
                table.set_replica(service, "a", url, READY)
            async with gateway(table) as client:
                async with connect(ws_url(client, "/serve/idle/ws")) as ws:
                    await ws.send("1")
                    assert await ws.recv() == "a:tok0"
                    with pytest.raises(ConnectionClosed) as idle:
                        await ws.recv()  # nothing more either way
                async with connect(ws_url(client, "/serve/long/ws")) as ws:
                    with pytest.raises(ConnectionClosed) as long:
                        while True:  # never idle: only the session's length ends it
                            await ws.send(b"x")
                            await ws.recv()
                route = table.service("long")
                assert route is not None
                await until(lambda: route.replicas["a"].outstanding == 0, "released")
                text = (await client.get("/metrics")).text
                return idle.value.rcvd, long.value.rcvd, text, route.replicas["a"].outstanding

    idle, long, text, outstanding = run(main())
    assert idle.code == 1001 and "no message for 0.2 s" in idle.reason
    assert long.code == 1001 and "session longer than 0.3 s" in long.reason
    assert 'corral_gateway_errors_total{reason="ws_idle_timeout",service="idle"} 1.0' in text
    assert 'corral_gateway_errors_total{reason="ws_session_timeout",service="long"} 1.0' in text
    assert outstanding == 0


def test_a_client_that_leaves_while_queued_gives_its_slot_back_at_once() -> None:
    async def main() -> str:
        table = RouteTable()
        table.set_service("toy")  # no replica: the session waits (the gateway's 60 s)
        async with gateway(table) as client:
            admission = client.gateway.admission  # type: ignore[attr-defined]

            async def session() -> None:
                async with connect(ws_url(client, "/serve/toy/ws")):
                    pass
            waiting = asyncio.create_task(session())
            await until(lambda: admission.queued("toy") == 1, "queued")
            waiting.cancel()  # the client gives up: its connection closes
            await asyncio.gather(waiting, return_exceptions=True)
            await until(lambda: admission.queued("toy") == 0, "slot given back")
            await until(lambda: 'code="499"' in text_of(client.gateway), "counted")
            return text_of(client.gateway)
    assert 'corral_gateway_requests_total{code="499",service="toy"} 1.0' in run(main())


def text_of(gateway: Any) -> str:
    return generate_latest(gateway.metrics.registry).decode()
