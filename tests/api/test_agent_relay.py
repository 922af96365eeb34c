"""The relay of `corral exec` / `corral port-forward` orders to agents (`corral.api.agent_relay`):
each order is handed out once, to its own node; only that node may answer it; an order given up
on takes no late answer. End to end with real agents: tests/agent/test_agent_exec.py."""

from __future__ import annotations

from corral.agent.protocol import ExecDone, ExecOrder, TunnelOrder
from corral.api.agent_relay import AgentRelay


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
