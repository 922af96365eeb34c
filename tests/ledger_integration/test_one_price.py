"""One price source: placement, price caps and billing read the same price. An explicit price
rule overrides a node's own price for the bill, so the scheduler sees it too (issue 11)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from tests.control.rig import Rig

from corral.control.accounting import Accounting, LedgerSettings
from corral.control.ledger_prices import billed_nodes, build_catalog, node_key
from corral.core import reasons as R
from corral.core.model import CapacityKind, Node
from corral.ledger import PriceRule
from corral.store import Store
from corral.store import ledger_rows as LR


def _rig(store: Store, rule_price: str | None) -> Rig:
    rig = Rig(store, admission=Accounting(store, settings=LedgerSettings(enforce=False)))  # type: ignore[arg-type]
    if rule_price is not None:
        with store.write() as c:
            LR.add_price(c, PriceRule.of(rule_price, gpu_model="H100"), "api", 0.0)
    return rig


@pytest.mark.parametrize("rule, cap, placed", [
    ("5.00", 0.50, False),   # the node's own price is 0, the rule bills 5.00: no placement
    ("0.40", 0.50, True),    # the rule bills 0.40: within the cap
    (None, 0.50, True),      # no rule: the node's own price (0) is what is billed
])
def test_a_price_cap_is_checked_against_the_billed_price(store: Store, rule, cap, placed) -> None:
    rig = _rig(store, rule)
    wid = rig.submit(gpus=1, max_price_per_gpu_hour=cap)
    rig.step()
    rec = rig.get(wid)
    assert (rec.state == "starting") is placed, (rec.state, rec.reason_code, rec.reason_message)
    if not placed:
        assert rec.reason_code in (R.PRICE_CAP_TOO_LOW, R.PRICE_CAP_BLOCKS)
        assert "5" in rec.reason_message


NODE = Node("n1", "aws", "H100", 8, 81_920, 1, 1, price_per_gpu_hour=0.40,
            capacity_kind=CapacityKind.ON_DEMAND, region="us-east-1")


@pytest.mark.parametrize("rules, expected", [
    ([], 0.40),
    ([PriceRule.of("5.00", gpu_model="H100")], 5.00),
    ([PriceRule.of("5.00", provider="gcp")], 0.40),
    ([PriceRule.of("5.00", gpu_model="H100", valid_from=2000)], 0.40),  # not yet in force
])
def test_billed_nodes_carry_the_rule_in_force(rules, expected) -> None:
    catalog = build_catalog(rules, [NODE])
    (node,) = billed_nodes((NODE,), catalog, 1000.0)
    assert node.price_per_gpu_hour == expected
    # the ledger bills exactly what placement saw
    assert float(catalog.rule_at(node_key(NODE), Decimal(1000)).price_per_gpu_hour) == expected


def test_unchanged_nodes_are_returned_as_they_are() -> None:
    nodes = (NODE,)
    assert billed_nodes(nodes, build_catalog([], nodes), 0.0) is nodes


def test_billed_nodes_with_a_memo_return_last_cycles_node_until_something_changes() -> None:
    """Repriced nodes are made once and handed back while the node and its billed price stay
    the same; a price coming into force, or a changed node, makes a new one."""
    from dataclasses import replace

    catalog = build_catalog([PriceRule.of("5.00", gpu_model="H100", valid_from=2000)], [NODE])
    memo: dict = {}
    before = billed_nodes((NODE,), catalog, 1000.0, memo)
    assert before == (NODE,) and before[0] is NODE
    (first,) = billed_nodes((NODE,), catalog, 2000.0, memo)
    (again,) = billed_nodes((NODE,), catalog, 2001.0, memo)
    assert first.price_per_gpu_hour == 5.00 and again is first
    moved = replace(NODE, gpu_count=4)
    (fresh,) = billed_nodes((moved,), catalog, 2002.0, memo)
    assert fresh is not first and fresh.gpu_count == 4 and fresh.price_per_gpu_hour == 5.00
    without = build_catalog([], [NODE])
    (own,) = billed_nodes((moved,), without, 2003.0, memo)
    assert own is moved and own.price_per_gpu_hour == 0.40
