"""A streamed response whose replica dies after the headers went out (a real replica process
killed with SIGKILL mid-stream): the client must see an error, never a short body that looks
whole; the loss is counted and logged; and the replica is avoided from the next request on,
before any probe has failed. No test waits on a timer."""

from __future__ import annotations

import asyncio
import logging
import os
import signal

import httpx
import pytest

from corral.gateway import ReplicaState, RouteTable

from .harness import completion, gateway, read_cut_stream, replica, replica_process, run
from .test_retries import metric

READY, STARTING = ReplicaState.READY, ReplicaState.STARTING


def test_a_stream_cut_by_a_killed_replica_is_an_error_counted_and_the_replica_avoided(
        caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> tuple[bytes, BaseException | None, list[httpx.Response], str]:
        async with replica_process("victim", 0.05) as (uv, pid, in_flight), \
                replica("ok") as (uo, _ok):
            table = RouteTable()
            table.set_service("toy")
            table.set_replica("toy", "victim", uv, READY)
            table.set_replica("toy", "ok", uo, STARTING)  # the victim gets the stream
            async with gateway(table) as client:
                got, cut = b"", None
                try:
                    async with client.stream("POST", "/serve/toy/v1/completions",
                                             json=completion(max_tokens=4096,
                                                             stream=True)) as resp:
                        async for chunk in resp.aiter_raw():
                            if not got:  # the first tokens are through: kill the replica
                                assert await in_flight() == 1
                                table.set_state("toy", "ok", READY)
                                os.kill(pid, signal.SIGKILL)
                            got += chunk
                except httpx.HTTPError as exc:
                    cut = exc
                # the next requests, at once: none to the dead replica (its probe has not run)
                after = [await client.post("/serve/toy/v1/completions", json=completion())
                         for _ in range(6)]
                metrics = (await client.get("/metrics")).text
        return got, cut, after, metrics

    with caplog.at_level(logging.WARNING, logger="corral.gateway"):
        got, cut, after, metrics = run(main())
    # an error, not a short body read as whole: no last chunk, and no [DONE] event
    assert isinstance(cut, httpx.RemoteProtocolError), repr(cut)
    assert b"data: " in got and b"[DONE]" not in got
    assert metric(metrics, 'corral_gateway_streams_lost_total{cause="replica_reset",'
                           'service="toy"}') == 1
    assert metric(metrics, 'corral_gateway_replicas_suspect{service="toy"}') == 1
    assert [r.status_code for r in after] == [200] * 6
    assert {r.headers["x-replica"] for r in after} == {"ok"}
    # nothing was sent to the dead replica: no refused connection, no retry
    assert metric(metrics, 'corral_gateway_errors_total{reason="connect",service="toy"}') == 0
    assert metric(metrics, 'corral_gateway_retries_total{service="toy"}') == 0
    logged = [r.getMessage() for r in caplog.records if "was cut" in r.getMessage()]
    assert len(logged) == 1 and "replica victim" in logged[0], logged


def test_a_stream_cut_by_the_total_timeout_leaves_the_replica_trusted() -> None:
    async def main() -> tuple[BaseException | None, float, str]:
        never = asyncio.Event()

        async def stall_second_token(i: int) -> None:
            if i == 1:
                await never.wait()

        async with replica("slow", token_gate=stall_second_token) as (us, _):
            table = RouteTable()
            table.set_service("toy")
            table.set_replica("toy", "slow", us, READY)
            from corral.gateway import GatewayLimits
            async with gateway(table, GatewayLimits(total_timeout_s=0.3)) as client:
                cut = await read_cut_stream(client)
                metrics = (await client.get("/metrics")).text
            found = table.replica("toy", "slow")
            assert found is not None
            return cut, found.suspect_until, metrics

    cut, suspect_until, metrics = run(main())
    assert isinstance(cut, httpx.RemoteProtocolError)
    assert metric(metrics, 'corral_gateway_streams_lost_total{cause="total_timeout",'
                           'service="toy"}') == 1
    assert suspect_until == 0.0  # the service's limit, not the replica's fault
    assert metric(metrics, 'corral_gateway_replicas_suspect{service="toy"}') == 0
