"""The relay of `corral exec` / `corral port-forward` orders to agents (`corral.api.agent_relay`):
each order is handed out once, to its own node; only that node may answer it; an order given up
on takes no late answer. End to end with real agents: tests/agent/test_agent_exec.py."""

from __future__ import annotations

from corral.agent.protocol import ExecDone, ExecOrder, TunnelOrder
from corral.api.agent_relay import AgentRelay
from corral.store import Store


def _exec(relay: AgentRelay) -> ExecOrder:
    return ExecOrder(id=relay.new_id(), workload_id="w", attempt=0, worker=0, argv=["true"],
                     timeout_s=1.0, max_bytes=10)


def test_an_order_is_handed_to_its_node_once() -> None:
    relay = AgentRelay()
    e = _exec(relay)
    t = TunnelOrder(id=relay.new_id(), workload_id="w", attempt=0, worker=0, port=8888)
    relay.order("a", e)
    relay.order("a", t)
    assert relay.has_orders("a") and not relay.has_orders("b")
    assert relay.take("b") == ([], [])
    assert relay.take("a") == ([e], [t])
    assert relay.take("a") == ([], []) and not relay.has_orders("a")


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
    assert relay.take("a") == ([], [])
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
    assert "execs" not in quiet.json() and "tunnels" not in quiet.json()
    order = _exec(RELAY)
    RELAY.order("relay-host", order)
    got = api.client.post("/agent/v1/sync", json={"known_seq": -1}, headers=auth).json()
    assert SyncOut.model_validate(got).execs == [order] and "tunnels" not in got
