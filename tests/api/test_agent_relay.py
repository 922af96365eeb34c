"""The relay of `corral exec` / `port-forward` / `ssh` orders to agents (`corral.api.agent_relay`):
each order is handed out once, to its own node; only that node may answer it; an order given up
on takes no late answer. End to end with real agents: tests/agent/test_agent_exec.py."""

from __future__ import annotations

from typing import Any

from corral.agent.protocol import ExecDone, ExecOrder, ShellOrder, TunnelOrder
from corral.api.agent_relay import AgentRelay, Orders
from corral.store import Store


def _exec(relay: AgentRelay) -> ExecOrder:
    return ExecOrder(id=relay.new_id(), workload_id="w", attempt=0, worker=0, argv=["true"],
                     timeout_s=1.0, max_bytes=10)


def test_an_order_is_handed_to_its_node_once() -> None:
    relay = AgentRelay()
    e = _exec(relay)
    t = TunnelOrder(id=relay.new_id(), workload_id="w", attempt=0, worker=0, port=8888)
    sh = ShellOrder(id=relay.new_id(), workload_id="w", attempt=0, worker=0, rows=24, cols=80)
    relay.order("a", e)
    relay.order("a", t)
    relay.order("a", sh)
    assert relay.has_orders("a") and not relay.has_orders("b")
    assert relay.take("b") == Orders([], [], [])
    assert relay.take("a") == Orders([e], [t], [sh])
    assert relay.take("a") == Orders([], [], []) and not relay.has_orders("a")


def test_only_the_ordered_node_may_answer() -> None:
    relay = AgentRelay()
    e = _exec(relay)
    answer = relay.order("a", e)
    assert not relay.answer("b", e.id, ExecDone(exit_code=0, stdout="forged"))
    assert not answer.done()
    assert relay.answer("a", e.id, ExecDone(exit_code=3))
    assert answer.result(timeout=0).exit_code == 3
    assert not relay.answer("a", e.id, ExecDone(exit_code=4))  # answered once


def test_an_order_given_up_on_is_never_handed_out_or_answered() -> None:
    relay = AgentRelay()
    e = _exec(relay)
    answer = relay.order("a", e)
    relay.forget(e.id)
    assert relay.take("a") == Orders([], [], [])
    assert not relay.answer("a", e.id, ExecDone(exit_code=0)) and not answer.done()


def test_an_order_wakes_the_nodes_long_poll() -> None:
    """A sync waiting for its node (an hour here) returns once an order for it arrives from
    another thread, as a relayed exec's does; another node's order does not wake it."""
    import asyncio
    import threading

    relay = AgentRelay()

    async def go() -> bool:
        waiting = asyncio.create_task(relay.wait("a", 3600))
        await asyncio.sleep(0)  # registered
        other = threading.Thread(target=relay.order, args=("b", _exec(relay)))
        other.start()
        other.join()  # ordered: a wrong wake-up is already scheduled on this loop
        for _ in range(3):
            await asyncio.sleep(0)
        other_woke = waiting.done()
        threading.Thread(target=relay.order, args=("a", _exec(relay))).start()
        await asyncio.wait_for(waiting, 30)  # woken, not the hour
        return other_woke

    assert asyncio.run(go()) is False


def test_the_sync_sends_relay_fields_only_with_orders(store: Store) -> None:
    """An agent of the last release refuses unknown fields (extra=forbid): a sync without
    orders carries neither `execs` nor `tunnels`; one with an order for the node carries it."""
    from api.harness import build
    from corral.agent.protocol import HostFacts, SyncOut
    from corral.api.agent_relay import RELAY
    from corral.store import agents as AG

    api = build(store, backend_name="agent")
    with store.write() as c:
        _, token = AG.create_join_token(c, "root", 0.0)
        cred = AG.join(c, token, "relay-host", HostFacts(gpus=1).model_dump(), 0.0,
                       live_for_s=30)
    auth = {"Authorization": f"Bearer {cred}"}
    quiet = api.client.post("/agent/v1/sync", json={"known_seq": -1}, headers=auth)
    assert quiet.status_code == 200, quiet.text
    assert not {"execs", "tunnels", "shells"} & set(quiet.json())
    order = _exec(RELAY)
    RELAY.order("relay-host", order)
    got = api.client.post("/agent/v1/sync", json={"known_seq": -1}, headers=auth).json()
    assert SyncOut.model_validate(got).execs == [order] and "tunnels" not in got


