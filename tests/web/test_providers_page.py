"""The Providers page's fold (corral.web.providers_page): the autoscaler's records and the
agents' registrations -> each instance's state, price and money; money per provider."""

from __future__ import annotations

import pytest

from corral.store.audit import AuditRecord
from corral.web.providers_page import fold_instances, provider_rows

OFFER = {"provider": "aws", "instance_type": "g6.xlarge", "zone": "z1", "capacity_kind": "spot",
         "price_per_hour": "0.36"}


def rec(i: int, at: float, action: str, target: str, **detail: object) -> AuditRecord:
    actor = "agent" if action.startswith("agent.") else "autoscaler"
    return AuditRecord(i, at, actor, action if "." in action else f"autoscale.{action}", target,
                       "", dict(detail))


def test_each_instance_gets_its_state_and_its_money() -> None:
    records = [
        rec(1, 0.0, "launch", "i-a,i-b,i-c,i-d", offer=OFFER, reason="launch 4"),
        rec(2, 600.0, "drain", "node-b", instance="i-b", reason="drain node-b: idle"),
        rec(3, 900.0, "terminate", "i-b", reason="terminate i-b: drained and idle"),
        rec(4, 1200.0, "agent.spot_notice", "node-c", instance="i-c", stopped=["w1"]),
        rec(5, 1300.0, "launch_failed", "g6.xlarge", reason="no capacity"),  # names no instance
    ]
    rows = {r.id: r for r in fold_instances(records, {"i-a": "node-a", "i-c": "node-c"},
                                            now=3600.0)}
    assert {k: (r.state, r.node_id) for k, r in rows.items()} == {
        "i-a": ("ready", "node-a"), "i-b": ("terminated", "node-b"),
        "i-c": ("interrupted", "node-c"), "i-d": ("provisioning", None)}
    assert rows["i-b"].spent == pytest.approx(0.36 * 0.25)  # 15 min up
    assert rows["i-a"].spent == pytest.approx(0.36)  # an hour up, still running
    assert rows["i-b"].reason == "terminate i-b: drained and idle"
    (aws,) = provider_rows([], [], list(rows.values()))
    assert (aws.live_instances, aws.spend_per_hour) == (3, pytest.approx(1.08))
    assert aws.spent == pytest.approx(0.36 * 3 + 0.09)