def _running_on_agent(store: Store) -> tuple[Any, str, dict[str, str]]:
    """An API over the agent backend, a running workload whose worker 0 is assigned to
    node relay-host, and that node's credential header."""
    from sqlalchemy import insert, update

    from api.harness import build, job
    from corral.agent.protocol import HostFacts
    from corral.store import agents as AG
    from corral.store.schema import WorkloadRow

    api = build(store, backend_name="agent")
    with store.write() as c:
        _, token = AG.create_join_token(c, "root", 0.0)
        cred = AG.join(c, token, "relay-host", HostFacts(gpus=1).model_dump(), 0.0,
                       live_for_s=30)
    wid = api.client.post("/v1/workloads", json=job(), headers=api.ann).json()[
        "workloads"][0]["id"]
    with store.write() as c:
        c.execute(update(WorkloadRow).where(WorkloadRow.id == wid).values(state="running"))
        c.execute(insert(AG.AgentWorker).values(
            workload_id=wid, attempt=0, worker=0, node_id="relay-host", spec={},
            master_addr="127.0.0.1", master_port=20000, assigned_at=0.0, stop_deadline=None,
            stop_reason="", fenced=False, released=False, state="running", reason="Running",
            exit_code=None, finished_at=None, message=""))
    return api, wid, {"Authorization": f"Bearer {cred}"}


def _tunnel_order(node: str) -> TunnelOrder:
    import time

    from corral.api.agent_relay import RELAY

    for _ in range(400):  # the user's side orders it on the server's loop
        tunnels = RELAY.take(node).tunnels
        if tunnels:
            return tunnels[0]
        time.sleep(0.025)
    raise AssertionError("no tunnel order")


def test_a_relayed_forward_carries_the_hosts_refusal_and_only_its_node_answers(
        store: Store) -> None:
    """The user's forward waits for the worker's agent; another node's credential cannot take
    the order (4404); the agent's own check refusing the port reaches the user as 4403."""
    import threading

    import pytest
    from starlette.websockets import WebSocketDisconnect

    api, wid, agent_auth = _running_on_agent(store)
    with store.write() as c:
        from corral.agent.protocol import HostFacts
        from corral.store import agents as AG

        _, token = AG.create_join_token(c, "root", 0.0)
        other = AG.join(c, token, "other-host", HostFacts(gpus=1).model_dump(), 0.0,
                        live_for_s=30)
    codes: list[tuple[int, str]] = []
    with api.client as client:  # one event loop for every WebSocket, as under uvicorn

        def user() -> None:
            with client.websocket_connect(f"/v1/workloads/{wid}/port-forward?port=8888",
                                          headers=api.ann) as ws, \
                    pytest.raises(WebSocketDisconnect) as e:
                ws.receive_text()
            codes.append((e.value.code, e.value.reason))

        side = threading.Thread(target=user)
        side.start()
        order = _tunnel_order("relay-host")
        assert (order.workload_id, order.port) == (wid, 8888)
        with client.websocket_connect(f"/agent/v1/tunnels/{order.id}",
                                      headers={"Authorization": f"Bearer {other}"}) as ws, \
                pytest.raises(WebSocketDisconnect) as e:
            ws.receive_text()
        assert e.value.code == 4404
        with client.websocket_connect(f"/agent/v1/tunnels/{order.id}",
                                      headers=agent_auth) as ws:
            ws.send_text("refused 403 worker 0 does not listen on port 8888")
            side.join(timeout=30)
    assert codes == [(4403, "worker 0 does not listen on port 8888")]


def _shell_order(node: str) -> ShellOrder:
    import time

    from corral.api.agent_relay import RELAY

    for _ in range(400):  # the user's side orders it on the server's loop
        shells = RELAY.take(node).shells
        if shells:
            return shells[0]
        time.sleep(0.025)
    raise AssertionError("no shell order")


def test_a_relayed_shell_carries_keys_resizes_output_and_the_exit_status(store: Store) -> None:
    """`corral ssh` on the agent backend: the order names the terminal's size; keys (binary)
    and a resize (text) reach the agent as sent, its output and `{"exit": N}` reach the user,
    whose WebSocket then closes normally (1000)."""
    import json
    import threading

    import pytest
    from starlette.websockets import WebSocketDisconnect

    api, wid, agent_auth = _running_on_agent(store)
    got: dict[str, object] = {}
    with api.client as client:

        def user() -> None:
            with client.websocket_connect(f"/v1/workloads/{wid}/shell?rows=30&cols=90",
                                          headers=api.ann) as ws:
                got["first"] = ws.receive_text()
                ws.send_bytes(b"ls\r")
                ws.send_text(json.dumps({"resize": [33, 111]}))
                got["out"] = ws.receive_bytes()
                got["exit"] = ws.receive_text()
                with pytest.raises(WebSocketDisconnect) as e:
                    ws.receive_text()
                got["close"] = e.value.code

        side = threading.Thread(target=user)
        side.start()
        order = _shell_order("relay-host")
        assert (order.workload_id, order.worker, order.rows, order.cols) == (wid, 0, 30, 90)
        with client.websocket_connect(f"/agent/v1/tunnels/{order.id}",
                                      headers=agent_auth) as ws:
            ws.send_text("ok")
            assert ws.receive_bytes() == b"ls\r"
            assert json.loads(ws.receive_text()) == {"resize": [33, 111]}
            ws.send_bytes(b"file.txt\r\n")
            ws.send_text(json.dumps({"exit": 3}))
        side.join(timeout=30)
    assert got == {"first": "ok", "out": b"file.txt\r\n", "exit": '{"exit": 3}', "close": 1000}
    audit = api.client.get("/v1/audit", headers=api.admin).json()
    assert any(a["action"] == "workload.ssh" and a["target"] == wid for a in audit["items"])


def test_a_relayed_shell_over_its_idle_limit_is_closed_with_the_reason(store: Store) -> None:
    """Nothing either way for the server's idle limit: the user hears 4408 and why, and the
    agent's WebSocket is closed (its host then hangs the shell up)."""
    import threading

    import pytest
    from starlette.websockets import WebSocketDisconnect

    from corral.api.limits import ApiLimits

    api, wid, agent_auth = _running_on_agent(store)
    api.client.app.state.corral.limits = ApiLimits(shell_idle_s=0.3)  # type: ignore[attr-defined]
    closed: list[tuple[int, str]] = []
    with api.client as client:

        def user() -> None:
            with client.websocket_connect(f"/v1/workloads/{wid}/shell",
                                          headers=api.ann) as ws, \
                    pytest.raises(WebSocketDisconnect) as e:
                assert ws.receive_text() == "ok"
                ws.receive_text()
            closed.append((e.value.code, e.value.reason))

        side = threading.Thread(target=user)
        side.start()
        order = _shell_order("relay-host")
        with client.websocket_connect(f"/agent/v1/tunnels/{order.id}",
                                      headers=agent_auth) as ws, \
                pytest.raises(WebSocketDisconnect):
            ws.send_text("ok")
            ws.receive_bytes()  # nothing comes: the server closes this side too
        side.join(timeout=30)
    assert closed == [(4408, "idle for 0.3 s (the server's CORRAL_API_SHELL_IDLE_S)")]
